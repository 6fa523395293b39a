"""Dataset reading: every format and file type normalises to Examples; bad rows name their line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sft_tui.core.data.formats import DataError, load_examples
from sft_tui.core.errors import UserError

ROWS = {
    "alpaca": [{"instruction": "Add", "input": "2+2", "output": "4"}, {"instruction": "Greet", "output": "Hello", "system": "Be brief"}],
    "messages": [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]}],
    "sharegpt": [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hey"}]}],
    "prompt_completion": [{"prompt": "2+2=", "completion": "4"}],
    "text": [{"text": "plain text to model"}],
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_every_format_is_detected_and_normalised(tmp_path, fmt):
    data = load_examples(write_jsonl(tmp_path / "d.jsonl", ROWS[fmt]))
    assert data.format == fmt and len(data.examples) == len(ROWS[fmt])
    example = data.examples[0]
    if fmt in ("alpaca", "messages", "sharegpt"):
        assert example.turns[-1].role == "assistant" and example.turns[-2].role == "user"
    assert example.where == f"{tmp_path / 'd.jsonl'}:1"


def test_alpaca_joins_instruction_and_input_and_keeps_the_system_prompt(tmp_path):
    first, second = load_examples(write_jsonl(tmp_path / "a.jsonl", ROWS["alpaca"])).examples
    assert first.turns[0].content == "Add\n\n2+2" and first.response == "4"
    assert [t.role for t in second.turns] == ["system", "user", "assistant"]


def test_json_csv_and_parquet_read_like_jsonl(tmp_path):
    rows = ROWS["alpaca"] * 3
    (tmp_path / "d.json").write_text(json.dumps(rows, indent=2))
    with (tmp_path / "d.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["instruction", "input", "output", "system"])
        writer.writeheader()
        writer.writerows(rows)
    expected = [e.turns for e in load_examples(write_jsonl(tmp_path / "d.jsonl", rows)).examples]
    for name in ("d.json", "d.csv"):
        assert [e.turns for e in load_examples(tmp_path / name).examples] == expected
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    columns = ("instruction", "input", "output", "system")  # from_pylist takes its schema from the first row alone
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), tmp_path / "d.parquet")
    assert [e.turns for e in load_examples(tmp_path / "d.parquet").examples] == expected
    assert load_examples(tmp_path / "d.json").examples[1].where == f"{tmp_path / 'd.json'}:7 (record 2)"


@pytest.mark.parametrize("bad_row, message", [
    ('{"instruction": "x", "output": "y",}', ":3: not valid JSON"),
    ('["a list"]', ":3: expected a JSON object"),
    (json.dumps({"instruction": "x", "output": 5}), ":3: 'output' must be a string"),
    (json.dumps({"instruction": "x", "input": "y"}), ":3: row is in"),  # not alpaca without output -> no format / mismatch
])
def test_a_bad_row_is_reported_with_its_line(tmp_path, bad_row, message):
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS["alpaca"][0], ROWS["alpaca"][1], bad_row, ROWS["alpaca"][0]])
    with pytest.raises(DataError) as err:
        load_examples(path)
    assert message in err.value.line() or (message == ":3: row is in" and ":3:" in err.value.line())
    assert "\n" not in err.value.line()


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]}, "role 'bot'"),
    ({"messages": [{"role": "assistant", "content": "y"}, {"role": "user", "content": "x"}]}, "last message must be from the assistant"),
    ({"messages": []}, "non-empty list"),
    ({"conversations": [{"from": "human", "text": "x"}]}, "'from' and 'value'"),
    ({"question": "x", "answer": "y"}, "no known format"),
])
def test_malformed_conversations(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        load_examples(write_jsonl(tmp_path / "d.jsonl", [row]))


def test_empty_responses_are_skipped_and_listed(tmp_path):
    rows = [ROWS["alpaca"][0], {"instruction": "x", "output": "  "}, ROWS["alpaca"][1]]
    data = load_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    assert len(data.examples) == 2 and data.skipped == ((f"{tmp_path / 'd.jsonl'}:2", "empty response"),)
    with pytest.raises(DataError, match="no usable rows"):
        load_examples(write_jsonl(tmp_path / "e.jsonl", [{"instruction": "x", "output": ""}]))


def test_file_problems(tmp_path):
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(UserError, match="unsupported file type '.txt'"):
        load_examples(tmp_path / "d.txt")
    with pytest.raises(UserError, match="dataset file not found"):
        load_examples(tmp_path / "missing.jsonl")
    (tmp_path / "o.json").write_text('{"data": []}')
    with pytest.raises(UserError, match="holds an object, not an array"):
        load_examples(tmp_path / "o.json")


def test_the_real_alpaca_sample_loads(tmp_path):
    sample = Path(__file__).resolve().parents[3] / "shared" / "data" / "alpaca_5000.json"
    if not sample.exists():
        pytest.skip("../shared/data is not beside this checkout")
    data = load_examples(sample)
    assert data.format == "alpaca" and len(data.examples) + len(data.skipped) == 5000
    assert all("record" in where for where, _ in data.skipped)


def test_a_cut_off_jsonl_row_reports_the_column_where_it_ends(tmp_path):
    from sft_tui.core.data.inspect import inspect_dataset

    path = write_jsonl(tmp_path / "d.jsonl", ['{"instruction": "a", "output": "b"}', '{"instruction": "c", '])
    assert inspect_dataset(path).invalid_rows == (f"{path}:2: not valid JSON (Expecting property name enclosed in double quotes at column 22)",)
