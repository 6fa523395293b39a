"""The text the data tools compare, count and cluster, taken from a normalised example.

Normalisation for duplicates folds case, drops punctuation and collapses whitespace, so
"Name three colours." and "name three colours" are the same record. Token counts without
a tokenizer use the common rule of thumb for English text (about 4 characters a token).
"""

from __future__ import annotations

import json
import re
from typing import Any

from sft_tui.core.data.formats import Example

_PUNCTUATION = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")
CHARS_PER_TOKEN = 4
TOKENS_PER_TURN = 4  # role markers and separators a chat template adds around each message
SHORT_RESPONSE_WORDS = 2

# Openings of answers that decline: what a model trained on them learns to say.
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,? (but )?i|i apologi[sz]e|as an ai\b|as a language model|"
    r"i (cannot|can'?t|can not|won'?t|am unable to|'m unable to|am not able to|'m not able to|do not have the ability|don'?t have the ability|"
    r"do not have access|don'?t have access)|unfortunately,? i (cannot|can'?t|am unable))",
    re.IGNORECASE,
)


def example_text(example: Example) -> str:
    """All of an example's text: every turn with its role, or the prompt and completion, or the text; with a pair's
    rejected answer and a row's preference label, so rows that teach opposite things are never duplicates."""
    if example.text is not None:
        body = example.text
    elif example.completion is not None:
        body = f"{example.prompt}\n{example.completion}"
    else:
        body = "\n".join(_turn_text(turn) for turn in example.turns) + (f"\ntools: {example.tools}" if example.tools else "")
    if example.rejected is not None:
        body += f"\nrejected: {example.rejected}"
    if example.label is not None:
        body += f"\nlabel: {'desirable' if example.label else 'undesirable'}"
    return body


def _turn_text(turn) -> str:
    """A turn with its calls: two answers that call different tools, or with other arguments, are not duplicates."""
    if not turn.tool_calls:
        return f"{turn.role}: {turn.content}"
    from sft_tui.core.data.tool_calls import sharegpt_value

    return f"{turn.role}: {turn.content}\ncalls: {sharegpt_value(turn.tool_calls)}"


def fields_text(row: dict[str, Any], fields: list[str]) -> str:
    """The named raw fields of a row joined; non-string values (lists of messages) as JSON."""
    parts = []
    for field in fields:
        value = row.get(field)
        parts.append(value if isinstance(value, str) else "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True))
    return "\n".join(parts)


def normalise(text: str) -> str:
    """Case-folded, punctuation-free, single-spaced text: equal for exact duplicates."""
    return _SPACE.sub(" ", _PUNCTUATION.sub(" ", text.casefold())).strip()


def approx_tokens(example: Example) -> int:
    """A tokenizer-free token count: characters / 4, plus a few tokens per chat turn."""
    if example.turns:
        calls = sum(len(c.name) + len(c.arguments) for t in example.turns for c in t.tool_calls)
        tools = len(example.tools or "")  # the chat template renders the tool definitions into the prompt
        return sum(len(t.content) // CHARS_PER_TOKEN + TOKENS_PER_TURN for t in example.turns) + (calls + tools) // CHARS_PER_TOKEN
    return len(example_text(example)) // CHARS_PER_TOKEN + 1


def looks_like_refusal(response: str) -> bool:
    """Whether an answer opens like a refusal ("I'm sorry, but I can't ...", "As an AI ...")."""
    return bool(_REFUSAL.match(response[:200]))


def is_short(response: str) -> bool:
    """At most two words: fine for a label, a warning sign when most answers look like it."""
    return len(response.split()) <= SHORT_RESPONSE_WORDS


def opening(example: Example, words: int = 2) -> str:
    """The first words of the first instruction, lower-cased: a rough view of what tasks the data holds."""
    if example.turns:
        source = next((t.content for t in example.turns if t.role == "user"), "")
    else:
        source = example.prompt if example.prompt is not None else example.text or ""
    return " ".join(normalise(source).split()[:words]) or "(empty)"


def user_turns(example: Example) -> int:
    """How many times the user speaks: 1 for single-turn data, 0 for plain text."""
    return sum(turn.role == "user" for turn in example.turns) if example.turns else (1 if example.completion is not None else 0)
