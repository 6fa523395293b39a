"""Compare under Pilot and in snapshots: two runs whose configs differ in a long data path and in lr, at 80x24 and 120x40.

Update the pictures after an intended change: `python -m pytest tests/tui/test_compare_screen.py --snapshot-update`,
then look at the SVGs in tests/tui/__snapshots__/test_compare_screen/ before committing them.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from textual.widgets import DataTable, Static

from sft_tui.core.runs.schema import EvalRow, JobStatus, TrainRow, TrainSummary, now_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.tui.screens.compare import CompareScreen
from sft_tui.tui.widgets.loss_chart import LossChart
from tests.tui.conftest import settle
from tests.tui.test_snapshots import app_for

FROZEN = datetime(2026, 11, 22, 9, 30, tzinfo=timezone.utc)
CLEANED = "/data/team/customer-support/2026-11/cleaned/train.jsonl"
RAW = "/data/team/customer-support/2026-10/raw/train.jsonl"
CONFIG = """[model]
name = "qwen2.5-1.5b"
[method]
name = "lora"
[data]
train = "{path}"
eval_split = 0.05
[training]
learning_rate = {lr}
max_steps = 300
batch_size = 4
"""


def finished_run(store, name, path, lr, hour, slope):
    """A completed run of 300 steps with its summary, as the trainer leaves it."""
    stamp = FROZEN.isoformat()
    run = store.create_run(CONFIG.format(path=path, lr=lr), "qwen2.5-1.5b", "lora", name=name, now=FROZEN.replace(hour=hour))
    run.write_status(JobStatus("completed", 4242, stamp, stamp, step=300, max_steps=300))
    for step in range(1, 301, 3):
        run.append_metric(TrainRow(step=step, loss=0.6 + 2.4 / (1 + step / slope), tokens_per_s=4100.0, wall_s=step * 2.5))
        if step % 60 == 1:
            run.append_metric(EvalRow(step=step, eval_loss=0.7 + 2.4 / (1 + step / slope)))
    run.write_summary(TrainSummary(state="completed", steps=300, max_steps=300, final_loss=0.6 + 2.4 / (1 + 298 / slope),
                                   best_eval_loss=0.7 + 2.4 / (1 + 241 / slope), tokens_per_s=4100.0, wall_time_s=750.0))
    return run


@pytest.fixture()
def two_runs(tmp_path):
    """Two finished runs that differ in a long data path and in the learning rate (newest first on Home)."""
    store = RunStore(tmp_path / "home")
    finished_run(store, "json-lora", CLEANED, "2e-4", 9, 25)
    finished_run(store, "json-lora-slow", RAW, "5e-5", 10, 80)
    return store


async def open_compare(pilot):
    """Mark the first two runs on Home and open Compare, as a person does."""
    await settle(pilot)
    await pilot.press("space", "down", "space", "c")
    await settle(pilot)


def cells(table: DataTable) -> dict[str, list[str]]:
    return {str(row[0]): [str(c) for c in row[1:]] for row in (table.get_row_at(i) for i in range(table.row_count))}


async def test_both_runs_fit_80_columns_with_only_the_differing_fields(two_runs):
    app = app_for(two_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_compare(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        table = screen.query_one("#diff", DataTable)
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= table.scrollable_content_region.width
        assert [str(c.label) for c in table.columns.values()] == ["field", "• json-lora-slow", "x json-lora"]  # names, not ids
        rows = cells(table)
        assert rows["training.learning_rate"] == ["5e-05", "0.0002"]
        assert rows["final loss"] == ["1.108", "0.7858"] and rows["time"] == ["12m 30s", "12m 30s"]
        assert "model.name" not in rows and "config · 5 equal" in rows  # equal fields are counted, not listed
        slow, fast = rows["data.train"]
        assert slow != fast and "2026-10/raw" in slow and "2026-11/cleaned" in fast  # cut where they are the same
        detail = screen.query_one("#compare-detail", Static)
        table.move_cursor(row=list(rows).index("data.train"))
        await pilot.pause()
        assert RAW in str(detail.render()) and CLEANED in str(detail.render())  # the whole value of the highlighted row


async def test_the_curves_differ_by_marker_so_they_read_without_colour(two_runs, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_for(two_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_compare(pilot)
        chart = app.screen.query_one(LossChart)
        assert chart.legend() == [("•", "json-lora-slow"), ("x", "json-lora")]
        lines = str(chart.render()).splitlines()
        top = next(i for i, line in enumerate(lines) if "┌" in line)
        bottom = next(i for i, line in enumerate(lines) if "└" in line)
        plot = "".join(line.split("┤", 1)[-1].lstrip("│") for line in lines[top + 1 : bottom])
        assert plot.count("•") > 10 and plot.count("x") > 10  # both curves drawn, each with its own character
        assert "• json-lora-slow" in lines[0] and "x json-lora" in lines[0]  # the legend says which is which
        assert "optimizer step" in lines[-1] and "loss (nats/token)" in lines[-1]
        await pilot.press("m")
        assert not chart.smoothing and "smoothed" not in str(chart.render()).splitlines()[0]
        assert chart.run_points()[1][3][0] == pytest.approx(0.6 + 2.4 / (1 + 1 / 25))  # raw loss at step 1


async def test_a_running_run_is_read_again_each_poll_and_a_finished_comparison_is_not(two_runs):
    live = two_runs.create_run(CONFIG.format(path=RAW, lr="1e-4"), "qwen2.5-1.5b", "lora", name="json-lora", now=FROZEN.replace(day=23))
    live.write_status(JobStatus("running", os.getpid(), now_iso(), now_iso(), step=2, max_steps=300))
    for step in (1, 2):
        live.append_metric(TrainRow(step=step, loss=3.0 - step * 0.1, tokens_per_s=900.0))
    app = app_for(two_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("space", "down", "space", "c")  # the running run and the newest finished one
        await settle(pilot)
        screen = app.screen
        chart = screen.query_one(LossChart)
        assert [label for _, label in chart.legend()] == ["json-lora", "json-lora-slow"]
        assert "running" in str(screen.query_one("#title", Static).render())
        live.append_metric(TrainRow(step=3, loss=2.5, tokens_per_s=950.0))
        screen.poll()  # what the screen's timer does every poll_s
        await settle(pilot)
        assert len(chart.run_points()[0][2]) == 3
        assert cells(screen.query_one("#diff", DataTable))["final loss"][0] == "2.5"
        live.write_status(JobStatus("completed", os.getpid(), now_iso(), now_iso(), step=3, max_steps=3))
        screen.poll()
        await settle(pilot)
        assert "running" not in str(screen.query_one("#title", Static).render())
        live.append_metric(TrainRow(step=4, loss=2.0))
        screen.poll()  # every run has ended: nothing to read again
        await settle(pilot)
        assert len(chart.run_points()[0][2]) == 3


async def test_runs_with_the_same_name_are_told_apart_by_their_time(two_runs):
    twin = finished_run(two_runs, "json-lora", RAW, "1e-4", 11, 40)
    app = app_for(two_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(CompareScreen([twin, two_runs.find_run("20261122-093000")]))
        await settle(pilot)
        assert [label for _, label in app.screen.query_one(LossChart).legend()] == ["json-lora 11:30", "json-lora 09:30"]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_compare(snap_compare, two_runs, size):
    assert snap_compare(app_for(two_runs), terminal_size=size, run_before=open_compare)


def test_compare_without_colour(snap_compare, two_runs, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")

    async def open_and_highlight_the_path(pilot):
        await open_compare(pilot)
        await pilot.press(*["down"] * 7)  # to data.train: its two whole paths under the table

    assert snap_compare(app_for(two_runs), terminal_size=(80, 24), run_before=open_and_highlight_the_path)


async def test_the_chart_in_log_scale_survives_a_repaint(two_runs):
    from textual.app import App

    class ChartOnly(App):
        def compose(self):
            yield LossChart()

    app = ChartOnly()
    async with app.run_test(size=(60, 16)) as pilot:
        chart = app.query_one(LossChart)
        chart.set_rows(tuple(TrainRow(step=s, loss=3 / (1 + s / 20)) for s in range(1, 200, 3)), (EvalRow(step=61, eval_loss=1.2),))
        chart.toggle_log_scale()
        await pilot.pause()
        first = str(chart.render())  # plotext takes the log in place: a second build used to take the log of the log
        assert str(chart.render()) == first and "log scale" in first
        chart.set_runs([("a", [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]), ("b", [1.0, 2.0, 3.0], [2.5, 1.5, 1.2])])
        await pilot.pause()
        first = str(chart.render())
        assert str(chart.render()) == first and first.splitlines()[0].strip() == "smoothed · log scale · • a   x b"
