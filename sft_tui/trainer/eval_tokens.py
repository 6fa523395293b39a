"""Held-out examples as the token ids eval scores: prompts through the run's chat template, answers as training saw them.

A conversation's prompt is every turn before the last; its answer is the last assistant
turn, closed by the template's end-of-turn token (so the scores count learning to stop).
Tool-calling conversations become chat messages exactly as their training rendered them
(trainer.tool_rows.template_messages: calls with ids and parsed arguments, results linked
to their calls), with the declared tools passed to the template. The answer starts where the
tokenised prompt and prompt+answer first differ (TRL's rule for the same question).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sft_tui.core.data.formats import Example, Turn, uses_tools
from sft_tui.core.errors import UserError


@dataclass(frozen=True)
class EvalPrompt:
    """One held-out example's prompt: chat messages (or a raw prompt string) and its declared tools."""

    messages: list[dict] | str
    tools: list[dict] | None = None


def _arguments(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text  # kept as written: a template renders it, the tool checks report it


def message(turn: Turn) -> dict:
    """One turn as a chat-template message (tool calls in the shape Hugging Face templates read)."""
    out: dict = {"role": turn.role, "content": turn.content}
    if turn.tool_calls:
        out["tool_calls"] = [{"type": "function", "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
                             for c in turn.tool_calls]
    return out


def conversation(example: Example) -> list[dict]:
    """The example's turns as chat-template messages, its answer last."""
    if uses_tools(example):
        from sft_tui.trainer.tool_rows import template_messages

        return template_messages(example)
    return [message(t) for t in example.turns]


def declared_tools(example: Example) -> list[dict] | None:
    """The example's declared tools as a list of schemas for the chat template; None when it declares none."""
    if not example.tools:
        return None
    try:
        tools = json.loads(example.tools)
    except ValueError:
        return None
    return tools if isinstance(tools, list) and tools else None


def eval_prompt(example: Example) -> EvalPrompt:
    """The prompt an example's last answer replies to; a UserError for plain text rows (nothing to answer)."""
    if example.turns:
        return EvalPrompt(conversation(example)[:-1], declared_tools(example))
    if example.completion is not None:
        return EvalPrompt(example.prompt or "")
    raise UserError("plain-text rows have no prompt to answer", example.where, "evaluate on alpaca, messages, ShareGPT or prompt/completion rows")


def prompt_ids(tokenizer, prompt: EvalPrompt) -> list[int]:
    """The prompt's token ids, ready for the assistant's answer."""
    if isinstance(prompt.messages, str):
        return tokenizer(prompt.messages)["input_ids"]
    text = tokenizer.apply_chat_template(prompt.messages, tools=prompt.tools, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def answer_ids(tokenizer, prompt: EvalPrompt, answer: dict | str) -> tuple[list[int], int]:
    """(ids of prompt + answer, where the answer starts). `answer`: an assistant message, or text for a raw prompt."""
    start_ids = prompt_ids(tokenizer, prompt)
    if isinstance(prompt.messages, str):
        full = tokenizer(prompt.messages + (answer if isinstance(answer, str) else answer["content"]))["input_ids"]
    else:
        message_ = answer if isinstance(answer, dict) else {"role": "assistant", "content": answer}
        text = tokenizer.apply_chat_template(prompt.messages + [message_], tools=prompt.tools, tokenize=False)
        full = tokenizer(text, add_special_tokens=False)["input_ids"]
    shared = 0
    for a, b in zip(start_ids, full):
        if a != b:
            break
        shared += 1
    return full, max(1, shared)
