"""Find a model's files in the local Hugging Face cache without importing huggingface_hub.

The cache layout (`models--ORG--NAME/refs/main` naming a folder under `snapshots/`) is
documented and stable; reading it directly keeps `core` free of heavy imports and never
touches the network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def hf_hub_cache_dir() -> Path:
    """The hub cache folder, honouring HF_HUB_CACHE, HF_HOME and XDG_CACHE_HOME like huggingface_hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def looks_like_repo_id(ref: str) -> bool:
    """True for `org/name` strings that could name a Hugging Face model repository."""
    return bool(_REPO_ID.match(ref))


def cached_snapshot(repo_id: str, cache_dir: Path | None = None) -> Path | None:
    """The snapshot folder of `repo_id` holding a config.json, or None if not cached.

    Prefers the revision `refs/main` points at; otherwise the newest snapshot that has
    a config.json (a cache filled with `revision=...` has no refs/main).
    """
    cache = cache_dir or hf_hub_cache_dir()
    org, name = repo_id.split("/", 1)
    repo_dir = cache / f"models--{org}--{name}"
    if not repo_dir.is_dir():
        return None
    main_ref = repo_dir / "refs" / "main"
    if main_ref.is_file():
        snapshot = repo_dir / "snapshots" / main_ref.read_text().strip()
        if (snapshot / "config.json").is_file():
            return snapshot
    snapshots = [s for s in (repo_dir / "snapshots").glob("*") if (s / "config.json").is_file()]
    if not snapshots:
        return None
    return max(snapshots, key=lambda s: (s / "config.json").stat().st_mtime)
