"""`data convert`: rewrite a dataset as OpenAI messages, alpaca or ShareGPT rows, or between preference formats.

Goes through the same normalised Example the trainer reads, so a converted file trains
exactly like the original. Tool-calling rows keep their calls, results and tools in both
messages (OpenAI tool_calls/tool) and sharegpt (LLaMA-Factory function_call/observation).
Pairs go between TRL's prompt/chosen/rejected (messages or strings) and LLaMA-Factory's
ShareGPT pairs; labelled rows to TRL's KTO rows. Rows a target cannot hold (plain text has
no roles; alpaca holds one exchange and no calls) are left out and listed, never silently changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_tui.core.data.formats import Example, Turn, iter_records, uses_tools
from sft_tui.core.data.tool_calls import bare_tools, openai_tool_calls, sharegpt_value
from sft_tui.core.data.writers import check_output, write_rows
from sft_tui.core.errors import UserError

# SFT and tool-calling rows: OpenAI messages (+ tool_calls, tool, tools), alpaca, LLaMA-Factory ShareGPT
# (+ function_call, observation, tools). Preference rows: TRL's pairs as messages or strings, LLaMA-Factory's
# pairs, and TRL's unpaired (KTO) rows.
SFT_TARGETS = ("messages", "alpaca", "sharegpt")
PREFERENCE_TARGETS = ("pairwise", "pairwise-strings", "pairwise-sharegpt", "kto")
TARGETS = SFT_TARGETS + PREFERENCE_TARGETS
_SHAREGPT_NAMES = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}


class CannotConvert(Exception):
    """This example has no form in the target format."""


@dataclass(frozen=True)
class ConvertReport:
    """What `data convert` wrote and what it left out."""

    input: str
    output: str
    to: str
    written: int
    left_out: int
    left_out_rows: tuple[str, ...]  # "file:line: reason", first 10

    def to_json(self) -> dict:
        """The --json object."""
        from dataclasses import asdict

        return asdict(self)


def _messages(turns: tuple[Turn, ...]) -> list[dict[str, Any]]:
    """OpenAI messages; each tool result is linked to its call by a written id (rows are read without ids)."""
    messages, pending, number = [], [], 1
    for turn in turns:
        message: dict[str, Any] = {"role": turn.role, "content": turn.content}
        if turn.tool_calls:
            message["tool_calls"] = openai_tool_calls(turn.tool_calls, number)
            pending = [call["id"] for call in message["tool_calls"]]
            number += len(turn.tool_calls)
        elif turn.role == "tool" and pending:
            message["tool_call_id"] = pending.pop(0)
        messages.append(message)
    return messages


def _sharegpt(turns: tuple[Turn, ...]) -> list[dict[str, str]]:
    """LLaMA-Factory's conversation: an assistant turn that calls tools becomes its text (if any) and a function_call."""
    out = []
    for index, turn in enumerate(turns):
        if turn.role == "tool" and index and turns[index - 1].role == "tool":
            raise CannotConvert("two tool results in a row (parallel calls): LLaMA-Factory's ShareGPT holds one observation per turn")
        if turn.content or not turn.tool_calls:
            out.append({"from": _SHAREGPT_NAMES[turn.role], "value": turn.content})
        if turn.tool_calls:
            out.append({"from": "function_call", "value": sharegpt_value(turn.tool_calls)})
    return out


def _chat_turns(example: Example) -> tuple[Turn, ...]:
    if example.turns:
        return example.turns
    if example.completion is not None:
        return (Turn("user", example.prompt or ""), Turn("assistant", example.completion))
    raise CannotConvert("plain text has no user and assistant turns")


def convert_example(example: Example, to: str) -> dict[str, Any]:
    """One example as a row of format `to`; CannotConvert when it has no such form. A row's `label` goes with it."""
    row = _preference(example, to) if to in PREFERENCE_TARGETS else _convert(example, to)
    if example.label is not None:  # dropping it would turn an undesirable answer into a training example
        row["label"] = example.label
    return row


def _preference(example: Example, to: str) -> dict[str, Any]:
    if uses_tools(example):
        raise CannotConvert(f"{to} rows hold no tool calls or tools")
    turns = _chat_turns(example)
    prompt, answer = turns[:-1], turns[-1]
    if to == "kto":
        if example.rejected is not None:
            raise CannotConvert("a pair is two KTO rows (chosen desirable, rejected undesirable), not one; "
                                "train it with method.objective = 'kto' as it is")
        if example.label is None:
            raise CannotConvert("no 'label': KTO's rows say whether each answer is desirable")
        return {"prompt": _messages(prompt), "completion": [{"role": "assistant", "content": answer.content}]}
    if example.rejected is None:
        raise CannotConvert("this row has one answer; a pairwise format needs a chosen and a rejected one")
    if to == "pairwise-strings":
        if [t.role for t in prompt] != ["user"]:
            raise CannotConvert(f"the prompt has {len(prompt)} messages ({', '.join(t.role for t in prompt)}); "
                                "a string prompt holds one user message (use --to pairwise)")
        return {"prompt": prompt[0].content, "chosen": answer.content, "rejected": example.rejected}
    if to == "pairwise-sharegpt":
        return {"conversations": _sharegpt(prompt), "chosen": {"from": "gpt", "value": answer.content},
                "rejected": {"from": "gpt", "value": example.rejected}}
    return {"prompt": _messages(prompt), "chosen": [{"role": "assistant", "content": answer.content}],
            "rejected": [{"role": "assistant", "content": example.rejected}]}


def _convert(example: Example, to: str) -> dict[str, Any]:
    if example.rejected is not None:
        raise CannotConvert("a pairwise row has a chosen and a rejected answer; an SFT format would keep only one "
                            "(use --to pairwise, pairwise-sharegpt or pairwise-strings)")
    if to == "messages":
        row: dict[str, Any] = {"messages": _messages(_chat_turns(example))}
        if example.tools:
            row["tools"] = json.loads(example.tools)
        return row
    if to == "sharegpt":
        row = {"conversations": _sharegpt(_chat_turns(example))}
        if example.tools:
            row["tools"] = json.dumps(bare_tools(example.tools), ensure_ascii=False)  # LLaMA-Factory: a JSON string
        return row
    if uses_tools(example):
        raise CannotConvert("alpaca holds no tool calls or tool results (use --to messages or sharegpt)")
    messages = _messages(_chat_turns(example))
    system = [m["content"] for m in messages if m["role"] == "system"]
    chat = [m for m in messages if m["role"] != "system"]
    if len(chat) != 2 or len(system) > 1:
        raise CannotConvert(f"alpaca holds one question and one answer; this row has {len(chat)} messages")
    row = {"instruction": chat[0]["content"], "input": "", "output": chat[1]["content"]}
    if system:
        row["system"] = system[0]
    return row


def convert_file(path: Path, output: Path, to: str, fmt: str = "auto", force: bool = False) -> ConvertReport:
    """Convert every usable row; rows that are invalid or have no form in `to` are counted and listed."""
    if to not in TARGETS:
        raise UserError(f"unknown target format {to!r}", "--to", f"use one of {', '.join(TARGETS)}")
    check_output(output, [path], force)
    left_out: list[str] = []

    def rows():
        for record in iter_records(path, fmt):
            if record.example is None:
                left_out.append(f"{record.where}: {record.error}")
                continue
            try:
                yield convert_example(record.example, to)
            except CannotConvert as exc:
                left_out.append(f"{record.where}: {exc}")

    def nothing() -> UserError:
        first = f" (first: {left_out[0]})" if left_out else ""
        return UserError(f"no row could be converted to {to}{first}", str(path), "check the rows with `sft-tui data inspect`")

    written = write_rows(output, rows(), if_empty=nothing)
    return ConvertReport(str(path), str(output), to, written, len(left_out), tuple(left_out[:10]))
