"""What the screens poll: new metrics rows, status, log tail, runs list. No Textual here.

The monitor reads metrics from a byte offset, so each tick costs only what was appended
(bench/metrics_read.py: 0.012 ms for one new row); the first read of a 100k-row file
takes about 0.4 s and keeps every row. Drawing downsamples (see downsample()).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sft_tui.core.runs import MetricsChunk, RunDir, RunStatus, effective_state

LOG_TAIL_BYTES = 16 * 1024


def tail_lines(path, count: int = 12) -> tuple[str, ...]:
    """The last `count` lines of a text file (reads only its end); progress-bar carriage returns collapse."""
    window = LOG_TAIL_BYTES if count <= 50 else 400 * count  # a few hundred bytes a line at most
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - window))
            data = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ()
    lines = [line.rsplit("\r", 1)[-1] for line in data.splitlines() if line.strip()]
    return tuple(lines[-count:])


@dataclass
class RunWatch:
    """Where watching one run has got to: the offset into its metrics.jsonl (the screen keeps the rows)."""

    run: RunDir
    offset: int = 0

    def poll_metrics(self) -> MetricsChunk:
        """Rows appended since the last poll (all of them on the first)."""
        chunk = self.run.read_new_metrics(self.offset)
        self.offset = chunk.offset
        return chunk

    def poll_status(self) -> tuple[RunStatus | None, str, tuple[str, ...]]:
        """(status, effective state, log tail)."""
        status = self.run.read_status()
        return status, effective_state(status) if status else "unknown", tail_lines(self.run.log_path)


def downsample(xs: list[float], ys: list[float], limit: int = 400) -> tuple[list[float], list[float]]:
    """At most `limit` points for drawing: every k-th point plus the last (the raw data stays whole)."""
    if len(xs) <= limit:
        return xs, ys
    step = len(xs) / limit
    picked = sorted({int(i * step) for i in range(limit)} | {len(xs) - 1})
    return [xs[i] for i in picked], [ys[i] for i in picked]


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average (TensorBoard's smoothing), bias-corrected at the start."""
    out, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**count))
    return out
