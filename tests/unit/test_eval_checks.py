"""Eval checks and the report's table: pure functions, no model."""

from __future__ import annotations

import pytest

from sft_tui.core.errors import UserError
from sft_tui.core.evaluate.checks import Answer, check_answer, choose_checks, score_answers
from sft_tui.core.evaluate.report import metric_rows, render_markdown, verdict


def test_auto_adds_json_checks_only_when_most_references_are_json():
    assert choose_checks(("auto",), ['{"a": 1}', '[1]', '{"b": 2}', "{}", "{}"], "") == ("exact_match", "json_valid", "json_keys")
    assert choose_checks(("auto",), ["Paris", "Rome"], "") == ("exact_match",)
    assert choose_checks(("auto",), ["x"], r"\d+") == ("exact_match", "regex")
    with pytest.raises(UserError, match="unknown eval check 'json'"):
        choose_checks(("json",), ["x"], "")
    with pytest.raises(UserError, match="needs a pattern"):
        choose_checks(("regex",), ["x"], "")
    with pytest.raises(UserError, match="not a valid pattern"):
        choose_checks(("regex",), ["x"], "(")


@pytest.mark.parametrize(("check", "answer", "reference", "passes"), [
    ("exact_match", "  Paris. ", "paris", True), ("exact_match", "Paris, France", "Paris", False),
    ("json_valid", '{"a": 1}', "", True), ("json_valid", '{"a": 1', "", False),
    ("json_keys", '{"a": 2, "b": "x"}', '{"b": "y", "a": 1}', True), ("json_keys", '{"a": "2"}', '{"a": 1}', False),
    ("json_keys", '{"a": 1}', '{"a": 1, "b": 2}', False), ("json_keys", "[1, 2]", "[3]", True),
])
def test_checks(check, answer, reference, passes):
    assert check_answer(check, answer, reference) is passes


def test_scores_count_stops_refusals_and_lengths():
    answers = [Answer('{"a": 1}', 5, True), Answer("I'm sorry, but I can't.", 8, True), Answer("a a a a", 64, False)]
    scores = score_answers(answers, ['{"a": 2}'] * 3, ("json_valid", "json_keys"))
    assert scores == {"json_valid": 0.3333, "json_keys": 0.3333, "stopped_share": 0.6667, "refusal_share": 0.3333, "mean_answer_tokens": 25.7}


def test_report_rows_say_which_way_is_better():
    report = {"run": "r", "created_at": "t", "data": "d", "examples": 2, "checks": ["json_valid"],
              "base": {"response_loss": 3.0, "json_valid": 0.0, "refusal_share": 0.5, "mean_answer_tokens": 40.0},
              "tuned": {"response_loss": 1.0, "json_valid": 1.0, "refusal_share": 0.0, "mean_answer_tokens": 12.0},
              "samples": [{"where": "e.jsonl:1", "prompt": "p|q", "reference": "r", "base": "b", "tuned": "t", "base_stopped": False, "tuned_stopped": True}]}
    rows = metric_rows(report)
    assert rows[0] == ["response loss (held-out answers)", "3.000", "1.000", "better"]
    assert rows[1] == ["valid JSON", "0%", "100%", "better"]
    assert verdict("json_valid", 1.0, 0.5) == "worse" and verdict("mean_answer_tokens", 1, 2) == ""
    markdown = render_markdown(report)
    assert "| base (did not stop) | b |" in markdown and "p\\|q" in markdown
