"""Count tokens with a model's own tokenizer, offline and without torch.

Reads the model folder's tokenizer.json with the `tokenizers` library and renders its
chat template with a sandboxed jinja2 environment set up the way transformers sets up
its own (trim_blocks, lstrip_blocks, loop controls, raise_exception), so a conversation
is counted as the trainer will see it. Loading transformers here would pull in torch and
cost seconds; these two libraries cost milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sft_tui.core.models import hf_cache
from sft_tui.core.models import presets
from sft_tui.core.data.formats import Example
from sft_tui.core.data.text import TOKENS_PER_TURN
from sft_tui.core.errors import UserError


@dataclass(frozen=True)
class TokenCounter:
    """A tokenizer-backed counter: `count(example)` and a description for the report."""

    count: Callable[[Example], int]
    method: str


def find_tokenizer_folder(model: str) -> Path:
    """A local folder with tokenizer.json for a path, preset or cached repo id; UserError otherwise."""
    path = Path(model).expanduser()
    if path.exists():
        folder = path if path.is_dir() else path.parent
        if (folder / "tokenizer.json").is_file():
            return folder
        raise UserError("no tokenizer.json in this folder", str(folder), "point --model at a model folder with a fast tokenizer, or leave it out for an approximate count")
    names = {p.name.lower(): p.name for p in presets.list_model_presets()}
    repos = [model]
    if model.lower() in names:
        data = presets.load_model_preset(names[model.lower()])
        repos = [r for r in (data.get("hf_repo_instruct"), data.get("hf_repo")) if r]
    for repo in repos:
        if hf_cache.looks_like_repo_id(repo) and (snapshot := hf_cache.cached_snapshot(repo)) and (snapshot / "tokenizer.json").is_file():
            return snapshot
    raise UserError(f"no tokenizer for {model!r} on this machine (folder, preset or repo in {hf_cache.hf_hub_cache_dir()})", "--model",
                    "download the model once, point --model at its folder, or leave --model out for an approximate count")


def _chat_template(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    if isinstance(template, list):  # named templates: the default one is what training uses
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    return template or None


def _special_tokens(folder: Path) -> dict[str, str]:
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    out = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = data.get(key)
        out[key] = value.get("content", "") if isinstance(value, dict) else (value or "")
    return out


def _render(template_text: str, specials: dict[str, str]) -> Callable[[list[dict]], str]:
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    # as transformers renders: its tojson neither sorts keys nor escapes HTML characters (Jinja's built-in does both)
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    template = env.from_string(template_text)
    return lambda messages, tools=None: template.render(messages=messages, tools=tools, add_generation_prompt=False, **specials)


def _template_messages(example: Example) -> list[dict]:
    """The conversation as a chat template reads it, tool calls included (as training renders it)."""
    from sft_tui.core.data.tool_calls import openai_tool_calls

    messages, number = [], 1
    for turn in example.turns:
        message: dict = {"role": turn.role, "content": turn.content}
        if turn.tool_calls:
            message["tool_calls"] = openai_tool_calls(turn.tool_calls, number, parsed=True)
            number += len(turn.tool_calls)
        messages.append(message)
    return messages


def model_token_counter(model: str) -> TokenCounter:
    """A counter using the model's tokenizer and chat template, found offline."""
    from tokenizers import Tokenizer

    folder = find_tokenizer_folder(model)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # a tokenizer.json may carry truncation/padding settings (the demo's says 64): counting needs the full length
    tokenizer.no_truncation()
    tokenizer.no_padding()
    template = _chat_template(folder)
    render = _render(template, _special_tokens(folder)) if template else None

    def count(example: Example) -> int:
        if example.turns:
            messages = _template_messages(example)
            tools = json.loads(example.tools) if example.tools else None  # the template renders them into the prompt
            if render is not None:
                try:
                    return len(tokenizer.encode(render(messages, tools), add_special_tokens=False).ids)
                except Exception:  # a template that rejects this conversation (e.g. no system role): count plainly
                    pass
            extra = (example.tools or "") + "".join(c.name + c.arguments for t in example.turns for c in t.tool_calls)
            return (sum(len(tokenizer.encode(m["content"], add_special_tokens=False).ids) + TOKENS_PER_TURN for m in messages)
                    + (len(tokenizer.encode(extra, add_special_tokens=False).ids) if extra else 0))
        text = example.text if example.text is not None else f"{example.prompt}{example.completion}"
        return len(tokenizer.encode(text).ids)

    method = f"tokenizer of {folder}" + (" with its chat template" if render else " (no chat template: 4 tokens added per turn)")
    return TokenCounter(count, method)
