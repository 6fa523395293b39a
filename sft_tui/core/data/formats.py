"""Row formats and the one normalised example the trainer and the data tools share.

Recognised: alpaca (instruction / input / output), messages (OpenAI role/content),
sharegpt (conversations with from/value), prompt_completion (two strings) and text.
Every row becomes an `Example`: chat turns with roles, or plain text. A row that does
not fit its format raises `DataError` with the file:line and what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_tui.core.data.readers import RowError, iter_rows
from sft_tui.core.errors import UserError

FORMATS = ("alpaca", "messages", "sharegpt", "prompt_completion", "text")
ROLES = ("system", "user", "assistant")
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant"}


class DataError(UserError):
    """A dataset row that cannot be used: where = file:line."""


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: str
    content: str


@dataclass(frozen=True)
class Example:
    """A normalised training example: a conversation ending in an assistant turn, or plain text."""

    where: str
    turns: tuple[Turn, ...] = ()
    text: str | None = None
    prompt: str | None = None  # prompt_completion rows keep their raw strings
    completion: str | None = None

    @property
    def response(self) -> str:
        """The text the model learns to produce."""
        if self.text is not None:
            return self.text
        if self.completion is not None:
            return self.completion
        return self.turns[-1].content


def detect_format(row: dict[str, Any]) -> str | None:
    """The format a row is written in, from its keys; None when no format fits."""
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "text" in row:
        return "text"
    return None


def _string(row: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and value != value):  # missing, null or a NaN CSV cell
        if required:
            raise DataError(f"missing {key!r}", where, "every row needs it in this format")
        return ""
    if not isinstance(value, str):
        raise DataError(f"{key!r} must be a string, got {type(value).__name__}", where, "fix the row")
    return value


def _turns(items: Any, where: str, role_key: str, content_key: str, role_map: dict[str, str]) -> tuple[Turn, ...]:
    if not isinstance(items, list) or not items:
        raise DataError("the conversation must be a non-empty list of messages", where, "fix the row")
    turns = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or role_key not in item or content_key not in item:
            raise DataError(f"message {index + 1} must be an object with {role_key!r} and {content_key!r}", where, "fix the row")
        role = role_map.get(str(item[role_key]).lower())
        if role is None:
            raise DataError(f"message {index + 1} has role {item[role_key]!r}; expected one of {', '.join(sorted(role_map))}", where, "fix the role")
        if not isinstance(item[content_key], str):
            raise DataError(f"message {index + 1} content must be a string", where, "fix the row")
        turns.append(Turn(role, item[content_key]))
    if turns[-1].role != "assistant":
        raise DataError("the last message must be from the assistant (it is what the model learns)", where, "end each conversation with an assistant reply")
    return tuple(turns)


def to_example(row: dict[str, Any], fmt: str, where: str) -> Example:
    """Normalise one row of format `fmt`; DataError names file:line and the problem."""
    if fmt == "messages":
        example = Example(where, _turns(row.get("messages"), where, "role", "content", {r: r for r in ROLES}))
    elif fmt == "sharegpt":
        example = Example(where, _turns(row.get("conversations"), where, "from", "value", _SHAREGPT_ROLES))
    elif fmt == "alpaca":
        instruction, extra = _string(row, "instruction", where), _string(row, "input", where, required=False)
        system = _string(row, "system", where, required=False)
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        turns = ((Turn("system", system),) if system.strip() else ()) + (Turn("user", user), Turn("assistant", _string(row, "output", where)))
        example = Example(where, turns)
    elif fmt == "prompt_completion":
        example = Example(where, prompt=_string(row, "prompt", where), completion=_string(row, "completion", where))
    elif fmt == "text":
        example = Example(where, text=_string(row, "text", where))
    else:  # pragma: no cover - callers pass FORMATS only
        raise ValueError(fmt)
    return example


@dataclass(frozen=True)
class Record:
    """One row of a file: the raw row and its normalised example, or why it cannot be used."""

    index: int  # 0-based position among the file's rows, invalid ones included
    where: str
    row: dict[str, Any] | None  # None when the row is not even a JSON object
    example: Example | None
    error: str | None = None
    format: str = ""  # the format rows are read in, once known ("" before the first readable row)


def iter_records(path: Path, fmt: str = "auto") -> Iterator[Record]:
    """Every row of a file as a Record; bad rows carry their reason instead of stopping the walk.

    With fmt='auto' the format is the first readable row's; a later row in another format is invalid.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise UserError(f"unknown row format {fmt!r}", "--format / data.format", f"use auto or one of {', '.join(FORMATS)}")
    chosen = None if fmt == "auto" else fmt
    for index, (where, row) in enumerate(iter_rows(path)):
        if isinstance(row, RowError):
            yield Record(index, where, None, None, row.reason, chosen or "")
            continue
        found = detect_format(row)
        if chosen is None:
            if found is None:
                yield Record(index, where, row, None, f"no known format in the row's keys ({', '.join(sorted(row)) or 'none'})")
                continue
            chosen = found
        elif fmt == "auto" and found not in (chosen, None):
            yield Record(index, where, row, None, f"row is in {found} format but the file started as {chosen}", chosen)
            continue
        try:
            yield Record(index, where, row, to_example(row, chosen, where), None, chosen)
        except DataError as exc:
            yield Record(index, where, row, None, exc.what, chosen)


def _usable(record: Record) -> Example:
    """The record's example, or the DataError a trainer must stop at."""
    if record.error is not None:
        hint = ("use alpaca (instruction/output), messages, conversations (ShareGPT), prompt/completion or text"
                if record.error.startswith("no known format") else "fix or remove that row; `sft-tui data inspect` lists every bad row")
        raise DataError(record.error, record.where, hint)
    return record.example


@dataclass(frozen=True)
class LoadedData:
    """A whole file: its format, the usable examples, and rows skipped with the reason."""

    format: str
    examples: tuple[Example, ...]
    skipped: tuple[tuple[str, str], ...]  # (where, why): empty responses teach the model to say nothing


def load_examples(path: Path, fmt: str = "auto") -> LoadedData:
    """Every usable example of a file. Malformed rows raise DataError; empty responses are skipped and listed."""
    examples, skipped = [], []
    detected = "unknown"
    for record in iter_records(path, fmt):
        example = _usable(record)
        detected = record.format
        if not example.response.strip():
            skipped.append((example.where, "empty response"))
        else:
            examples.append(example)
    if not examples:
        raise DataError("the file holds no usable rows" + (f" ({len(skipped)} with empty responses)" if skipped else ""), str(path), "add training examples")
    return LoadedData(detected, tuple(examples), tuple(skipped))
