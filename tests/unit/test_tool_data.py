"""Tool-calling rows read as what they are (issue 15): LLaMA-Factory's ShareGPT function_call/observation and OpenAI's
tool_calls/tool, with their tools; bad rows named by file:line; inspect counts the calls; convert goes both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_tui.core.data.convert import convert_file
from sft_tui.core.data.formats import DataError, ToolCall, iter_records, load_examples
from sft_tui.core.data.inspect import inspect_dataset, report_rows, summary_line
from sft_tui.core.errors import UserError

WEATHER = {"name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CLOCK = {"name": "get_time", "description": "Local time in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sharegpt_tool_file(tmp_path: Path, n: int = 300, calling: int = 153) -> Path:
    """LLaMA-Factory's ShareGPT tool format as it ships (glaive_toolcall): `calling` rows call a tool, the rest
    declare tools and answer directly, or have none at all."""
    rows = []
    for i in range(n):
        tools = json.dumps([WEATHER, CLOCK])
        if i < calling:
            conversations = [{"from": "human", "value": f"What is the weather in city {i}?"},
                             {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": f"city {i}"}})},
                             {"from": "observation", "value": json.dumps({"temperature": i % 30, "sky": "clear"})},
                             {"from": "gpt", "value": f"It is {i % 30} degrees and clear in city {i}."}]
        else:
            conversations = [{"from": "human", "value": f"Tell me a fact about the number {i}."},
                             {"from": "gpt", "value": f"{i} is {'even' if i % 2 == 0 else 'odd'}."}]
            tools = tools if i % 2 else ""
        rows.append({"conversations": conversations, "tools": tools})
    return write_jsonl(tmp_path / "glaive_toolcall.jsonl", rows)


def openai_tool_rows() -> list[dict]:
    return [
        {"messages": [{"role": "system", "content": "Use tools when they help."},
                      {"role": "user", "content": "Weather and time in Oslo?"},
                      {"role": "assistant", "content": None, "tool_calls": [
                          {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
                      {"role": "tool", "tool_call_id": "a", "content": "{\"temperature\": 3}"},
                      {"role": "assistant", "content": "Let me also check the time.", "tool_calls": [
                          {"id": "b", "type": "function", "function": {"name": "get_time", "arguments": {"city": "Oslo"}}}]},
                      {"role": "tool", "tool_call_id": "b", "content": "14:05"},
                      {"role": "assistant", "content": "3 degrees, and it is 14:05."}],
         "tools": [{"type": "function", "function": WEATHER}, {"type": "function", "function": CLOCK}]},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
         "tools": [{"type": "function", "function": WEATHER}]},
    ]


def test_the_sharegpt_tool_file_is_recognised_with_no_row_rejected(tmp_path, cli):
    path = sharegpt_tool_file(tmp_path)
    report = inspect_dataset(path)
    assert (report.format, report.kind, report.records, report.invalid) == ("sharegpt", "tool-calling", 300, 0)
    assert (report.rows_with_calls, report.tool_calls, report.rows_with_tools) == (153, 153, 153 + 74)
    assert (report.invalid_calls, report.undeclared_calls, report.no_user_turn) == (0, 0, 0)
    assert "tool-calling" in summary_line(report)
    assert ("tool calls", "153 in 153 rows", "227 rows declare tools; the calls are learnt, the results are not") in report_rows(report)
    first = load_examples(path).examples[0]
    assert [t.role for t in first.turns] == ["user", "assistant", "tool", "assistant"]
    assert first.turns[1].tool_calls == (ToolCall("get_weather", '{"city": "city 0"}'),)
    assert json.loads(first.tools) == [{"type": "function", "function": WEATHER}, {"type": "function", "function": CLOCK}]
    assert load_examples(path).kind == "tool-calling"
    printed = cli("data", "inspect", str(path))
    assert printed.code == 0 and "300 usable rows, 0 invalid" in printed.out and "calls not valid JSON" in printed.out
    assert json.loads(cli("data", "inspect", str(path), "--json").out)["rows_with_calls"] == 153


def test_openai_tool_rows_are_read_with_their_calls_results_and_tools(tmp_path):
    path = write_jsonl(tmp_path / "openai.jsonl", openai_tool_rows())
    report = inspect_dataset(path)
    assert (report.format, report.kind, report.records, report.invalid) == ("messages", "tool-calling", 2, 0)
    assert (report.rows_with_calls, report.tool_calls, report.rows_with_tools) == (1, 2, 2)
    example = load_examples(path).examples[0]
    assert [(t.role, t.content, t.tool_calls) for t in example.turns[2:5]] == [
        ("assistant", "", (ToolCall("get_weather", '{"city": "Oslo"}'),)),  # arguments kept as written
        ("tool", '{"temperature": 3}', ()),
        ("assistant", "Let me also check the time.", (ToolCall("get_time", '{"city": "Oslo"}'),))]


def test_calls_that_are_not_json_or_name_no_declared_tool_are_read_and_reported(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "get_weather(city=Paris)"},
                               {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}], "tools": json.dumps([WEATHER])},
            {"messages": [{"role": "user", "content": "q"},
                          {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": "{city: Paris"}}]},
                          {"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}]},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": json.dumps({"name": "send_email", "arguments": {}})},
                               {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}], "tools": json.dumps([WEATHER])}]
    path = write_jsonl(tmp_path / "calls.jsonl", [rows[0], rows[2]])
    report = inspect_dataset(path)
    assert (report.records, report.invalid, report.invalid_calls, report.undeclared_calls) == (2, 0, 1, 2)
    assert report.first_invalid_call == f"{path}:1: (no name)(get_weather(city=Paris))"
    assert report.first_undeclared_call == f"{path}:1: (no name)(get_weather(city=Paris))"
    table = {check: (value, note) for check, value, note in report_rows(report)}
    assert table["calls to undeclared tools"][0] == "2" and "tools that do not exist" in table["calls to undeclared tools"][1]
    openai = inspect_dataset(write_jsonl(tmp_path / "o.jsonl", [rows[1]]))
    assert (openai.invalid, openai.invalid_calls, openai.undeclared_calls) == (0, 1, 1)  # no tools declared at all


@pytest.mark.parametrize(("row", "reason"), [
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function", "value": "x"}, {"from": "gpt", "value": "a"}]},
     "message 2 has role 'function'; expected one of"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": {"name": "f"}},
                   {"role": "assistant", "content": "a"}]}, "message 2: 'tool_calls' must be a list"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [{"type": "function"}]},
                   {"role": "assistant", "content": "a"}]}, "message 2: tool call 1 must be an object with a function name"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "tools": "[{\"name\": "},
     "'tools' is not valid JSON"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "tools": "[{\"description\": \"x\"}]"},
     "tool 1 must be a function schema with a 'name'"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{}"}, {"from": "observation", "value": "r"}]},
     "the last message must be from the assistant"),
])
def test_a_structurally_broken_tool_row_is_one_line_with_file_and_line(tmp_path, row, reason):
    good = ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]} if "messages" in row else
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "tools": json.dumps([WEATHER])})
    path = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    records = list(iter_records(path))
    assert records[0].error is None and records[1].error.startswith(reason)
    assert inspect_dataset(path).invalid_rows == (f"{path}:2: {records[1].error}",)
    with pytest.raises(DataError) as caught:
        load_examples(path)
    assert caught.value.line().startswith(f"{path}:2: {reason}")


def test_conversations_with_no_user_turn_are_counted_for_every_kind(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]},
            {"messages": [{"role": "assistant", "content": "b"}]}]
    report = inspect_dataset(write_jsonl(tmp_path / "sft.jsonl", rows))
    assert (report.kind, report.no_user_turn, report.first_no_user_turn) == ("sft", 2, f"{tmp_path / 'sft.jsonl'}:2")
    table = {check: (value, note) for check, value, note in report_rows(report)}
    assert table["conversations with no user turn"] == ("2", f"first at {tmp_path / 'sft.jsonl'}:2; those answers reply to nothing asked")
    pairs = [{"prompt": [{"role": "system", "content": "s"}], "chosen": "a", "rejected": "b"}]
    assert inspect_dataset(write_jsonl(tmp_path / "p.jsonl", pairs)).no_user_turn == 1


def test_convert_goes_between_the_tool_formats_and_back_without_losing_anything(tmp_path):
    source = sharegpt_tool_file(tmp_path, n=6, calling=3)
    openai = convert_file(source, tmp_path / "openai.jsonl", "messages")
    back = convert_file(tmp_path / "openai.jsonl", tmp_path / "back.jsonl", "sharegpt")
    assert (openai.written, openai.left_out, back.written, back.left_out) == (6, 0, 6, 0)
    original = [json.loads(x) for x in source.read_text().splitlines()]
    again = [json.loads(x) for x in (tmp_path / "back.jsonl").read_text().splitlines()]
    for before, after in zip(original, again):
        assert after["conversations"] == before["conversations"]
        assert json.loads(after.get("tools") or "[]") == json.loads(before["tools"] or "[]")
    row = json.loads((tmp_path / "openai.jsonl").read_text().splitlines()[0])
    assert row["messages"][1]["tool_calls"] == [{"id": "call00001", "type": "function",
                                                 "function": {"name": "get_weather", "arguments": '{"city": "city 0"}'}}]
    assert row["messages"][2] == {"role": "tool", "content": '{"temperature": 0, "sky": "clear"}', "tool_call_id": "call00001"}
    assert row["tools"] == [{"type": "function", "function": WEATHER}, {"type": "function", "function": CLOCK}]

    def examples(path):
        return [(e.turns, e.tools) for e in load_examples(path).examples]

    assert examples(source) == examples(tmp_path / "openai.jsonl") == examples(tmp_path / "back.jsonl")


def test_openai_rows_with_text_beside_a_call_round_trip_through_sharegpt(tmp_path):
    source = write_jsonl(tmp_path / "o.jsonl", openai_tool_rows())
    convert_file(source, tmp_path / "s.jsonl", "sharegpt")
    shared = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])
    assert [m["from"] for m in shared["conversations"]] == ["system", "human", "function_call", "observation", "gpt", "function_call",
                                                            "observation", "gpt"]
    convert_file(tmp_path / "s.jsonl", tmp_path / "o2.jsonl", "messages")
    assert [e.turns for e in load_examples(source).examples] == [e.turns for e in load_examples(tmp_path / "o2.jsonl").examples]


def test_convert_refuses_what_a_target_cannot_hold(tmp_path):
    parallel = {"messages": [{"role": "user", "content": "q"},
                             {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": "{}"}},
                                                                                 {"function": {"name": "get_time", "arguments": "{}"}}]},
                             {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"}, {"role": "assistant", "content": "a"}]}
    source = write_jsonl(tmp_path / "p.jsonl", [parallel, openai_tool_rows()[1]])
    report = convert_file(source, tmp_path / "s.jsonl", "sharegpt")
    assert report.written == 1 and report.left_out_rows == ((f"{source}:1: two tool results in a row (parallel calls): "
                                                             "LLaMA-Factory's ShareGPT holds one observation per turn"),)
    with pytest.raises(UserError, match="no row could be converted to alpaca .*:1: alpaca holds no tool calls or tool results"):
        convert_file(source, tmp_path / "a.jsonl", "alpaca")  # the second row declares tools: alpaca would drop them
    assert not (tmp_path / "a.jsonl").exists()


def test_rows_that_differ_only_in_their_calls_are_not_duplicates_and_calls_count_as_tokens(tmp_path):
    from sft_tui.core.data.dedup import deduplicate
    from sft_tui.core.data.formats import load_examples
    from sft_tui.core.data.text import approx_tokens

    def row(city: str, unit: str) -> dict:
        return {"conversations": [{"from": "human", "value": "Weather please, in the usual city."},
                                  {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": city, "unit": unit}})},
                                  {"from": "observation", "value": "fine"}, {"from": "gpt", "value": "It is fine."}],
                "tools": json.dumps([WEATHER])}

    path = write_jsonl(tmp_path / "calls.jsonl", [row("Oslo", "C"), row("Lima", "F"), row("Oslo", "C")])
    report = deduplicate(path, tmp_path / "out.jsonl")
    assert (report.kept, report.exact_removed, report.near_removed) == (2, 1, 0)  # only the true copy goes
    with_calls = load_examples(path).examples[0]
    without = type(with_calls)(with_calls.where, tuple(type(t)(t.role, t.content) for t in with_calls.turns))
    assert approx_tokens(with_calls) > approx_tokens(without) + len(json.dumps([WEATHER])) // 4 - 1
