"""Tool-calling rows: the declared tools and the calls an assistant makes, read from and written to both common forms.

LLaMA-Factory's ShareGPT: a `function_call` message whose value is `{"name": ..., "arguments": {...}}`
(or a list of them), an `observation` message with the tool's result, and `tools` as a JSON
string of bare function schemas. OpenAI (what TRL and chat templates read): an assistant
message with `tool_calls: [{"type": "function", "function": {"name", "arguments"}}]`, a `tool`
message with the result, and `tools` as a list of `{"type": "function", "function": {...}}`.

A call is kept as written: its arguments are JSON text, so a call whose arguments are not
valid JSON is read (and reported by `data inspect`), not lost. What makes a row unreadable
is its shape: tools that are not a JSON list of named functions, tool_calls that are not a
list of objects with a function name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CALL_ID_DIGITS = 5  # "call00001": 9 alphanumeric characters, which Mistral's templates require of an id


class BadToolData(ValueError):
    """A row's tools or tool calls have a shape nothing can read (core.data.formats adds the file:line)."""


@dataclass(frozen=True)
class ToolCall:
    """One function call an assistant turn makes: the tool's name and its arguments as JSON text (kept as written,
    so a call that is not valid JSON can be reported, not lost)."""

    name: str
    arguments: str


def _json_text(value: Any) -> str:
    """Arguments as JSON text: a string is kept as written, anything else is serialised."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_tools(value: Any) -> str | None:
    """The declared tools as compact JSON text in OpenAI's wrapped form, or None when the row declares none.

    Accepts a JSON string (LLaMA-Factory) or a list (OpenAI), of wrapped or bare function schemas.
    """
    if value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadToolData(f"'tools' is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise BadToolData("'tools' must be a list of function schemas")
    tools = []
    for index, tool in enumerate(value):
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise BadToolData(f"tool {index + 1} must be a function schema with a 'name'")
        tools.append({"type": "function", "function": function})
    return json.dumps(tools, ensure_ascii=False) if tools else None


def declared_names(tools: str | None) -> frozenset[str]:
    """The function names a row's tools declare (parse_tools' output)."""
    return frozenset(tool["function"]["name"] for tool in json.loads(tools)) if tools else frozenset()


def arguments_are_json(call: ToolCall) -> bool:
    """Whether a call's arguments parse as a JSON object (what every template and tool runtime expects)."""
    try:
        return isinstance(json.loads(call.arguments), dict)
    except (json.JSONDecodeError, TypeError):
        return False


def sharegpt_calls(value: str) -> tuple[ToolCall, ...]:
    """The calls in a ShareGPT `function_call` message: one object or a list of them.

    A value that is not JSON, or an object without a name, is still one call (name '' when it
    names nothing, arguments as written) so `data inspect` can count it as invalid.
    """
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return (ToolCall("", value),)
    items = parsed if isinstance(parsed, list) and parsed else [parsed]
    calls = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            calls.append(ToolCall(item["name"], _json_text(item.get("arguments", {}))))
        else:
            calls.append(ToolCall("", _json_text(item)))
    return tuple(calls)


def openai_calls(message: dict[str, Any], index: int) -> tuple[ToolCall, ...]:
    """The calls of an OpenAI assistant message: `tool_calls`, or the older single `function_call`."""
    items = message.get("tool_calls")
    if items is None and isinstance(message.get("function_call"), dict):
        items = [{"function": message["function_call"]}]
    if items is None:
        return ()
    if not isinstance(items, list):
        raise BadToolData(f"message {index + 1}: 'tool_calls' must be a list")
    calls = []
    for number, item in enumerate(items, 1):
        function = item.get("function", item) if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadToolData(f"message {index + 1}: tool call {number} must be an object with a function name")
        calls.append(ToolCall(function["name"], _json_text(function.get("arguments", {}))))
    return tuple(calls)


def call_id(number: int) -> str:
    """The id written for the number-th call of a conversation (ids are bookkeeping; rows are read without them)."""
    return f"call{number:0{CALL_ID_DIGITS}d}"


def arguments_value(call: ToolCall) -> Any:
    """The arguments as an object when they are valid JSON, else the text as written."""
    try:
        return json.loads(call.arguments)
    except json.JSONDecodeError:
        return call.arguments


def sharegpt_value(calls: tuple[ToolCall, ...]) -> str:
    """A ShareGPT `function_call` message's value: one call object, or a list for parallel calls."""
    objects = [{"name": c.name, "arguments": arguments_value(c)} for c in calls]
    return json.dumps(objects[0] if len(objects) == 1 else objects, ensure_ascii=False)


def openai_tool_calls(calls: tuple[ToolCall, ...], first_number: int, parsed: bool = False) -> list[dict[str, Any]]:
    """OpenAI `tool_calls` entries; arguments as JSON text (the API's form) or, with parsed, as objects (chat templates')."""
    return [{"id": call_id(first_number + n), "type": "function",
             "function": {"name": c.name, "arguments": arguments_value(c) if parsed else c.arguments}}
            for n, c in enumerate(calls)]


def bare_tools(tools: str) -> list[dict[str, Any]]:
    """The declared tools as LLaMA-Factory writes them: bare function schemas."""
    return [tool["function"] for tool in json.loads(tools)]
