"""Comparing runs without a screen: short names, cells cut to a width, the differing config fields, incremental reads."""

from __future__ import annotations

from datetime import datetime, timezone

from sft_tui.core.runs.compare import (
    RunComparer, fit_widths, format_duration, short_run_names, shorten_apart, shorten_middle, split_config,
)
from sft_tui.core.runs.schema import JobStatus, TrainRow, TrainSummary, now_iso
from sft_tui.core.runs.store import RunStore

A = "/data/team/customer-support/2026-11/cleaned/train.jsonl"
B = "/data/team/customer-support/2026-10/raw/train.jsonl"
NOW = datetime(2026, 11, 22, 9, 30, tzinfo=timezone.utc)


def test_short_names_are_the_name_part_with_the_time_only_where_names_repeat():
    assert short_run_names(["20261122-093000-json-lora", "20261122-103000-lr-sweep"]) == ["json-lora", "lr-sweep"]
    assert short_run_names(["20261122-093000-json-lora", "20261123-140500-json-lora", "20261122-103000-big"]) == \
        ["json-lora 09:30", "json-lora 14:05", "big"]
    same_minute = ["20261122-093000-a", "20261123-093000-a"]
    assert short_run_names(same_minute) == same_minute  # the time does not tell them apart: the whole id does
    assert short_run_names(["not-a-dated-id"]) == ["not-a-dated-id"]


def test_a_long_path_is_cut_in_the_middle_keeping_its_first_folder_and_file_name():
    assert shorten_middle(A, 24) == "/data/…/train.jsonl"
    assert shorten_middle(A, 14) == "…/train.jsonl"
    assert shorten_middle("abcdefghij", 5) == "ab…ij" and shorten_middle("short", 5) == "short"
    assert all(len(shorten_middle(A, width)) <= width for width in range(1, 70))


def test_values_that_differ_still_differ_after_cutting():
    assert [shorten_middle(v, 24) for v in (A, B)] == ["/data/…/train.jsonl"] * 2  # what a plain cut would show
    assert shorten_apart([A, B], 40) == ["/data/…/2026-11/cleaned/train.jsonl", "/data/…/2026-10/raw/train.jsonl"]
    assert shorten_apart([A, B], 24) == ["…/2026-11/cleaned/…", "…/2026-10/raw/…"]
    for width in range(4, 70):
        cut = shorten_apart([A, B], width)
        assert all(len(c) <= width for c in cut), width
        if width >= 8:
            assert cut[0] != cut[1], width
    assert shorten_apart(["5e-05", "0.0002"], 10) == ["5e-05", "0.0002"]


def test_column_widths_fit_and_the_widest_give_way_first():
    assert fit_widths([10, 20, 30], 100) == [10, 20, 30]
    widths = fit_widths([22, 55, 52], 72)
    assert sum(widths) <= 72 and widths[0] == 22 and abs(widths[1] - widths[2]) <= 1
    assert fit_widths([40, 40, 40, 40, 40], 60) == [12] * 5


def test_durations_do_not_look_like_clock_times():
    assert [format_duration(s) for s in (None, 45, 750, 7500)] == ["-", "45s", "12m 30s", "2h 05m"]


def _run(store, name, lr, path, now):
    config = f'[model]\nname = "qwen2.5-1.5b"\n[data]\ntrain = "{path}"\n[training]\nlearning_rate = {lr}\nmax_steps = 300\n'
    return store.create_run(config, "qwen2.5-1.5b", "lora", name=name, now=now)


def test_only_the_differing_fields_are_listed_and_the_equal_ones_counted(tmp_path):
    store = RunStore(tmp_path)
    runs = [_run(store, "a", "2e-4", A, NOW), _run(store, "b", "5e-5", B, NOW.replace(hour=10))]
    differ, equal = split_config(runs)
    assert differ == [("data.train", [A, B]), ("training.learning_rate", [2e-4, 5e-5])]
    assert equal == ["model.name", "training.max_steps"]


def test_comparing_again_reads_only_what_was_appended_and_keeps_an_unchanged_curve(tmp_path):
    store = RunStore(tmp_path)
    done, live = _run(store, "done", "2e-4", A, NOW), _run(store, "live", "5e-5", B, NOW.replace(hour=10))
    done.write_status(JobStatus("completed", 1, now_iso(), now_iso(), step=3, max_steps=3))
    done.write_summary(TrainSummary(state="completed", steps=3, max_steps=3, final_loss=0.5, best_eval_loss=0.6,
                                    tokens_per_s=4100.0, wall_time_s=750.0))
    live.write_status(JobStatus("running", __import__("os").getpid(), now_iso(), now_iso(), step=2, max_steps=10))
    for step in (1, 2):
        done.append_metric(TrainRow(step=step, loss=1.0 / step))
        live.append_metric(TrainRow(step=step, loss=2.0 / step, tokens_per_s=900.0, wall_s=step * 10.0))
    comparer = RunComparer([done, live])
    first = comparer.compare()
    assert first.active and [n.state for n in first.numbers] == ["completed", "running"]
    rows = {row[0]: row[1:] for row in first.rows}
    assert rows["final loss"] == ("0.5", "1") and rows["time"] == ("12m 30s", "20s") and rows["steps"] == ("3/3", "2/10")
    assert first.rows[first.config_start][0] == "data.train" and first.equal_fields == ("model.name", "training.max_steps")
    live.append_metric(TrainRow(step=3, loss=0.25, tokens_per_s=950.0))
    second = comparer.compare()
    assert second.series[0] is first.series[0]  # nothing new for the finished run: the chart need not redraw it
    assert second.series[1][1] == (1.0, 2.0, 3.0) and {row[0]: row[1:] for row in second.rows}["final loss"] == ("0.5", "0.25")
    live.write_status(JobStatus("completed", 1, now_iso(), now_iso(), step=3, max_steps=10))
    assert not comparer.compare().active


def test_each_value_may_have_its_own_width():
    assert shorten_apart(["3.000 -> 1.000", "-"], [14, 11]) == ["3.000 -> 1.000", "-"]
    assert shorten_apart([A, B], [40, 24]) == ["…/2026-11/cleaned/…", "…/2026-10/raw/…"]  # one style for the row


def test_a_field_name_keeps_its_key_before_its_section():
    from sft_tui.core.runs.compare import shorten_field

    assert shorten_field("training.learning_rate", 14) == "…learning_rate"
    assert shorten_field("training.learning_rate", 30) == "training.learning_rate"
    assert shorten_field("training.gradient_accumulation_steps", 10) == "train…teps"
