"""Watching one run: each poll reads what was appended and returns one typed, frozen snapshot.

The one watcher behind the TUI's monitor and `sft-tui watch --plain` / `train --follow`.
Metrics are read from a byte offset, so a poll costs only what was appended
(bench/metrics_read.py); the snapshot's row tuples are rebuilt only when rows arrived,
so a screen can tell "nothing new" by identity. No Textual here: screens post the
snapshot as a message from their worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sft_tui.core.runs.codec import SchemaError
from sft_tui.core.runs.liveness import effective_state
from sft_tui.core.runs.metrics import MetricsChunk
from sft_tui.core.runs.logtext import readable_tail
from sft_tui.core.runs.placement import is_waiting
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, UNKNOWN, EvalRow, EventRow, JobOverview, JobStatus, MetricsRow, SystemRow, TrainRow, TrainSummary
from sft_tui.core.runs.store import job_overview


@dataclass(frozen=True)
class RunSnapshot:
    """Everything about one run at one poll."""

    run_id: str
    status: JobStatus | None
    state: str  # effective: crashed when the process is gone, unknown when the status is unreadable
    reason: str  # why the status (state unknown) or the metrics cannot be read
    train: tuple[TrainRow, ...]
    evals: tuple[EvalRow, ...]
    events: tuple[EventRow, ...]
    system: tuple[SystemRow, ...]  # GPU/host samples the supervisor recorded (every few seconds)
    new_rows: tuple[MetricsRow, ...]  # appended since the previous poll (all rows again after a restart)
    restarted: bool  # metrics.jsonl was cut back (a resume): the rows are from the start again
    jobs: tuple[JobOverview, ...]
    log_tail: tuple[str, ...]  # the log's last readable lines: progress bars dropped, raw metric dicts made readable
    summary: TrainSummary | None  # read once the run is no longer active
    skipped_lines: int  # metrics lines that were not valid rows, so far
    waiting: str = ""  # a queued run waiting for room: why (placement.json), "" otherwise


class RunWatcher:
    """Keeps the offset into metrics.jsonl and every row read so far; poll() returns a snapshot."""

    def __init__(self, run: RunDir, log_lines: int = 12):
        self.run = run
        self.log_lines = log_lines
        self.offset = 0
        self.skipped = 0
        self._train: list[TrainRow] = []
        self._evals: list[EvalRow] = []
        self._events: list[EventRow] = []
        self._system: list[SystemRow] = []
        self._last: RunSnapshot | None = None

    def poll(self, now: datetime | None = None) -> RunSnapshot:
        """Read what changed since the previous poll."""
        try:
            chunk = self.run.read_new_rows(self.offset)
        except OSError as exc:  # e.g. metrics.jsonl is a folder, or unreadable: say so, keep what was read
            chunk = MetricsChunk((), self.offset)
            metrics_problem = f"{self.run.metrics_path.name}: {exc.strerror or exc}"
        else:
            metrics_problem = ""
        self.offset = chunk.offset
        if chunk.restarted:
            self._train.clear()
            self._evals.clear()
            self._events.clear()
            self._system.clear()
            self.skipped = 0
        self.skipped += chunk.skipped_lines
        for row in chunk.rows:
            if isinstance(row, TrainRow):
                self._train.append(row)
            elif isinstance(row, EvalRow):
                self._evals.append(row)
            elif isinstance(row, SystemRow):
                self._system.append(row)
            else:
                self._events.append(row)
        status, reason = self.run.status_or_reason()
        reason = "; ".join(r for r in (reason if status is None else "", metrics_problem) if r)
        state = effective_state(status, now) if status else UNKNOWN
        waiting = ""
        if status is not None and status.state == "queued":
            placement = self.run.read_placement()
            if is_waiting(status, placement):
                # in the queue even while no waiter lives (a reboot)
                waiting, state = f"priority {placement.priority} · {placement.waiting or 'its turn'}", "queued"
        previous = self._last
        arrived = {type(row) for row in chunk.rows}
        fresh = chunk.restarted or previous is None

        def changed(kind: type) -> bool:  # a tuple is rebuilt only when rows of its kind arrived: screens compare by identity
            return fresh or kind in arrived
        summary = None
        if state not in ACTIVE_STATES:  # written when training ends: not worth a read every second before that
            try:
                summary = self.run.read_summary()
            except (SchemaError, OSError):
                pass
        try:
            jobs = tuple(job_overview(job, now) for job in self.run.jobs())
        except OSError:
            jobs = ()
        snapshot = RunSnapshot(
            run_id=self.run.id, status=status, state=state, reason=reason,
            train=tuple(self._train) if changed(TrainRow) else previous.train,
            evals=tuple(self._evals) if changed(EvalRow) else previous.evals,
            events=tuple(self._events) if changed(EventRow) else previous.events,
            system=tuple(self._system) if changed(SystemRow) else previous.system,
            new_rows=chunk.rows, restarted=chunk.restarted, jobs=jobs,
            log_tail=readable_tail(self.run.log_path, self.log_lines), summary=summary, skipped_lines=self.skipped, waiting=waiting,
        )
        self._last = snapshot
        return snapshot
