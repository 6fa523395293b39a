"""`data convert`: rewrite a dataset as OpenAI messages, alpaca or ShareGPT rows.

Goes through the same normalised Example the trainer reads, so a converted file trains
exactly like the original. Rows a target cannot hold (plain text has no roles; alpaca
holds one exchange) are left out and listed, never silently changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_tui.core.data.formats import Example, iter_records
from sft_tui.core.data.writers import check_output, write_rows
from sft_tui.core.errors import UserError

TARGETS = ("messages", "alpaca", "sharegpt")
_SHAREGPT_NAMES = {"system": "system", "user": "human", "assistant": "gpt"}


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


def _messages(example: Example) -> list[dict[str, str]]:
    if example.turns:
        return [{"role": t.role, "content": t.content} for t in example.turns]
    if example.completion is not None:
        return [{"role": "user", "content": example.prompt}, {"role": "assistant", "content": example.completion}]
    raise CannotConvert("plain text has no user and assistant turns")


def convert_example(example: Example, to: str) -> dict[str, Any]:
    """One example as a row of format `to`; CannotConvert when it has no such form. A row's `label` goes with it."""
    row = _convert(example, to)
    if example.label is not None:  # dropping it would turn an undesirable answer into a training example
        row["label"] = example.label
    return row


def _convert(example: Example, to: str) -> dict[str, Any]:
    if example.rejected is not None:
        raise CannotConvert("a pairwise row has a chosen and a rejected answer; an SFT format would keep only one")
    messages = _messages(example)
    if to == "messages":
        return {"messages": messages}
    if to == "sharegpt":
        return {"conversations": [{"from": _SHAREGPT_NAMES[m["role"]], "value": m["content"]} for m in messages]}
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
