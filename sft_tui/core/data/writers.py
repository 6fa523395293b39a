"""Write rows to JSONL, JSON, CSV or Parquet without ever touching what the user already has.

Outputs are written to a temporary file beside the target and renamed into place, so a
failure leaves no half-written file. The input file is never a valid output, and an
existing output needs `force`.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sft_tui.core.data.readers import file_kind
from sft_tui.core.errors import UserError


def check_output(output: Path, inputs: Iterable[Path], force: bool) -> None:
    """UserError when `output` is an input, or exists and `force` is off; checks the extension too."""
    file_kind(output)
    for path in inputs:
        if output.exists() and path.exists() and output.resolve() == path.resolve():
            raise UserError("the output is the input file; the input is never modified", str(output), "write to another path")
    if output.exists() and not force:
        raise UserError("output file exists; not overwriting it", str(output), "choose another path or pass --force")


def write_rows(output: Path, rows: Iterable[dict[str, Any]], if_empty: Callable[[], Exception] | None = None) -> int:
    """Write rows in the format the extension names; returns how many were written.

    With `if_empty`, no rows means the exception it makes is raised and nothing is written.
    """
    kind = file_kind(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    os.close(handle)
    try:
        count = {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet}[kind](Path(temp), rows)
        if count == 0 and if_empty is not None:
            raise if_empty()
        os.replace(temp, output)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return count


def _jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def _json(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("[")
        for row in rows:
            out.write(("," if count else "") + "\n  " + json.dumps(row, ensure_ascii=False))
            count += 1
        out.write("\n]\n")
    return count


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value


def _csv(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    rows = list(rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return len(rows)


def _parquet(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(rows)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len(rows)
