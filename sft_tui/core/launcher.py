"""Start, stop and resume trainer processes that outlive the terminal.

A run is started as `python -m sft_tui.trainer.supervise RUN_DIR` in a new session
(setsid): no controlling terminal, so an SSH hang-up, a closed tmux pane or the TUI
exiting sends it nothing. The supervisor starts the trainer and waits for it. If the
trainer dies without saying why (SIGKILL from the host's OOM killer, a segfault), the
supervisor records the exit code or signal in status.json.

Stopping: the first `stop` writes a request file and sends SIGTERM; the trainer finishes
its step, saves a checkpoint and ends as `stopped`. A second `stop`, or a wait that
times out, escalates to SIGKILL and says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace

from sft_tui.core.errors import UserError
from sft_tui.core.runs import ACTIVE_STATES, CRASHED, RunDir, effective_state, now_iso, pid_is_alive


def launch(run: RunDir, resume: bool = False) -> int:
    """Start the supervisor for `run` in a new session; returns its pid (recorded as queued)."""
    command = [sys.executable, "-m", "sft_tui.trainer.supervise", str(run.path)] + (["--resume"] if resume else [])
    with run.log_path.open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True, cwd=str(run.path),
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    run.stop_request_path.unlink(missing_ok=True)
    status = run.read_status()
    if status is not None and status.state != "running":  # the trainer may already have taken over
        run.write_status(replace(status, state="queued", pid=process.pid, updated_at=now_iso(), error=None))
    return process.pid


@dataclass(frozen=True)
class StopResult:
    """What `stop` did."""

    escalated: bool
    message: str


def request_stop(run: RunDir) -> StopResult:
    """SIGTERM the run (checkpoint, then stopped); a second request SIGKILLs it."""
    status = run.read_status()
    if status is None or effective_state(status) not in ACTIVE_STATES:
        state = effective_state(status) if status else "unknown"
        raise UserError(f"run {run.id} is not running (state: {state})", fix="nothing to stop; `sft-tui resume` continues a stopped run")
    if not pid_is_alive(status.pid):
        raise UserError(f"run {run.id} has no live process (pid {status.pid})", fix="it has crashed or is ending; see `sft-tui runs`")
    if run.stop_request_path.exists():
        os.kill(status.pid, signal.SIGKILL)
        return StopResult(True, f"second stop request: killed pid {status.pid} (SIGKILL); the last checkpoint is kept, `sft-tui resume {run.id}` continues from it")
    run.stop_request_path.write_text(now_iso())
    os.kill(status.pid, signal.SIGTERM)
    return StopResult(False, f"asked run {run.id} to stop (SIGTERM to pid {status.pid}): it finishes the step and saves a checkpoint")


def wait_until_inactive(run: RunDir, timeout_s: float, poll_s: float = 0.5) -> str | None:
    """Poll until the run leaves queued/running; returns its state, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run.read_status()
        if status is not None:
            state = effective_state(status)
            if state not in ACTIVE_STATES:
                return state
        time.sleep(poll_s)
    return None


def check_resumable(run: RunDir) -> None:
    """Refuse to resume a run that is active, finished, or has no checkpoint, saying why."""
    status = run.read_status()
    state = effective_state(status) if status else "unknown"
    if state in ACTIVE_STATES:
        raise UserError(f"run {run.id} is still {state}", fix=f"watch it with `sft-tui watch {run.id}`, or stop it first")
    if state == "completed":
        raise UserError(f"run {run.id} has completed", fix="start a new run to train further (e.g. more epochs)")
    if state not in ("stopped", "failed", CRASHED):
        raise UserError(f"run {run.id} cannot be resumed from state {state}")
    if run.latest_checkpoint() is None:
        raise UserError(f"run {run.id} has no checkpoint yet", str(run.checkpoints_dir), "start it again with `sft-tui train` (it failed before the first save)")
