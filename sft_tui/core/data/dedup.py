"""`data dedup`: write a copy of a dataset without exact and near duplicates, and say what went.

Two streaming passes over the input, which is never modified: the first finds the
duplicates (core.data.duplicates), the second writes the kept rows unchanged, in their
original order, plus a removal report (`<output stem>.removed.jsonl`) that points each
removed row to the row it repeats, with both texts' openings so a person can judge.
Rows that cannot be read are left out and listed with their file:line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sft_tui.core.data.duplicates import DuplicateFinder
from sft_tui.core.data.formats import Record, iter_records
from sft_tui.core.data.text import example_text, fields_text
from sft_tui.core.data.writers import check_output, write_rows
from sft_tui.core.errors import UserError

PREVIEW_CHARS = 160


@dataclass(frozen=True)
class Removal:
    """One removed row and the kept row it repeats."""

    removed: str  # file:line
    kept: str
    kind: str  # exact | near
    similarity: float
    removed_text: str
    kept_text: str


@dataclass(frozen=True)
class DedupReport:
    """What `data dedup` did."""

    input: str
    output: str
    report: str
    rows: int
    kept: int
    exact_removed: int
    near_removed: int
    invalid: int
    invalid_rows: tuple[str, ...]
    threshold: float
    fields: tuple[str, ...]
    removals: tuple[Removal, ...]

    def to_json(self, removals: int = 20) -> dict:
        """The --json object; `removals` caps the listed examples (all are in the report file)."""
        from dataclasses import asdict

        out = asdict(self)
        out["removals"] = out["removals"][:removals]
        return out


def report_path(output: Path) -> Path:
    """Where the removal report of `output` goes."""
    return output.with_name(f"{output.stem}.removed.jsonl")


def _text(record: Record, fields: tuple[str, ...]) -> str:
    return fields_text(record.row, list(fields)) if fields else example_text(record.example)


def _check_fields(path: Path, fields: tuple[str, ...], fmt: str) -> None:
    first = next((r for r in iter_records(path, fmt) if r.row is not None), None)
    if first is None:
        return
    missing = [f for f in fields if f not in first.row]
    if missing:
        raise UserError(f"field {missing[0]!r} is not in the rows (they have: {', '.join(sorted(first.row))})", "--fields",
                        "name fields the rows have, or leave --fields out to compare all the text")


def deduplicate(path: Path, output: Path, threshold: float = 0.85, fields: tuple[str, ...] = (), fmt: str = "auto",
                force: bool = False, progress: Callable[[str, int], None] | None = None) -> DedupReport:
    """Remove duplicates from `path` into `output` (and its removal report); the first of each group stays."""
    if not 0.0 < threshold <= 1.0:
        raise UserError(f"threshold {threshold} is outside (0, 1]", "--threshold", "use a Jaccard similarity such as 0.85")
    check_output(output, [path], force)
    check_output(report_path(output), [path], force)
    if fields:
        _check_fields(path, fields, fmt)
    finder = DuplicateFinder(threshold)
    invalid: list[str] = []
    rows = 0
    for record in iter_records(path, fmt):
        rows += 1
        if progress and record.index % 1000 == 0:
            progress("find duplicates", record.index)
        if record.example is None:
            invalid.append(f"{record.where}: {record.error}")
            continue
        finder.add(record.index, _text(record, fields))
    duplicates = {d.index: d for d in finder.flush()}
    wanted = set(duplicates) | {d.kept_index for d in duplicates.values()}
    seen: dict[int, tuple[str, str]] = {}

    def kept_rows():
        for record in iter_records(path, fmt):
            if progress and record.index % 1000 == 0:
                progress("write", record.index)
            if record.index in wanted:
                seen[record.index] = (record.where, _text(record, fields)[:PREVIEW_CHARS])
            if record.example is not None and record.index not in duplicates:
                yield record.row

    kept = write_rows(output, kept_rows())
    removals = tuple(Removal(seen[d.index][0], seen[d.kept_index][0], d.kind, d.similarity, seen[d.index][1], seen[d.kept_index][1])
                     for d in duplicates.values())
    report = report_path(output)
    write_rows(report, ({"removed": r.removed, "kept": r.kept, "kind": r.kind, "similarity": r.similarity,
                         "removed_text": r.removed_text, "kept_text": r.kept_text} for r in removals))
    return DedupReport(str(path), str(output), str(report), rows, kept, sum(d.kind == "exact" for d in duplicates.values()),
                       sum(d.kind == "near" for d in duplicates.values()), len(invalid), tuple(invalid[:10]), threshold, fields, removals)


def removal_lines(report: DedupReport, limit: int = 5) -> list[str]:
    """A few removals as readable lines: removed -> kept, with both openings."""
    lines = []
    for removal in report.removals[:limit]:
        lines.append(f"{removal.removed} -> {removal.kept} ({removal.kind}, {removal.similarity:.2f})")
        lines.append(f"    removed: {json.dumps(removal.removed_text[:100], ensure_ascii=False)}")
        lines.append(f"    kept:    {json.dumps(removal.kept_text[:100], ensure_ascii=False)}")
    return lines
