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


def test_objective_metrics_are_read_on_log_lines_and_refusals_name_the_objective_that_fits(tmp_path):
    from sft_tui.core.data.preference import load_for_objective
    from sft_tui.core.runs.logtext import format_objective_metrics

    assert format_objective_metrics({"rewards/margins": 0.41234, "rewards/accuracies": 0.75, "logps/chosen": -3.0}) == "  margin +0.412  acc 75%"
    assert format_objective_metrics({"kl": 0.0125, "rewards/chosen": 1.0}) == "  kl 0.013"
    assert format_objective_metrics({}) == ""
    labelled = kto_file(tmp_path)
    with pytest.raises(DataError) as refused:
        load_for_objective(labelled, "auto", "dpo")
    assert "holds unpaired-labelled rows" in refused.value.what and "'kto'" in refused.value.fix
    kto = load_for_objective(labelled, "auto", "kto")
    assert (len(kto.examples), kto.undesirable) == (300, 150)  # KTO keeps both labels: it learns from the bad ones too
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": "good", "rejected": "bad"}] * 4)
    unpaired = load_for_objective(pairs, "auto", "kto")
    assert [(e.response, e.label) for e in unpaired.examples[:2]] == [("good", True), ("bad", False)] and len(unpaired.examples) == 8
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "q", "completion": "a"}])
    with pytest.raises(DataError) as refused:
        load_for_objective(plain, "auto", "kto")
    assert "has no 'label' field" in refused.value.what
    half = write_jsonl(tmp_path / "half.jsonl", [{"prompt": "q", "completion": "a", "label": True}, {"prompt": "q", "completion": "b"}])
    with pytest.raises(DataError) as refused:
        load_for_objective(half, "auto", "kto")
    assert refused.value.where.endswith(":2")


def test_convert_goes_between_trl_and_llama_factory_pairs_and_to_trl_kto_rows(tmp_path):
    from sft_tui.core.data.convert import convert_file
    from sft_tui.core.errors import UserError

    factory = write_jsonl(tmp_path / "factory.jsonl", [
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"}],
         "chosen": {"from": "gpt", "value": "4"}, "rejected": {"from": "gpt", "value": "5"}},
        {"conversations": [{"from": "human", "value": "3+3?"}], "chosen": {"from": "gpt", "value": "6"}, "rejected": {"from": "gpt", "value": "7"}}])
    convert_file(factory, tmp_path / "trl.jsonl", "pairwise")
    assert json.loads((tmp_path / "trl.jsonl").read_text().splitlines()[0]) == {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]}
    convert_file(tmp_path / "trl.jsonl", tmp_path / "back.jsonl", "pairwise-sharegpt")
    assert [json.loads(x) for x in (tmp_path / "back.jsonl").read_text().splitlines()] == [json.loads(x) for x in factory.read_text().splitlines()]
    strings = convert_file(factory, tmp_path / "strings.jsonl", "pairwise-strings")  # a system message has no place in a string prompt
    assert strings.written == 1 and "the prompt has 2 messages (system, user); a string prompt holds one user message" in strings.left_out_rows[0]
    assert json.loads((tmp_path / "strings.jsonl").read_text()) == {"prompt": "3+3?", "chosen": "6", "rejected": "7"}
    assert load_examples(tmp_path / "strings.jsonl").examples[0].rejected == "7"

    convert_file(kto_file(tmp_path, n=2), tmp_path / "kto_trl.jsonl", "kto")
    assert json.loads((tmp_path / "kto_trl.jsonl").read_text().splitlines()[1]) == {
        "prompt": [{"role": "user", "content": "Give the capital of country 1."}],
        "completion": [{"role": "assistant", "content": "I will not say, country 1."}], "label": False}
    with pytest.raises(UserError, match="a pairwise format needs a chosen and a rejected one"):
        convert_file(kto_file(tmp_path, n=2), tmp_path / "no.jsonl", "pairwise")
    kto_rows = load_examples(tmp_path / "kto_trl.jsonl")
    assert [(e.response, e.label) for e in kto_rows.examples] == [("City 0.", True)] and kto_rows.undesirable == 1


def test_dedup_never_drops_a_row_for_a_copy_with_the_other_label_or_another_rejected_answer(tmp_path):
    from sft_tui.core.data.dedup import deduplicate
    from sft_tui.core.data.formats import iter_records

    rows = [{"prompt": "Lima?", "completion": "{\"name\": \"Lima\"}", "label": True},
            {"prompt": "Lima?", "completion": "Sure! {'name': 'Lima'}", "label": False},  # folds to nearly the same text
            {"prompt": "Lima?", "completion": "{\"name\": \"Lima\"}", "label": True}]  # a true copy
    report = deduplicate(write_jsonl(tmp_path / "kto.jsonl", rows), tmp_path / "out.jsonl")
    assert (report.kept, report.exact_removed + report.near_removed) == (2, 1)
    pairs = [{"prompt": "q", "chosen": "good", "rejected": "bad"}, {"prompt": "q", "chosen": "good", "rejected": "worse"}]
    assert deduplicate(write_jsonl(tmp_path / "pairs.jsonl", pairs), tmp_path / "pairs.out.jsonl").kept == 2
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"prompt": "q", "chosen": "good", "rejected": None}])
    assert next(iter_records(broken)).error == "missing 'rejected'"
