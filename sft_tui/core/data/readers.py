"""Stream rows from JSONL, JSON, CSV and Parquet files, each with the line it came from.

Every reader yields (where, row): `where` is what a person opens the file at, such as
`train.jsonl:17`, `data.json:1 (record 42)` (JSON arrays are often one long line),
`data.csv:9`, or `data.parquet: row 3`. A line that is not a JSON object is yielded as a RowError, so callers
decide whether to stop or to count it; nothing here loads more than it must.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_tui.core.errors import UserError

EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class RowError:
    """A row that could not be read as an object."""

    where: str
    reason: str


def file_kind(path: Path) -> str:
    """jsonl, json, csv or parquet, from the extension; anything else is a UserError."""
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"unsupported file type {path.suffix or '(none)'!r}", str(path), "use .jsonl, .json, .csv or .parquet")
    return kind


def iter_rows(path: Path) -> Iterator[tuple[str, dict[str, Any] | RowError]]:
    """Yield (where, row or RowError) for every row of a dataset file."""
    if not path.is_file():
        raise UserError("dataset file not found", str(path), "check the path (in a run config, data paths are relative to the config file)")
    kind = file_kind(path)
    reader = {"jsonl": _jsonl, "json": _json_array, "csv": _csv, "parquet": _parquet}[kind]
    yield from reader(path)


def not_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    """The reason a byte string is not UTF-8, pointing at the first bad byte (columns count bytes, from 1)."""
    return f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"


def _jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any] | RowError]]:
    with path.open("rb") as handle:  # bytes: a row that is not UTF-8 is one bad row, not the end of the file
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield where, RowError(where, not_utf8(raw, exc))
                continue
            try:
                row = json.loads(line.rstrip("\r\n"))  # without the newline, a cut-off row reports its real column
            except json.JSONDecodeError as exc:
                yield where, RowError(where, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            yield where, row if isinstance(row, dict) else RowError(where, f"expected a JSON object, got {type(row).__name__}")


def _json_array(path: Path) -> Iterator[tuple[str, dict[str, Any] | RowError]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # one JSON document: the file as a whole cannot be read
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        reason = f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start - line_start + 1})"
        raise UserError(reason, f"{path}:{line}", "re-save the file as UTF-8, or as JSONL so one bad row can be skipped") from None
    decoder = json.JSONDecoder()
    position = _skip_space(text, 0)
    if position < len(text) and text[position] == "{":  # a single object holding the rows, e.g. {"data": [...]}
        raise UserError("JSON file holds an object, not an array of rows", str(path), "save the rows as a JSON array or as JSONL")
    if position >= len(text) or text[position] != "[":
        raise UserError("JSON file does not start with '['", str(path), "save the rows as a JSON array or as JSONL")
    position = _skip_space(text, position + 1)
    record, line, counted_to = 0, 1, 0
    while position < len(text) and text[position] != "]":
        line += text.count("\n", counted_to, position)  # counted incrementally: no quadratic rescans
        counted_to = position
        record += 1
        where = f"{path}:{line} (record {record})"
        try:
            row, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise UserError(f"not valid JSON ({exc.msg})", f"{path}:{exc.lineno}", "fix the file; JSONL lets one bad row be skipped") from None
        yield where, row if isinstance(row, dict) else RowError(where, f"expected a JSON object, got {type(row).__name__}")
        position = _skip_space(text, end)
        if position < len(text) and text[position] == ",":
            position = _skip_space(text, position + 1)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _bad_byte(text: str) -> int | None:
    """The first byte that was not UTF-8 in text decoded with errors='surrogateescape'."""
    for char in text:
        if "\udc80" <= char <= "\udcff":
            return ord(char) - 0xDC00
    return None


def _csv(path: Path) -> Iterator[tuple[str, dict[str, Any] | RowError]]:
    # surrogateescape keeps undecodable bytes as markers, so one bad record is reported and the rest are read
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        line = 1
        for row in reader:
            where = f"{path}:{line + 1}"  # the record starts after the previous one ended
            line = reader.line_num
            if None in row:
                yield where, RowError(where, "more values than columns")
                continue
            bad = next(((key, byte) for key, value in row.items() if value and (byte := _bad_byte(value)) is not None), None)
            if bad is not None:
                yield where, RowError(where, f"not UTF-8 (byte 0x{bad[1]:02x} in column {bad[0]!r})")
                continue
            yield where, {k: _maybe_json(v) for k, v in row.items()}


def _maybe_json(value: str | None) -> Any:
    """CSV cells holding JSON lists/objects (e.g. a messages column) are decoded."""
    if value and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _parquet(path: Path) -> Iterator[tuple[str, dict[str, Any] | RowError]]:
    import pyarrow.parquet as pq  # arrives with `datasets`; only needed for Parquet

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield f"{path}: row {number}", row
