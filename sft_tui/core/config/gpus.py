"""`[distributed] gpus`: a count, "all", or a list of GPU indices, kept in one canonical string.

The run's config.toml is written back as text and read again by the trainer, so the three
spellings a person may use (`gpus = 2`, `gpus = "all"`, `gpus = [0, 2]`) are normalised to
one string: "2", "all" or "[0, 2]" (brackets keep a list of one, "[1]", apart from a count). Everything that needs a number or the indices asks here.
"""

from __future__ import annotations

from typing import Any

ALL = "all"


def normalise_gpus(value: Any) -> str | None:
    """The canonical string for a gpus value, or None when it is none of the three forms."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 1 else None
    if isinstance(value, list):
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value) or len(set(value)) < len(value):
            return None  # a GPU named twice would put two ranks on it
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, str):
        text = value.strip().lower()
        if text == ALL:
            return ALL
        if text.isdigit():
            return normalise_gpus(int(text))
        listed = text.startswith("[") and text.endswith("]")
        parts = [p.strip() for p in text.strip("[]").split(",")]
        if (listed or len(parts) > 1) and all(p.isdigit() for p in parts):
            return normalise_gpus([int(p) for p in parts])
    return None


def gpu_ids(spec: str) -> tuple[int, ...]:
    """The indices a list names ("[0, 2]" -> (0, 2)); () for a count or "all" (any GPUs)."""
    return tuple(int(p) for p in spec.strip("[]").split(",")) if spec.startswith("[") else ()


def gpu_count(spec: str, visible: int | None = None) -> int:
    """How many GPUs the run asks for: the count, the list's length, or `visible` for "all" (1 when not known)."""
    if spec == ALL:
        return max(1, visible or 1)
    if spec.startswith("["):
        return len(gpu_ids(spec))
    return int(spec)
