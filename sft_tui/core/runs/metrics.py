"""metrics.jsonl: typed rows appended one line at a time, read from a byte offset, cut back in place on resume.

The writer opens the file for each row (about fifty rows a run, microseconds each), so a
row always lands in the file that is at the path now: an earlier version held the file
open while a resume replaced it, and every later row went to the deleted file. Cutting
back for a resume rewrites the same file in place (same inode), and readers holding an
offset past the new end start again from the top.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sft_tui.core.runs.codec import SchemaError
from sft_tui.core.runs.files import file_mode
from sft_tui.core.runs.schema import EvalRow, EventRow, MetricsRow, SystemRow, TrainRow, row_from_json

TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class MetricsChunk:
    """Rows read since an offset, the offset to continue from, and what was odd."""

    rows: tuple[MetricsRow, ...]
    offset: int
    skipped_lines: int = 0  # complete lines that were not valid rows
    restarted: bool = False  # the file shrank (cut back for a resume): rows are from the start again

    @property
    def train(self) -> tuple[TrainRow, ...]:
        """The train rows among them."""
        return tuple(r for r in self.rows if isinstance(r, TrainRow))

    @property
    def evals(self) -> tuple[EvalRow, ...]:
        """The eval rows among them."""
        return tuple(r for r in self.rows if isinstance(r, EvalRow))

    @property
    def events(self) -> tuple[EventRow, ...]:
        """The event rows among them."""
        return tuple(r for r in self.rows if isinstance(r, EventRow))

    @property
    def system(self) -> tuple[SystemRow, ...]:
        """The GPU/host sample rows among them."""
        return tuple(r for r in self.rows if isinstance(r, SystemRow))


def _parse_lines(data: bytes, where: str) -> tuple[list[MetricsRow], int]:
    rows: list[MetricsRow] = []
    skipped = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            rows.append(row_from_json(json.loads(line), where))
        except (ValueError, SchemaError):  # not JSON, or not a row of a kind this version knows
            skipped += 1
    return rows, skipped


def read_new_rows(path: Path, offset: int = 0) -> MetricsChunk:
    """Rows appended since `offset`; a torn last line waits for the next call."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return MetricsChunk((), 0)
    restarted = size < offset
    if restarted:
        offset = 0
    if size == offset:
        return MetricsChunk((), offset, restarted=restarted)
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(size - offset)
    end = data.rfind(b"\n")
    if end < 0:
        return MetricsChunk((), offset, restarted=restarted)
    rows, skipped = _parse_lines(data[: end + 1], path.name)
    return MetricsChunk(tuple(rows), offset + end + 1, skipped, restarted)


def last_train_row(path: Path) -> TrainRow | None:
    """The newest complete train row with a loss, reading only the file's tail."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read()
    except FileNotFoundError:
        return None
    lines = data.splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first line of the window may be cut
    for line in reversed(lines):
        try:
            row = row_from_json(json.loads(line), path.name)
        except (ValueError, SchemaError):
            continue
        if isinstance(row, TrainRow) and row.loss is not None:
            return row
    return None


def append_row(path: Path, row: MetricsRow) -> None:
    """Append one row and flush it; opening per row means a replaced or cut-back file is always the one written."""
    line = json.dumps(row.to_json(), separators=(",", ":"), ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, file_mode())  # never creates the folder
    try:
        os.write(fd, line.encode("utf-8"))  # one write: concurrent appenders never interleave a line
    finally:
        os.close(fd)


def cut_after_step(path: Path, step: int) -> tuple[int, list[MetricsRow]]:
    """Keep the rows up to `step` (and drop a torn last line), in place; returns (rows dropped, rows kept).

    A resume from checkpoint N repeats the steps after N, so their rows go; the file keeps
    its inode, so nothing that has it open ends up writing to a deleted file.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, []
    kept_lines: list[bytes] = []
    kept_rows: list[MetricsRow] = []
    dropped = 0
    complete = data[: data.rfind(b"\n") + 1]  # a line without its newline was cut by a crash
    for line in complete.splitlines():
        if not line.strip():
            continue
        try:
            row = row_from_json(json.loads(line), path.name)
        except (ValueError, SchemaError):
            kept_lines.append(line)  # not ours to judge: keep it, readers skip it
            continue
        if row.step > step:
            dropped += 1
            continue
        kept_lines.append(line)
        kept_rows.append(row)
    text = b"".join(line + b"\n" for line in kept_lines)
    if text != data:
        with path.open("r+b") as handle:
            handle.write(text)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
    return dropped, kept_rows
