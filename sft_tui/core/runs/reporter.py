"""The status a running job keeps true: state, progress, phase, ETA, and a heartbeat thread.

Used by every job (train, eval, merge, chat). The heartbeat rewrites status.json every
HEARTBEAT_S seconds, so a slow data loader or checkpoint does not look like a dead job;
it also notices when the job's folder has been removed, and says so instead of writing
(a write would fail, and the libraries would re-create the folder on their next save).
A full disk gives back the folder's reserve so the final status can still be written.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

from sft_tui.core.runs.codec import SchemaError
from sft_tui.core.runs.files import DiskReserve, is_disk_full
from sft_tui.core.runs.liveness import current_owner
from sft_tui.core.runs.rundir import JobDir, RunDir
from sft_tui.core.runs.schema import JobError, JobStatus, now_iso

HEARTBEAT_S = 2.0


class StatusReporter:
    """Owns status.json while a job runs."""

    def __init__(self, target: RunDir | JobDir, kind: str, reserve: DiskReserve | None = None):
        self.target = target
        self.kind = kind
        self.reserve = reserve
        self.removed = threading.Event()  # the folder is gone (or made again by someone else): nothing more is written
        self.identity = target.identity()
        try:
            previous = target.read_status()
        except (SchemaError, OSError):
            previous = None
        owner, host = current_owner()
        # a resumed run keeps its start time, owner and progress: the title never falls back to "step 0/?"
        base = previous or JobStatus("running", os.getpid(), now_iso(), now_iso(), kind=kind)
        self._base = replace(base, owner=base.owner or owner, host=base.host or host)  # statuses from before owners existed
        self.step = self._base.step
        self.max_steps = self._base.max_steps
        self.phase = ""
        self.endpoint = ""
        self._first_step: tuple[int, float] | None = None  # (step, time) when this process began stepping
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _status(self, state: str, error: JobError | None = None, result: str = "", output: str = "") -> JobStatus:
        running = state == "running"
        return replace(self._base, state=state, pid=os.getpid(), kind=self.kind, updated_at=now_iso(), step=self.step,
                       max_steps=self.max_steps, error=error, eta_s=self.eta_s() if running else None,
                       phase=self.phase if running else "", endpoint=self.endpoint if running else "",
                       result=result, output=output)

    def eta_s(self) -> float | None:
        """Seconds to max_steps from this process's own pace, once it has made a step."""
        if not self._first_step or self.step <= self._first_step[0] or not self.max_steps:
            return None
        first_step, first_time = self._first_step
        per_step = (time.monotonic() - first_time) / (self.step - first_step)
        return round(per_step * max(self.max_steps - self.step, 0), 1)

    def _write(self, status: JobStatus) -> None:
        if self.folder_removed():
            return
        try:
            self.target.write_status(status)
        except OSError as exc:
            if not is_disk_full(exc) or self.reserve is None:
                raise
            self.reserve.release()  # the reserve exists for exactly this write
            self.target.write_status(status)

    def begin(self) -> None:
        """Mark the job running under this pid and start the heartbeat."""
        with self._lock:
            self._write(self._status("running"))
        self._thread.start()

    def set_progress(self, step: int, max_steps: int | None = None) -> None:
        """Record the step reached (and the planned total)."""
        with self._lock:
            if max_steps is not None:
                self.max_steps = max_steps
            if self._first_step is None:
                self._first_step = (step, time.monotonic())
            self.step = step

    def set_phase(self, phase: str, endpoint: str | None = None) -> None:
        """Say what the job is doing now (and, for chat, where it answers); written at once."""
        with self._lock:
            self.phase = phase
            if endpoint is not None:
                self.endpoint = endpoint
            if not self._stopped.is_set():
                self._write(self._status("running"))

    def folder_removed(self) -> bool:
        """True once the job's folder is gone or is no longer the one it started in."""
        if not self.removed.is_set() and self.target.identity() != self.identity:
            self.removed.set()
        return self.removed.is_set()

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT_S):
            with self._lock:
                if self._stopped.is_set():
                    return
                try:
                    self._write(self._status("running"))
                except OSError:
                    pass  # a full disk: the job's own error path reports it; the heartbeat must not die first
            if self.removed.is_set():
                return

    def stop_beating(self) -> None:
        """End the heartbeat without a final state: another process (a distributed run's launcher) writes it."""
        with self._lock:
            self._stopped.set()

    def finish(self, state: str, error: JobError | None = None, result: str = "", output: str = "") -> None:
        """Stop the heartbeat and write the final state (giving back the disk reserve first on a full disk)."""
        with self._lock:
            self._stopped.set()
            if error is not None and error.kind == "disk" and self.reserve is not None:
                self.reserve.release()
            self._write(self._status(state, error, result, output))
        if self.reserve is not None:
            self.reserve.release()
