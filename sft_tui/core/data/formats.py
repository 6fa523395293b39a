"""Row formats and the one normalised example the trainer and the data tools share.

Recognised: alpaca (instruction / input / output), messages (OpenAI role/content),
sharegpt (conversations with from/value), prompt_completion (two strings), text, and
pairwise preference rows (prompt / chosen / rejected, as strings or message lists: TRL's
format, and LLaMA-Factory's ShareGPT with chosen/rejected messages). Any row may carry a
boolean `label` (KTO's unpaired preference data: is this answer desirable?). Conversations
may call tools (tool_calls.py): ShareGPT `function_call`/`observation` messages or OpenAI
`tool_calls`/`tool` messages, with the declared `tools` kept on the example.
Every row becomes an `Example`: chat turns with roles, or plain text. A row that does
not fit its format raises `DataError` with the file:line and what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sft_tui.core.data.readers import RowError, iter_rows
from sft_tui.core.data.tool_calls import BadToolData, ToolCall, openai_calls, parse_tools, sharegpt_calls, sharegpt_value
from sft_tui.core.errors import UserError

FORMATS = ("alpaca", "messages", "sharegpt", "prompt_completion", "text", "pairwise")
# what the rows are for: examples, better/worse pairs, thumbs up/down, conversations that call tools
KINDS = ("sft", "pairwise", "unpaired-labelled", "tool-calling")
ROLES = ("system", "user", "assistant", "tool")
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
                   "bing": "assistant", "function_call": "assistant", "observation": "tool", "tool": "tool"}
# OpenAI's roles, plus its older "function" role and LLaMA-Factory's tags for messages-style rows
_MESSAGE_ROLES = {r: r for r in ROLES} | {"function": "tool", "function_call": "assistant", "observation": "tool"}


# ToolCall (imported above) is one of this module's shapes; it lives in tool_calls, which must not import this module


class DataError(UserError):
    """A dataset row that cannot be used: where = file:line."""


@dataclass(frozen=True)
class Turn:
    """One message of a conversation. role 'tool' is a tool's result (an observation); an assistant turn may call tools."""

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Example:
    """A normalised training example: a conversation ending in an assistant turn, or plain text."""

    where: str
    turns: tuple[Turn, ...] = ()
    text: str | None = None
    prompt: str | None = None  # prompt_completion rows keep their raw strings
    completion: str | None = None
    label: bool | None = None  # unpaired preference data (KTO): True desirable, False undesirable, None unlabelled
    rejected: str | None = None  # pairwise rows: the worse answer (the turns end with the chosen one)
    tools: str | None = None  # tool-calling rows: the declared tools as JSON text (a list of OpenAI-style function schemas)

    @property
    def response(self) -> str:
        """The text the model learns to produce."""
        if self.text is not None:
            return self.text
        if self.completion is not None:
            return self.completion
        last = self.turns[-1]
        if last.tool_calls and not last.content.strip():
            return sharegpt_value(last.tool_calls)  # a turn that only calls a tool: the call is what is learnt
        return last.content


def uses_tools(example: Example) -> bool:
    """Whether the example declares tools or makes a tool call."""
    return example.tools is not None or any(turn.tool_calls for turn in example.turns)


def detect_format(row: dict[str, Any]) -> str | None:
    """The format a row is written in, from its keys; None when no format fits."""
    if "chosen" in row and "rejected" in row:
        return "pairwise"
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
    turns: list[Turn] = []
    for index, item in enumerate(items):
        calling = isinstance(item, dict) and (item.get("tool_calls") is not None or isinstance(item.get("function_call"), dict))
        if not isinstance(item, dict) or role_key not in item or (content_key not in item and not calling):
            raise DataError(f"message {index + 1} must be an object with {role_key!r} and {content_key!r}", where, "fix the row")
        name = str(item[role_key]).lower()
        role = role_map.get(name)
        if role is None:
            raise DataError(f"message {index + 1} has role {item[role_key]!r}; expected one of {', '.join(sorted(role_map))}", where, "fix the role")
        content = item.get(content_key)
        if content is None and calling:
            content = ""  # OpenAI: an assistant message that only calls tools has null content
        if not isinstance(content, str):
            raise DataError(f"message {index + 1} content must be a string", where, "fix the row")
        try:
            calls = sharegpt_calls(content) if name == "function_call" else openai_calls(item, index) if role == "assistant" else ()
        except BadToolData as exc:
            raise DataError(str(exc), where, "fix the row") from None
        if name == "function_call":
            if turns and turns[-1].role == "assistant" and not turns[-1].tool_calls:
                turns[-1] = Turn("assistant", turns[-1].content, calls)  # ShareGPT's answer text, then its call: one turn
                continue
            content = ""
        turns.append(Turn(role, content, calls))
    if turns[-1].role != "assistant":
        raise DataError("the last message must be from the assistant (it is what the model learns)", where, "end each conversation with an assistant reply")
    return tuple(turns)


def _answer(value: Any, key: str, where: str) -> str:
    """A pairwise row's chosen or rejected answer: a string, one message, or a list whose last message is the answer."""
    if value is None:
        raise DataError(f"missing {key!r}", where, "every pairwise row needs prompt, chosen and rejected")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, dict):
        text = value.get("content", value.get("value"))
        if isinstance(text, str):
            return text
    raise DataError(f"{key!r} must be a string, a message, or a list of messages ending with the answer", where, "fix the row")


def _prompt_turns(row: dict[str, Any], where: str) -> tuple[Turn, ...]:
    """The conversation before a pairwise row's answers: `prompt` (a string or messages), ShareGPT `conversations`,
    or, in TRL's implicit-prompt form, the chosen conversation without its last message."""
    prompt = row.get("prompt", row.get("conversations"))
    if prompt is None and isinstance(row.get("chosen"), list):
        prompt = row["chosen"][:-1]
    if isinstance(prompt, str):
        return (Turn("user", prompt),)
    if not isinstance(prompt, list) or not prompt:
        raise DataError("a pairwise row needs a prompt: 'prompt' (a string or messages) or 'conversations'", where, "fix the row")
    turns = []
    for index, item in enumerate(prompt):
        role = item.get("role", item.get("from")) if isinstance(item, dict) else None
        text = item.get("content", item.get("value")) if isinstance(item, dict) else None
        mapped = _SHAREGPT_ROLES.get(str(role).lower()) if role is not None else None
        if mapped is None or not isinstance(text, str):
            raise DataError(f"prompt message {index + 1} must have a role (system, user, assistant) and string content", where, "fix the row")
        turns.append(Turn(mapped, text))
    return tuple(turns)


def _label(row: dict[str, Any], where: str) -> bool | None:
    value = row.get("label")
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # CSV cells
        return value.strip().lower() == "true"
    raise DataError(f"'label' must be true or false (is this answer desirable?), got {value!r}", where, "fix the row")


def _tools(row: dict[str, Any], where: str) -> str | None:
    try:
        return parse_tools(row.get("tools"))
    except BadToolData as exc:
        raise DataError(str(exc), where, "fix the row") from None


def to_example(row: dict[str, Any], fmt: str, where: str) -> Example:
    """Normalise one row of format `fmt`; DataError names file:line and the problem."""
    example = _to_example(row, fmt, where)
    label = _label(row, where)
    return replace(example, label=label) if label is not None else example


def _to_example(row: dict[str, Any], fmt: str, where: str) -> Example:
    if fmt == "pairwise":
        turns = _prompt_turns(row, where) + (Turn("assistant", _answer(row.get("chosen"), "chosen", where)),)
        return Example(where, turns, rejected=_answer(row.get("rejected"), "rejected", where))
    if fmt == "messages":
        example = Example(where, _turns(row.get("messages"), where, "role", "content", _MESSAGE_ROLES), tools=_tools(row, where))
    elif fmt == "sharegpt":
        example = Example(where, _turns(row.get("conversations"), where, "from", "value", _SHAREGPT_ROLES), tools=_tools(row, where))
    elif fmt == "alpaca":
        instruction, extra = _string(row, "instruction", where), _string(row, "input", where, required=False)
        system = _string(row, "system", where, required=False)
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        turns = ((Turn("system", system),) if system.strip() else ()) + (Turn("user", user), Turn("assistant", _string(row, "output", where)))
        example = Example(where, turns)
    elif fmt == "prompt_completion" and isinstance(row.get("prompt"), list) and isinstance(row.get("completion"), list):
        # TRL's conversational prompt/completion (and its KTO rows): two message lists, one conversation
        example = Example(where, _turns(row["prompt"] + row["completion"], where, "role", "content", _MESSAGE_ROLES), tools=_tools(row, where))
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
        hint = ("use alpaca (instruction/output), messages, conversations (ShareGPT), prompt/completion, text or prompt/chosen/rejected"
                if record.error.startswith("no known format") else "fix or remove that row; `sft-tui data inspect` lists every bad row")
        raise DataError(record.error, record.where, hint)
    return record.example


@dataclass(frozen=True)
class LoadedData:
    """A whole file: its format, the usable examples, and rows skipped with the reason."""

    format: str
    examples: tuple[Example, ...]
    skipped: tuple[tuple[str, str], ...]  # (where, why): empty responses teach the model to say nothing
    kind: str = "sft"  # one of KINDS
    undesirable: int = 0  # rows labelled false, left out of supervised fine-tuning
    notes: tuple[str, ...] = ()  # what was done with the rows that a person must be told


def data_kind(fmt: str, examples: list[Example] | tuple[Example, ...]) -> str:
    """What the rows are for: pairwise (better/worse answers), unpaired-labelled (answers marked good or bad),
    tool-calling (any row declares tools or calls one), or sft."""
    if fmt == "pairwise":
        return "pairwise"
    if any(e.label is not None for e in examples):
        return "unpaired-labelled"
    return "tool-calling" if any(uses_tools(e) for e in examples) else "sft"


def load_examples(path: Path, fmt: str = "auto") -> LoadedData:
    """Every usable example of a file for supervised fine-tuning. Malformed rows raise DataError; empty responses
    are skipped and listed.

    No silent mistakes: rows labelled undesirable (label false) are left out, since SFT would
    teach the model exactly those answers, and the notes say how many; pairwise rows train on
    their chosen answer, and the notes say so.
    """
    examples, skipped = [], []
    detected = "unknown"
    undesirable = 0
    for record in iter_records(path, fmt):
        example = _usable(record)
        detected = record.format
        if example.label is False:
            undesirable += 1
        elif not example.response.strip():
            skipped.append((example.where, "empty response"))
        else:
            examples.append(example)
    kind = "unpaired-labelled" if undesirable and detected != "pairwise" else data_kind(detected, examples)
    notes = []
    if kind == "unpaired-labelled":
        notes.append(f"{path.name}: labelled data (label true/false, KTO's format): supervised fine-tuning uses the {len(examples)} "
                     f"desirable rows and leaves out the {undesirable} labelled undesirable (it would teach the model those answers)")
    elif kind == "pairwise":
        notes.append(f"{path.name}: pairwise preference data: supervised fine-tuning trains on the {len(examples)} chosen answers; "
                     f"the rejected ones are not used")
    if not examples:
        why = f" ({len(skipped)} with empty responses)" if skipped else f" ({undesirable} labelled undesirable)" if undesirable else ""
        raise DataError("the file holds no usable rows" + why, str(path), "add training examples")
    return LoadedData(detected, tuple(examples), tuple(skipped), kind, undesirable, tuple(notes))
