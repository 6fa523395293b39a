"""Tool-calling conversations as the token rows SFTTrainer trains on, and the check that the chat template renders tools.

Why we tokenize these rows ourselves instead of handing TRL conversational rows with a
`tools` column (which TRL 1.16 does pass to apply_chat_template): a datasets/Arrow column
unifies the nested structs of every row, so one call's arguments would gain every other
call's argument names as nulls, and the template would render them. And TRL's
prompt/completion form masks only the last assistant turn, while a tool conversation has
several (each call, then the answer).

So each conversation is rendered with the tokenizer's template and its tools, once whole
and once up to each assistant turn; the loss mask (TRL's `completion_mask`) covers every
assistant turn, calls and answer, and its end-of-turn token, and never the user or the
tool results. A template that renders an earlier turn differently once the conversation
goes on (some strip reasoning from past turns) cannot mask all turns in one sequence: then
the conversation becomes one row per assistant turn, each a prompt and that turn.
"""

from __future__ import annotations

import json

from sft_tui.core.data.formats import DataError, Example
from sft_tui.core.data.tool_calls import arguments_are_json, openai_tool_calls
from sft_tui.core.errors import UserError

PROBE_NAME = "sft_tui_probe_lookup"
PROBE_ARGUMENT = "sft-tui-probe-argument"
PROBE_RESULT = "sft-tui-probe-result"
PROBE_TOOLS = [{"type": "function", "function": {
    "name": PROBE_NAME, "description": "Look a word up.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "The word."}}, "required": ["query"]}}}]
PROBE_CONVERSATION = [
    {"role": "user", "content": "Look up a word."},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call00001", "type": "function", "function": {"name": PROBE_NAME, "arguments": {"query": PROBE_ARGUMENT}}}]},
    {"role": "tool", "tool_call_id": "call00001", "name": PROBE_NAME, "content": PROBE_RESULT},
    {"role": "assistant", "content": "Done."},
]


def tool_template_problem(tokenizer) -> str | None:
    """What the chat template loses of a conversation with one tool (its definition, the call, the result), or None."""
    try:
        prompt = tokenizer.apply_chat_template(PROBE_CONVERSATION[:1], tools=PROBE_TOOLS, tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(PROBE_CONVERSATION, tools=PROBE_TOOLS, tokenize=False)
    except Exception as exc:  # noqa: BLE001 - a template's own raise_exception, or one that cannot read these messages
        return f"it fails on a conversation with a tool ({type(exc).__name__}: {str(exc)[:120]})"
    if PROBE_NAME not in prompt:
        return "it leaves out the tool definitions"
    if PROBE_ARGUMENT not in whole:
        return "it leaves out the assistant's tool calls"
    if PROBE_RESULT not in whole:
        return "it leaves out the tool results"
    return None


def check_tool_template(tokenizer, model: str) -> None:
    """A UserError (one line, the fix named) when the chat template cannot render tools, tool calls and results."""
    problem = tool_template_problem(tokenizer)
    if problem:
        raise UserError(f"the data calls tools but the chat template of {model} cannot show them: {problem}", "model.chat_template",
                        "set model.chat_template to a template that renders tools (e.g. the instruct model's), or train on rows without tools")


def template_messages(example: Example) -> list[dict]:
    """The conversation as chat templates read it: calls with their arguments as objects, results linked to calls by id."""
    messages, pending, number = [], [], 1
    for turn in example.turns:
        message: dict = {"role": turn.role, "content": turn.content}
        if turn.tool_calls:
            for call in turn.tool_calls:
                if not call.name or not arguments_are_json(call):
                    raise DataError(f"a call to {call.name or '(no name)'!r} has arguments that are not a JSON object: {call.arguments[:60]!r}",
                                    example.where, "fix or remove the row (the model would learn to write broken calls); `sft-tui data inspect` lists them")
            message["tool_calls"] = openai_tool_calls(turn.tool_calls, number, parsed=True)
            pending = [(call["id"], call["function"]["name"]) for call in message["tool_calls"]]
            number += len(turn.tool_calls)
        elif turn.role == "tool" and pending:
            message["tool_call_id"], message["name"] = pending.pop(0)
        messages.append(message)
    return messages


def _common_prefix(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def tokenized_rows(example: Example, tokenizer) -> list[dict]:
    """input_ids and completion_mask rows for one conversation: one row, or one per assistant turn (module docstring)."""
    if not example.turns:
        raise DataError("a tool-calling file holds a row without a conversation", example.where, "give every row messages or conversations")
    messages = template_messages(example)
    tools = json.loads(example.tools) if example.tools else None

    def ids(conversation: list[dict], generation: bool = False) -> list[int]:
        text = tokenizer.apply_chat_template(conversation, tools=tools, tokenize=False, add_generation_prompt=generation)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    whole = ids(messages)
    turns = []  # (ids up to and with this assistant turn, where the turn starts)
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            upto = ids(messages[: index + 1])
            turns.append((upto, _common_prefix(ids(messages[:index], generation=True), upto) if index else 0))
    if all(upto == whole[: len(upto)] for upto, _ in turns):
        mask = [0] * len(whole)
        for upto, start in turns:
            mask[start:len(upto)] = [1] * (len(upto) - start)
        return [{"input_ids": whole, "completion_mask": mask}]
    return [{"input_ids": upto, "completion_mask": [0] * start + [1] * (len(upto) - start)} for upto, start in turns]
