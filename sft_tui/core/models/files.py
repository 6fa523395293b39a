"""Where a model's weights and tokenizer are on this machine (never the network).

`resolve_model` (modelspec) only needs config.json; training needs the weights too.
A preset names Hub repos (base, then instruct); those are looked up in the local
Hugging Face cache. A folder is used as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sft_tui.core.models import hf_cache
from sft_tui.core.models import presets
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


def model_type(folder: Path) -> str | None:
    """The `model_type` of a model folder's config.json (None when it cannot be read): the class transformers loads."""
    try:
        return json.loads((Path(folder) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def chat_template_text(folder: Path) -> str:
    """The model's own chat template source ('' when it has none): chat_template.jinja, or tokenizer_config.json's
    (a list of named templates is joined: any of them may be the one used)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8", errors="replace")
    try:
        value = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError, AttributeError):
        return ""
    if isinstance(value, list):
        return "\n".join(str(item.get("template", "")) for item in value if isinstance(item, dict))
    return value if isinstance(value, str) else ""


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


def _check_safetensors(path: Path) -> None:
    """Read the header of one .safetensors file and check the file holds every byte it describes."""
    fix = "download the model again (`huggingface-cli download REPO`) or copy the file again; a copy cut short looks like this"
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise UserError(f"truncated weights file: {size} bytes, not even a header", str(path), fix)
        header_len = int.from_bytes(head, "little")
        if header_len <= 0 or 8 + header_len > size:
            raise UserError(f"truncated or not a safetensors file: header of {header_len:,} bytes in a file of {size:,}", str(path), fix)
        try:
            header = json.loads(handle.read(header_len).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise UserError("damaged safetensors header (not JSON)", str(path), fix) from None
    if not isinstance(header, dict):
        raise UserError("damaged safetensors header (not a JSON object)", str(path), fix)
    end = 0
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        offsets = entry.get("data_offsets")
        if isinstance(offsets, list) and len(offsets) == 2 and isinstance(offsets[1], int):
            end = max(end, offsets[1])
    expected = 8 + header_len + end
    if size < expected:
        raise UserError(f"truncated weights file: {size:,} bytes, its header describes {expected:,}", str(path), fix)


def check_weight_files(folder: Path) -> int:
    """Open the header of every weights file in `folder` (seconds before a run, not a crash a minute in); returns how many.

    Safetensors: the header parses and the file is as long as it says. Sharded models: every
    shard the index names exists. pytorch_model*.bin: the zip directory at the end is readable.
    """
    import zipfile

    checked = 0
    for index in folder.glob("*.safetensors.index.json"):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (UnicodeDecodeError, ValueError, AttributeError):
            raise UserError("damaged index file (not JSON)", str(index), "download the model again") from None
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise UserError(f"{len(missing)} weight shard(s) named by the index are missing, first {missing[0]}", str(index),
                            "download the whole model again (`huggingface-cli download REPO`)")
    for path in sorted(folder.glob("*.safetensors")):
        _check_safetensors(path)
        checked += 1
    for path in sorted(folder.glob("pytorch_model*.bin")):
        try:
            with zipfile.ZipFile(path):
                pass
        except (zipfile.BadZipFile, OSError):
            raise UserError("damaged or truncated weights file (its zip directory cannot be read)", str(path),
                            "download the model again; a copy cut short looks like this") from None
        checked += 1
    return checked
