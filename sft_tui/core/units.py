"""Units every part shares: bytes per GiB, and durations as a person reads them."""

from __future__ import annotations

GIB = 1024**3


def gib(n_bytes: float) -> float:
    """Bytes as GiB."""
    return n_bytes / GIB


def format_eta(seconds: float | None) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour up; '-' when unknown."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"
