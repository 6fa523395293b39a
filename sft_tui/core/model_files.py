"""Where a model's weights and tokenizer are on this machine (never the network).

`resolve_model` (modelspec) only needs config.json; training needs the weights too.
A preset names Hub repos (base, then instruct); those are looked up in the local
Hugging Face cache. A folder is used as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sft_tui.core import hf_cache, presets
from sft_tui.core.errors import UserError

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class ModelFiles:
    """A local model folder and what is in it."""

    folder: Path
    repo: str  # the Hub repo it came from, or "" for a plain folder
    has_tokenizer: bool
    has_chat_template: bool


def _has_weights(folder: Path) -> bool:
    return any(any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS)


def _describe(folder: Path, repo: str) -> ModelFiles:
    has_tokenizer = any((folder / name).is_file() for name in TOKENIZER_FILES)
    template = False
    config = folder / "tokenizer_config.json"
    if config.is_file():
        try:
            template = bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
        except ValueError:
            template = False
    template = template or (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file()
    return ModelFiles(folder, repo, has_tokenizer, template)


def find_model_files(name: str) -> ModelFiles:
    """The local folder with weights for `name` (path, preset, or cached repo id); UserError says how to get it."""
    path = Path(name).expanduser()
    if path.exists():
        folder = path if path.is_dir() else path.parent
        if not _has_weights(folder):
            raise UserError("no weights in this folder (*.safetensors or pytorch_model*.bin)", str(folder), "point model.name at a complete model folder")
        return _describe(folder.resolve(), "")
    repos = []
    names = {p.name.lower(): p.name for p in presets.list_model_presets()}
    if name.lower() in names:
        data = presets.load_model_preset(names[name.lower()])
        repos = [r for r in (data.get("hf_repo"), data.get("hf_repo_instruct")) if r]
    elif hf_cache.looks_like_repo_id(name):
        repos = [name]
    for repo in repos:
        snapshot = hf_cache.cached_snapshot(repo)
        if snapshot is not None and _has_weights(snapshot):
            return _describe(snapshot, repo)
    if repos:
        raise UserError(f"the weights of {name} are not in the local Hugging Face cache ({hf_cache.hf_hub_cache_dir()})",
                        "model.name", f"download them once with `huggingface-cli download {repos[0]}`, or point model.name at a folder")
    raise UserError(f"unknown model {name!r}: not a folder, a preset or an org/name repo id", "model.name", "`sft-tui models list` shows the presets")
