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


def fit_columns(headers: Sequence[str], rows: Sequence[Sequence[Any]], drop: Sequence[str], width: int) -> tuple[list[str], list[list[Any]]]:
    """Leave out the `drop` columns, first named first, until a table fits `width` characters (or none is left to drop)."""
    headers, rows = list(headers), [list(r) for r in rows]

    def total() -> int:
        return sum(max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))) + 2 * (len(headers) - 1)

    for name in drop:
        if total() <= width or name not in headers:
            continue
        index = headers.index(name)
        headers.pop(index)
        for row in rows:
            row.pop(index)
    return headers, rows


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "", drop: Sequence[str] = ()) -> None:
    """Plain aligned columns: readable in any terminal width, in pipes, and in `grep`.

    On a terminal narrower than the table, the `drop` columns go first (an 80x24 tmux pane
    should not wrap every row); piped output keeps every column.
    """
    if drop and sys.stdout.isatty():
        import shutil

        headers, rows = fit_columns(headers, rows, drop, shutil.get_terminal_size().columns)
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = [title] if title else []
    for number, row in enumerate(cells):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    sys.stdout.write("\n".join(out) + "\n")
