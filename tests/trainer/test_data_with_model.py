"""Data tools that use a local model: exact token counts and model embeddings for selection."""

from __future__ import annotations

import json
from pathlib import Path

from sft_tui.core.data.formats import load_examples
from sft_tui.core.data.tokens import model_token_counter

ROOT = Path(__file__).resolve().parents[2]


def test_token_counts_match_the_trainers_tokenizer_and_template(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model, local_files_only=True)
    counter = model_token_counter(str(tiny_model))
    examples = load_examples(ROOT / "assets" / "demo" / "train.jsonl").examples[:40]
    for example in examples:
        messages = [{"role": t.role, "content": t.content} for t in example.turns]
        expected = len(tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"])
        assert counter.count(example) == expected
    assert "chat template" in counter.method


def test_inspect_with_a_model_reports_exact_lengths(tiny_model, cli):
    result = cli("data", "inspect", str(ROOT / "assets" / "demo" / "eval.jsonl"), "--model", str(tiny_model), "--max-seq-len", "48", "--json")
    assert result.code == 0, result.err
    tokens = json.loads(result.out)["tokens"]
    assert tokens["approximate"] is False and tokens["min"] <= tokens["p50"] <= tokens["p95"] <= tokens["max"]


def test_inspect_with_an_unknown_model_says_so_in_one_line(cli, tmp_path):
    result = cli("data", "inspect", str(ROOT / "assets" / "demo" / "eval.jsonl"), "--model", "nobody/nothing-1b")
    assert result.code == 2 and result.err.count("\n") == 1 and "no tokenizer for 'nobody/nothing-1b'" in result.err


def test_select_with_model_embeddings_is_deterministic(tiny_model, cli, tmp_path):
    source = str(ROOT / "assets" / "demo" / "train.jsonl")
    args = ["data", "select", source, "--n", "30", "--embed", "model", "--model", str(tiny_model), "--json"]
    first = json.loads(cli(*args, "-o", str(tmp_path / "a.jsonl")).out)
    cli(*args, "-o", str(tmp_path / "b.jsonl"))
    assert first["selected"] == 30 and first["embed"] == "model" and all(c["selected"] >= 1 for c in first["clusters"])
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_token_counts_of_tool_rows_include_the_tools_and_calls_as_training_renders_them(tiny_model, tmp_path):
    from sft_tui.trainer.model_setup import load_tokenizer
    from sft_tui.trainer.tool_rows import tokenized_rows
    from tests.unit.test_tool_data import sharegpt_tool_file

    class Config:  # what load_tokenizer reads
        class model:
            chat_template = ""
            trust_remote_code = False

    tokenizer = load_tokenizer(tiny_model, Config)
    counter = model_token_counter(str(tiny_model))
    for example in load_examples(sharegpt_tool_file(tmp_path, n=6, calling=4)).examples:
        rows = tokenized_rows(example, tokenizer)
        assert counter.count(example) == max(len(r["input_ids"]) for r in rows)  # the tools are rendered, never cut at 64
