"""What is worth telling a person who left the TUI open: a run or job that ended, or a queued run that started, since the last listing.

Pure functions over two listings (RunStore.list_runs), so the TUI, a future CLI notifier
and the tests share one idea of "something happened". The first listing is a baseline:
runs that ended before the TUI was opened are not news.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sft_tui.core.runs.schema import ACTIVE_STATES, JobOverview, RunOverview


@dataclass(frozen=True)
class RunNotice:
    """One thing that happened: a run or one of its jobs ended (severity: information, warning or error)."""

    run_id: str
    name: str  # the short run name people read on Home
    job: str  # "" for the train job, else the job's folder name (eval-1)
    state: str
    severity: str
    message: str
    time: float

    @property
    def line(self) -> str:
        """The notice in one line."""
        who = f"{self.name} {self.job}" if self.job else self.name
        return f"{who} {self.message}"


def short_name(run_id: str) -> str:
    """The name part of a run id (`20261123-093000-json-lora` -> `json-lora`); the id itself when it has no date part."""
    parts = run_id.split("-", 2)
    if len(parts) == 3 and parts[0].isdigit() and len(parts[0]) == 8 and parts[1].isdigit():
        return parts[2]
    return run_id


def display_names(run_ids: Sequence[str]) -> dict[str, str]:
    """Short names for a listing; names that repeat get the run's start time (`demo 23:55`, then seconds if needed)."""
    names = {run_id: short_name(run_id) for run_id in run_ids}
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    shown: dict[str, str] = {}
    for run_id, name in names.items():
        if counts[name] > 1 and name != run_id:
            clock = run_id.split("-", 2)[1]
            shown[run_id] = f"{name} {clock[:2]}:{clock[2:4]}"
        else:
            shown[run_id] = name
    repeated = {label for label in shown.values() if list(shown.values()).count(label) > 1}
    for run_id, label in shown.items():
        if label in repeated and label != run_id:
            clock = run_id.split("-", 2)[1]
            shown[run_id] = f"{names[run_id]} {clock[:2]}:{clock[2:4]}:{clock[4:6]}"
    return shown


def _run_message(run: RunOverview) -> tuple[str, str]:
    if run.state == "completed":
        loss = f": loss {run.last_loss:.3f}" if run.last_loss is not None else ""
        return "information", f"completed at step {run.step}{loss}"
    if run.state == "stopped":
        return "warning", f"stopped at step {run.step}"
    if run.error is not None and run.error.kind == "oom":
        return "error", f"ran out of GPU memory at step {run.step}: {run.error.hint or run.error.message}"
    cause = f": {run.error.kind}: {run.error.message}" if run.error is not None else ""
    return "error", f"{run.state} at step {run.step}{cause}"


def _job_message(job: JobOverview) -> tuple[str, str]:
    if job.state == "completed":
        return "information", f"completed: {job.result}" if job.result else "completed"
    cause = f": {job.error.message}" if job.error is not None else ""
    return ("warning" if job.state == "stopped" else "error"), f"{job.state}{cause}"


def run_notices(before: Sequence[RunOverview] | None, after: Sequence[RunOverview], now: float) -> list[RunNotice]:
    """Runs and jobs that were active in `before` and have ended in `after` (none when `before` is None: the baseline),
    each named as Home lists it (display_names).

    A run that vanished (deleted) is not news; a run that appears already ended is (it ran
    to its end between two listings, as a very short run can).
    """
    if before is None:
        return []
    earlier = {run.id: run for run in before}
    names = display_names([run.id for run in after])
    notices: list[RunNotice] = []
    for run in after:
        old = earlier.get(run.id)
        was_active = old is None or old.state in ACTIVE_STATES
        was_waiting = old is not None and old.queue_position is not None
        if was_waiting and run.state in ACTIVE_STATES and run.queue_position is None:
            where = f"GPU {','.join(map(str, run.gpus))}" if run.gpus else "the CPU"
            notices.append(RunNotice(run.id, names[run.id], "", run.state, "information", f"left the queue: starting on {where}", now))
        elif was_waiting and run.state == "stopped":
            notices.append(RunNotice(run.id, names[run.id], "", run.state, "warning", "was cancelled in the queue before it started", now))
        elif was_active and run.state not in ACTIVE_STATES and run.state != "unknown":
            severity, message = _run_message(run)
            notices.append(RunNotice(run.id, names[run.id], "", run.state, severity, message, now))
        if old is None:
            continue  # a run new to this listing: its jobs are part of its story, not news of their own
        old_jobs = {job.id: job.state for job in old.jobs}
        for job in run.jobs:
            if old_jobs.get(job.id, "queued") in ACTIVE_STATES and job.state not in ACTIVE_STATES and job.state != "unknown":
                severity, message = _job_message(job)
                notices.append(RunNotice(run.id, names[run.id], job.id, job.state, severity, message, now))
    return notices
