"""Task checks for `sft-tui eval`: pure functions over generated answers and references.

Which checks run comes from the run config's [eval] section. `auto` means exact match,
plus JSON validity and key/type match when most reference answers are JSON objects or
arrays (the usual format-alignment case). Every answer is also measured for length,
refusal-like openings and whether generation stopped at an end token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sft_tui.core.config.schema import EVAL_CHECKS
from sft_tui.core.data.text import looks_like_refusal, normalise
from sft_tui.core.errors import UserError


@dataclass(frozen=True)
class Answer:
    """One generated answer and what generation said about it."""

    text: str
    tokens: int
    stopped: bool  # ended with an end-of-turn/EOS token rather than running out of max_new_tokens


def _json(text: str) -> Any:
    try:
        return json.loads(text.strip())
    except ValueError:
        return _NOT_JSON


_NOT_JSON = object()


def _shape(value: Any) -> Any:
    """Keys and value types of a JSON value, recursively: what 'same schema' compares."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return ["list"]  # element types vary legitimately; a list is a list
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def choose_checks(configured: tuple[str, ...], references: list[str], regex: str) -> tuple[str, ...]:
    """The checks to run; UserError for an unknown one or a regex check without a pattern."""
    unknown = [c for c in configured if c not in EVAL_CHECKS]
    if unknown:
        raise UserError(f"unknown eval check {unknown[0]!r}", "eval.checks", f"use {', '.join(EVAL_CHECKS)}")
    checks = [c for c in configured if c != "auto"]
    if "auto" in configured:
        checks.insert(0, "exact_match")
        structured = sum(isinstance(_json(r), (dict, list)) for r in references)
        if references and structured >= 0.8 * len(references):
            checks += ["json_valid", "json_keys"]
        if regex:
            checks.append("regex")
    if "regex" in checks and not regex:
        raise UserError("the regex check needs a pattern", "eval.regex", "set eval.regex, or drop regex from eval.checks")
    if regex:
        try:
            re.compile(regex)
        except re.error as exc:
            raise UserError(f"eval.regex is not a valid pattern ({exc})", "eval.regex", "fix the pattern") from None
    return tuple(dict.fromkeys(checks))


def check_answer(check: str, answer: str, reference: str, regex: str = "") -> bool:
    """Whether one answer passes one check."""
    if check == "exact_match":
        return normalise(answer) == normalise(reference)
    if check == "json_valid":
        return _json(answer) is not _NOT_JSON
    if check == "json_keys":
        got, want = _json(answer), _json(reference)
        return got is not _NOT_JSON and want is not _NOT_JSON and _shape(got) == _shape(want)
    if check == "regex":
        return re.search(regex, answer) is not None
    raise ValueError(check)


def score_answers(answers: list[Answer], references: list[str], checks: tuple[str, ...], regex: str = "") -> dict[str, float]:
    """Share passing each check, plus stopped_share, refusal_share and mean_answer_tokens."""
    count = max(1, len(answers))
    scores = {check: round(sum(check_answer(check, a.text, r, regex) for a, r in zip(answers, references, strict=True)) / count, 4)
              for check in checks}
    scores["stopped_share"] = round(sum(a.stopped for a in answers) / count, 4)
    scores["refusal_share"] = round(sum(looks_like_refusal(a.text) for a in answers) / count, 4)
    scores["mean_answer_tokens"] = round(sum(a.tokens for a in answers) / count, 1)
    return scores
