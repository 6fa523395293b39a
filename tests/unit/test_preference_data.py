"""Preference data read as what it is (issue 15, data part): labelled (KTO) and pairwise rows are recognised,
and a supervised run never silently learns the answers labelled undesirable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_tui.core.data.formats import DataError, load_examples
from sft_tui.core.data.inspect import inspect_dataset, report_rows, summary_line


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def kto_file(tmp_path: Path, n: int = 300) -> Path:
    """LLaMA-Factory's / TRL's unpaired format: a conversation and whether its answer is desirable, half and half."""
    rows = [{"messages": [{"role": "user", "content": f"Give the capital of country {i}."},
                          {"role": "assistant", "content": f"City {i}." if i % 2 == 0 else f"I will not say, country {i}."}],
             "label": i % 2 == 0} for i in range(n)]
    return write_jsonl(tmp_path / "kto.jsonl", rows)


def test_a_labelled_file_is_recognised_and_sft_keeps_only_the_desirable_rows(tmp_path):
    path = kto_file(tmp_path)
    report = inspect_dataset(path)
    assert (report.kind, report.records, report.invalid, report.desirable, report.undesirable) == ("unpaired-labelled", 300, 0, 150, 150)
    assert "answers labelled desirable or not" in summary_line(report)
    assert ("desirable / undesirable", "150 / 150", "50% labelled false; SFT leaves those out") in report_rows(report)
    loaded = load_examples(path)
    assert (len(loaded.examples), loaded.undesirable, loaded.kind) == (150, 150, "unpaired-labelled")
    assert all(e.label is True for e in loaded.examples)
    assert "uses the 150 desirable rows and leaves out the 150 labelled undesirable" in loaded.notes[0]


def test_the_supervised_run_itself_trains_on_the_desirable_rows_only(tmp_path):
    from sft_tui.core.config.load import load_run_config
    from sft_tui.trainer.dataset import split_examples
    from tests.trainer.conftest import DEMO

    config = load_run_config(DEMO / "demo.toml", [f"data.train={kto_file(tmp_path)}", "data.eval=", "data.eval_fraction=0"]).config
    _, train, evaluation, _ = split_examples(config)
    assert len(train) == 150 and not evaluation and all("will not say" not in e.response for e in train)


@pytest.mark.parametrize("row", [
    {"prompt": "2+2?", "chosen": "4", "rejected": "5"},  # TRL, plain strings
    {"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}],
     "rejected": [{"role": "assistant", "content": "5"}]},  # TRL, conversational
    {"chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
     "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]},  # TRL, implicit prompt
    {"conversations": [{"from": "human", "value": "2+2?"}], "chosen": {"from": "gpt", "value": "4"},
     "rejected": {"from": "gpt", "value": "5"}},  # LLaMA-Factory's ShareGPT preference rows
])
def test_pairwise_rows_in_each_common_shape_are_read_and_sft_trains_on_the_chosen_answer(tmp_path, row):
    loaded = load_examples(write_jsonl(tmp_path / "pairs.jsonl", [row]))
    (example,) = loaded.examples
    assert loaded.format == loaded.kind == "pairwise"
    assert [(t.role, t.content) for t in example.turns] == [("user", "2+2?"), ("assistant", "4")] and example.rejected == "5"
    assert "trains on the 1 chosen answers; the rejected ones are not used" in loaded.notes[0]


def test_inspect_reports_length_bias_and_identical_pairs(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": "a long and careful answer " * 3, "rejected": "short"} for i in range(9)]
    rows.append({"prompt": "q9", "chosen": "same", "rejected": "same"})
    report = inspect_dataset(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert (report.kind, report.records, report.identical_pairs, report.chosen_longer) == ("pairwise", 10, 1, 9)
    table = {check: (value, note) for check, value, note in report_rows(report)}
    assert table["identical chosen / rejected"] == ("1", "nothing to learn from these pairs")
    assert table["chosen longer than rejected"][0] == "9 (90%)" and "longer is better" in table["chosen longer than rejected"][1]


def test_a_label_that_is_not_true_or_false_is_one_line_with_the_row(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": "b", "label": True},
                                                {"prompt": "c", "completion": "d", "label": "maybe"}])
    with pytest.raises(DataError) as caught:
        load_examples(path)
    assert caught.value.line() == f"{path}:2: 'label' must be true or false (is this answer desirable?), got 'maybe'; fix or remove that row; `sft-tui data inspect` lists every bad row"


def test_convert_keeps_labels_and_never_turns_a_pair_into_one_answer(tmp_path):
    from sft_tui.core.data.convert import convert_file

    out = tmp_path / "out.jsonl"
    convert_file(kto_file(tmp_path, n=4), out, "sharegpt")
    assert [json.loads(line)["label"] for line in out.read_text().splitlines()] == [True, False, True, False]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(Exception, match="a pairwise row has a chosen and a rejected answer"):
        convert_file(pairs, tmp_path / "out2.jsonl", "messages")
