"""Tool-call checks: finding calls in generated text and comparing them with the reference's. Pure functions, no model."""

from __future__ import annotations

import json

import pytest

from sft_tui.core.data.formats import ToolCall
from sft_tui.core.evaluate.tool_checks import (
    Call,
    ToolCallVerdict,
    calls_as_text,
    check_tool_call,
    declared_tools,
    parse_calls,
    reference_calls,
    score_tool_calls,
)

TOOLS = json.dumps([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
                    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}])
WEATHER = reference_calls((ToolCall("get_weather", '{"city": "Oslo", "unit": "C"}'),))


@pytest.mark.parametrize(("text", "calls"), [
    ('{"name": "get_weather", "arguments": {"city": "Oslo"}}', [Call("get_weather", {"city": "Oslo"})]),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>', [Call("get_weather", {"city": "Oslo"})]),
    ('Let me check. {"name": "get_time", "arguments": "{\\"tz\\": \\"UTC\\"}"} done', [Call("get_time", {"tz": "UTC"})]),
    ('[{"name": "a", "arguments": {}}, {"name": "b", "parameters": {"x": 1}}]', [Call("a", {}), Call("b", {"x": 1})]),
    ('{"type": "function", "function": {"name": "a", "arguments": {"k": [1, 2]}}}', [Call("a", {"k": [1, 2]})]),
    ('{"name": "a"}', [Call("a", {})]),
    ('{"name": "get_weather", "arguments": {"city": "Oslo"}', []),  # the closing brace is missing: not valid JSON
    ('The answer is {"city": "Oslo"} and {not json}', []),  # JSON, but not a call
    ('{"name": 3, "arguments": {}}', []),
    ("", []),
])
def test_calls_are_found_anywhere_in_the_answer_whatever_wraps_them(text, calls):
    assert list(parse_calls(text)) == calls


def test_declared_tools_are_read_from_openai_function_schemas():
    assert declared_tools(TOOLS) == frozenset({"get_weather", "get_time"})
    assert declared_tools(json.dumps([{"name": "plain", "parameters": {}}])) == frozenset({"plain"})
    assert declared_tools(None) is None and declared_tools("") is None and declared_tools("not json") is None and declared_tools("[]") is None


def test_a_right_call_passes_every_check_with_arguments_compared_as_json():
    answer = '<tool_call>{"arguments": {"unit": "C", "city": "Oslo"}, "name": "get_weather"}</tool_call>'  # other key order
    assert check_tool_call(answer, WEATHER, declared_tools(TOOLS)) == ToolCallVerdict(True, True, True, True)


@pytest.mark.parametrize(("answer", "verdict"), [
    ('{"name": "get_weather", "arguments": {"city": "Bergen", "unit": "C"}}', ToolCallVerdict(True, True, True, False)),
    ('{"name": "get_time", "arguments": {"city": "Oslo", "unit": "C"}}', ToolCallVerdict(True, True, False, False)),
    ('{"name": "search_web", "arguments": {"q": "Oslo weather"}}', ToolCallVerdict(True, False, False, False)),
    ('{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "C"}', ToolCallVerdict(False, False, False, False)),
    ("It is sunny in Oslo.", ToolCallVerdict(False, False, False, False)),
    ('{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "C"}} {"name": "get_time", "arguments": {}}',
     ToolCallVerdict(True, True, False, False)),  # a call too many
])
def test_wrong_calls_fail_the_checks_they_get_wrong(answer, verdict):
    assert check_tool_call(answer, WEATHER, declared_tools(TOOLS)) == verdict


def test_parallel_calls_match_in_any_order_and_no_declared_tools_leaves_that_check_out():
    reference = reference_calls((ToolCall("a", '{"x": 1}'), ToolCall("b", '{"y": 2}')))
    answer = '{"name": "b", "arguments": {"y": 2}}\n{"name": "a", "arguments": {"x": 1}}'
    assert check_tool_call(answer, reference, None) == ToolCallVerdict(True, None, True, True)


def test_scores_are_shares_over_the_examples_each_check_applies_to():
    verdicts = [ToolCallVerdict(True, True, True, True), ToolCallVerdict(True, None, True, False),
                ToolCallVerdict(False, False, False, False), ToolCallVerdict(True, True, False, False)]
    assert score_tool_calls(verdicts) == {"tool_call_json": 0.75, "tool_call_declared": 0.6667, "tool_call_name": 0.5,
                                          "tool_call_arguments": 0.25}
    assert score_tool_calls([]) == dict.fromkeys(("tool_call_json", "tool_call_declared", "tool_call_name", "tool_call_arguments"))


def test_a_reference_call_reads_as_its_words_then_one_json_call_a_line():
    calls = reference_calls((ToolCall("get_weather", '{"city": "Oslo"}'), ToolCall("broken", "{city")))
    assert calls[1] == Call("broken", "{city")  # kept as written, so a bad reference shows
    assert calls_as_text(" Checking. ", calls) == 'Checking.\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n{"name": "broken", "arguments": "{city"}'
    assert json.loads(calls_as_text("", calls[:1])) == {"name": "get_weather", "arguments": {"city": "Oslo"}}
