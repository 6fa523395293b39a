"""Small printing helpers shared by the CLI commands (tables, JSON, sizes, times)."""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence

from sft_tui.core.units import GIB



def gib(n_bytes: float) -> str:
    """Bytes as GiB with one decimal."""
    return f"{n_bytes / GIB:.1f}"


def print_json(data: Any) -> None:
    """Machine-readable output: indented JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def short_time(iso: str) -> str:
    """'2026-11-22T03:40:12.345+00:00' -> '2026-11-22 03:40' (UTC as stored)."""
    return iso[:16].replace("T", " ") if iso else "-"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
    """Plain aligned columns: readable in any terminal width, in pipes, and in `grep`."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = [title] if title else []
    for number, row in enumerate(cells):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    sys.stdout.write("\n".join(out) + "\n")
