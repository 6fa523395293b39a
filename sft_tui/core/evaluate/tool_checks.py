"""Tool-call checks for `sft-tui eval`: does a generated answer call the right tool, the right way?

Every assistant turn of a held-out conversation that calls tools (Turn.tool_calls) is a
question: given the conversation up to it (and the declared tools), what does the model
call? Tool conversations usually end in a text answer after the tool's result, so the
calls are found inside them (call_prefixes). Each answer is scored on four questions, each
a share over the calls it applies to:
  tool_call_json       the answer holds a call that parses as JSON ({"name": ..., "arguments": {...}});
  tool_call_declared   every tool it calls is one the example declares (Example.tools);
  tool_call_name       it calls the same tools as the reference;
  tool_call_arguments  ... with the same arguments (compared as parsed JSON: key order and spacing do not count).

Chat templates render calls in their own wrappers (<tool_call>...</tool_call>, [TOOL_CALLS],
a bare object); the answer is searched for JSON objects anywhere in it, so the check does
not depend on the wrapper. An object counts as a call when it has a string "name" (or an
OpenAI-style {"function": {"name", "arguments"}}); "arguments" may be an object or JSON text,
and "parameters" (Llama 3's spelling) is read as arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from sft_tui.core.data.formats import Example

TOOL_CHECKS = ("tool_call_json", "tool_call_declared", "tool_call_name", "tool_call_arguments")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Call:
    """A tool call with its arguments parsed (a string when the arguments are not valid JSON)."""

    name: str
    arguments: Any


@dataclass(frozen=True)
class ToolCallVerdict:
    """One answer against its reference calls; declared is None when the example declares no tools."""

    valid_json: bool
    declared: bool | None
    same_tools: bool
    same_arguments: bool


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return {} if value is None else value


def _as_call(value: Any) -> Call | None:
    """A JSON value as a call, or None when it is not shaped like one."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):  # OpenAI's {"type": "function", "function": {...}}
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or not name:
        return None
    return Call(name, _arguments(value.get("arguments", value.get("parameters"))))


def parse_calls(text: str) -> tuple[Call, ...]:
    """Every tool call written as JSON anywhere in `text`, in order (a JSON list of calls counts as its calls)."""
    calls: list[Call] = []
    position = 0
    while True:
        starts = [i for i in (text.find("{", position), text.find("[", position)) if i >= 0]
        if not starts:
            return tuple(calls)
        start = min(starts)
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            position = start + 1  # not JSON from here: a brace inside prose, or a broken call
            continue
        found = [_as_call(v) for v in value] if isinstance(value, list) else [_as_call(value)]
        calls += [c for c in found if c is not None]
        position = end


def declared_tools(tools: str | None) -> frozenset[str] | None:
    """Names of the declared tools (OpenAI-style function schemas as JSON text); None when none are declared or unreadable."""
    if not tools:
        return None
    try:
        schemas = json.loads(tools)
    except ValueError:
        return None
    if isinstance(schemas, dict):
        schemas = [schemas]
    if not isinstance(schemas, list):
        return None
    names = {c.name for c in (_as_call(s) for s in schemas) if c is not None}
    return frozenset(names) or None


def reference_calls(tool_calls) -> tuple[Call, ...]:
    """The reference turn's calls (objects with .name and .arguments as JSON text), arguments parsed."""
    return tuple(Call(call.name, _arguments(call.arguments)) for call in tool_calls)


def _key(call: Call) -> str:
    return json.dumps([call.name, call.arguments], sort_keys=True)


def check_tool_call(answer: str, reference: tuple[Call, ...], declared: frozenset[str] | None) -> ToolCallVerdict:
    """How one generated answer's calls compare with the reference calls.

    Several calls are compared as a set (parallel calls may come in any order).
    """
    calls = parse_calls(answer)
    if not calls:
        return ToolCallVerdict(False, None if declared is None else False, False, False)
    return ToolCallVerdict(True, None if declared is None else all(c.name in declared for c in calls),
                           sorted(c.name for c in calls) == sorted(c.name for c in reference),
                           sorted(map(_key, calls)) == sorted(map(_key, reference)))


def score_tool_calls(verdicts: list[ToolCallVerdict]) -> dict[str, float | None]:
    """The share passing each tool check (None where no example applies)."""
    def share(values: list[bool]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    return {"tool_call_json": share([v.valid_json for v in verdicts]),
            "tool_call_declared": share([v.declared for v in verdicts if v.declared is not None]),
            "tool_call_name": share([v.same_tools for v in verdicts]),
            "tool_call_arguments": share([v.same_arguments for v in verdicts])}


def calls_as_text(content: str, calls: tuple[Call, ...]) -> str:
    """A reference answer that calls tools, as text a person reads (and exact match compares): its words, then one JSON call a line."""
    lines = [content.strip()] if content.strip() else []
    lines += [json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False) for c in calls]
    return "\n".join(lines)


def call_prefixes(example: Example) -> list[Example]:
    """The conversation cut after each assistant turn that calls tools but is not the last: one call question each."""
    return [replace(example, turns=example.turns[: index + 1], rejected=None, label=None)
            for index, turn in enumerate(example.turns[:-1]) if turn.role == "assistant" and turn.tool_calls]
