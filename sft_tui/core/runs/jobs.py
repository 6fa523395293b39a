"""Start, stop, wait for and resume jobs: every process that imports torch starts here, the same way.

A job (train, eval, merge, chat) is started as `python -m sft_tui.core.runs.supervise
TARGET` in a new session (setsid): no controlling terminal, so an SSH hang-up, a closed
tmux pane or the TUI exiting sends it nothing. The supervisor starts the job process and
records a death the job could not report. Train jobs keep their status and log at the
run's top level; eval, merge and chat jobs in jobs/<kind>-<n>/ with their request.

Stopping: the first request sends SIGTERM (a train job finishes its step and saves a
checkpoint); a second request, or a wait that times out, escalates to SIGKILL and says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sft_tui.core.errors import UserError
from sft_tui.core.runs.liveness import HEARTBEAT_STALE_S, current_owner, effective_state, pid_is_alive
from sft_tui.core.runs.rundir import JobDir, RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, CRASHED, UNKNOWN, EventRow, JobRequest, JobStatus, now_iso

EXCLUSIVE_KINDS = ("eval", "merge")  # one at a time per run; several people may chat with one run at once


def _spawn(target: Path, log_path: Path, extra: list[str]) -> int:
    """The supervisor for `target`, detached in its own session, output appended to `log_path`."""
    command = [sys.executable, "-m", "sft_tui.core.runs.supervise", str(target), *extra]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True, cwd=str(target),
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"})
    return process.pid


def launch(run: RunDir, resume: bool = False) -> int:
    """Start the train job of `run` (resume: from its last checkpoint); returns the supervisor's pid."""
    run.stop_request_path.unlink(missing_ok=True)  # before the trainer starts: it watches this file (a teammate's stop)
    pid = _spawn(run.path, run.log_path, ["--resume"] if resume else [])
    status, _ = run.status_or_reason()
    if status is not None and status.state != "running":  # the trainer may already have taken over
        run.write_status(replace(status, state="queued", pid=pid, updated_at=now_iso(), error=None, eta_s=None))
    return pid


def check_run_config(run: RunDir) -> None:
    """A run's config.toml must be there and valid before a job starts from it (one line now, not a crash in a job)."""
    from sft_tui.core.config.load import config_from_toml_text

    try:
        text = run.read_config_text()
    except FileNotFoundError:
        raise UserError("the run's config is missing", str(run.config_path),
                        "restore config.toml (it is the resolved config the run was started with); nothing can be re-run without it") from None
    except UnicodeDecodeError:
        raise UserError("the run's config is not UTF-8 text", str(run.config_path), "restore config.toml") from None
    config_from_toml_text(text, str(run.config_path))


def _job_state(job: JobDir) -> tuple[str, JobStatus | None]:
    status, _ = job.status_or_reason()
    return (effective_state(status), status) if status else (UNKNOWN, None)


def start_job(run: RunDir, request: JobRequest) -> JobDir:
    """Create jobs/<kind>-<n>/ with the request and start it detached; refuses a second eval or merge of a run."""
    with run.jobs_lock():  # numbering and the one-at-a-time check see every other starter
        existing = [j for j in run.jobs() if j.kind == request.kind]
        if request.kind in EXCLUSIVE_KINDS:
            for job in existing:
                state, status = _job_state(job)
                if state in ACTIVE_STATES:
                    who = f", started by {status.owner}" if status and status.owner else ""
                    pid = f", pid {status.pid}" if status and status.pid else ""
                    raise UserError(f"an {request.kind} of run {run.id} is already {state} ({job.name}{pid}{who})",
                                    str(job.path), f"wait for it (`sft-tui runs` shows it) or stop it: sft-tui stop {run.id} --job {job.name}")
        number = max((j.number for j in existing), default=0) + 1
        job = run.job(f"{request.kind}-{number}")
        # the folder is made whole under a hidden name and renamed into place: a starter killed half-way
        # (Ctrl-C, a dropped SSH session) leaves no job folder without a request or a status behind
        staging = run.jobs_dir / f".{job.name}.new"
        for leftover in run.jobs_dir.glob(".*.new"):  # only made under this lock: any seen now is a dead starter's
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            staging.mkdir()
            staged = JobDir(staging)
            staged.write_request(request)
            stamp = now_iso()
            staged.write_status(JobStatus("queued", 0, stamp, stamp, kind=request.kind, owner=request.owner, host=request.host))
            staging.rename(job.path)
            pid = _spawn(job.path, job.log_path, [])
        except OSError as exc:  # a full or read-only disk: leave no half-made job behind, and name the folder
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(job.path, ignore_errors=True)
            if exc.filename is None:
                exc.filename = str(job.path)
            raise
    status, _ = job.status_or_reason()
    if status is not None and status.state == "queued":
        job.write_status(replace(status, pid=pid, updated_at=now_iso()))
    run_status, _ = run.status_or_reason()
    try:
        run.append_metric(EventRow(step=run_status.step if run_status else 0, event="job_started", time=time.time(), job=job.name,
                                   message=f"{request.kind} started by {request.owner}"))
    except OSError:
        pass
    return job


def job_request(kind: str, **fields) -> JobRequest:
    """A request stamped with now and this user and host."""
    owner, host = current_owner()
    return JobRequest(kind=kind, created_at=now_iso(), owner=owner, host=host, **fields)


@dataclass(frozen=True)
class StopResult:
    """What a stop request did."""

    escalated: bool
    message: str


def request_stop(target: RunDir | JobDir) -> StopResult:
    """SIGTERM a run's trainer (checkpoint, then stopped) or a job; a second request SIGKILLs it."""
    what = f"run {target.id}" if isinstance(target, RunDir) else f"job {target.name} of run {target.run.id}"
    status, reason = target.status_or_reason()
    if status is None or effective_state(status) not in ACTIVE_STATES:
        state = effective_state(status) if status else f"unknown: {reason}"
        resumable = state in ("stopped", "failed", CRASHED)
        fix = ("nothing to stop; `sft-tui resume` continues it from its last checkpoint" if isinstance(target, RunDir) and resumable
               else "nothing to stop; `sft-tui runs` shows its result")
        raise UserError(f"{what} is not running (state: {state})", fix=fix)
    if not pid_is_alive(status.pid):
        raise UserError(f"{what} has no live process (pid {status.pid})", fix="it has crashed or is ending; see `sft-tui runs`")
    try:
        os.kill(status.pid, 0)  # may this user signal it? A teammate's process answers EPERM
        can_signal = True
    except PermissionError:
        can_signal = False
    marker = target.stop_request_path
    owner = status.owner or "another user"
    if marker.exists():
        if not can_signal:
            raise UserError(f"{what} was already asked to stop; its pid {status.pid} runs as {owner}, so only {owner} or root can kill it",
                            fix=f"it stops at the end of its step; or ask {owner} (`sft-tui stop {target.id if isinstance(target, RunDir) else target.run.id}`) or root (`kill -9 {status.pid}`)")
        ranks = _other_ranks(status.pid) if isinstance(target, RunDir) else []
        for pid in ranks:  # a hung rank would otherwise keep its GPU until torchrun's own timeout
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os.kill(status.pid, signal.SIGKILL)
        then = f"; `sft-tui resume {target.id}` continues from the last checkpoint" if isinstance(target, RunDir) else ""
        also = f" and its other ranks ({', '.join(map(str, ranks))})" if ranks else ""
        return StopResult(True, f"second stop request: killed pid {status.pid}{also} (SIGKILL){then}")
    if not can_signal and not isinstance(target, RunDir):
        raise UserError(f"{what} runs as {owner} (pid {status.pid}): only {owner} or root can stop it", fix=f"ask {owner}")
    marker.write_text(now_iso())  # before the signal: the supervisor reads it to tell a requested stop from a crash
    does = "it finishes the step and saves a checkpoint" if isinstance(target, RunDir) else "it ends as stopped"
    if not can_signal:  # a teammate's trainer: it watches this file and stops itself (a signal needs its user or root)
        return StopResult(False, f"asked {what} to stop through its stop file (pid {status.pid} runs as {owner}): {does}, within a few seconds")
    os.kill(status.pid, signal.SIGTERM)
    return StopResult(False, f"asked {what} to stop (SIGTERM to pid {status.pid}): {does}")


LAUNCHERS = ("sft_tui.trainer.launch", "accelerate.commands.launch", "torch.distributed.run", "torchrun")


def launcher_of(pid: int):
    """The torchrun agent (our launcher, or `accelerate launch`) a rank `pid` runs under, as a psutil.Process; None when
    its parent is something else (a one-process run, or an orphan whose launcher was killed)."""
    import psutil

    try:
        parent = psutil.Process(pid).parent()
        return parent if parent is not None and any(name in " ".join(parent.cmdline()) for name in LAUNCHERS) else None
    except psutil.Error:
        return None


def _other_ranks(pid: int) -> list[int]:
    """The other trainer processes of a distributed run whose rank 0 is `pid`: its siblings under torchrun's agent."""
    import psutil

    launcher = launcher_of(pid)
    try:
        return [child.pid for child in launcher.children() if child.pid != pid and "sft_tui.trainer" in " ".join(child.cmdline())] if launcher else []
    except psutil.Error:
        return []


def wait_until_inactive(target: RunDir | JobDir, timeout_s: float, poll_s: float = 0.5,
                        on_status: Callable[[JobStatus], None] | None = None,
                        missing_s: float = HEARTBEAT_STALE_S) -> str | None:
    """Poll until the job leaves queued/running; returns its state, or None on timeout. on_status sees each new status.

    A folder with no readable status for `missing_s` on end is 'unknown': nothing is keeping it, so waiting longer shows nothing.
    """
    deadline = time.monotonic() + timeout_s
    last: JobStatus | None = None
    missing_since: float | None = None
    while time.monotonic() < deadline:
        status, _ = target.status_or_reason()
        if status is None:
            if not target.path.is_dir():
                return UNKNOWN  # the folder is gone
            missing_since = missing_since if missing_since is not None else time.monotonic()
            if time.monotonic() - missing_since >= missing_s:
                return UNKNOWN
        else:
            missing_since = None
            if on_status is not None and status != last:
                on_status(status)
            last = status
            state = effective_state(status)
            if state not in ACTIVE_STATES:
                return state
        time.sleep(poll_s)
    return None


def check_resumable(run: RunDir) -> Path:
    """The checkpoint a resume continues from; refuses a run that is active, finished, or has no checkpoint, saying why."""
    status, reason = run.status_or_reason()
    state = effective_state(status) if status else UNKNOWN
    if state in ACTIVE_STATES:
        raise UserError(f"run {run.id} is still {state}", fix=f"watch it with `sft-tui watch {run.id}`, or stop it first")
    if state == "completed":
        raise UserError(f"run {run.id} has completed", fix="start a new run to train further (e.g. more epochs)")
    if state == UNKNOWN:
        # status.json is missing or damaged: resumable all the same when no process owns the run (the trainer writes a new one)
        try:
            run.lock().acquire().release()
        except UserError:
            raise UserError(f"run {run.id} is owned by a running process and its status cannot be read: {reason}", str(run.status_path),
                            "wait for it, or stop it (sft-tui stop RUN)") from None
    if state not in ("stopped", "failed", CRASHED, UNKNOWN):
        raise UserError(f"run {run.id} cannot be resumed from state {state}")
    check_run_config(run)
    checkpoint = run.latest_checkpoint()
    if checkpoint is None:
        never = status is not None and status.step == 0 and status.result.startswith(("cancelled", "left the queue"))
        why = "it never started: it was cancelled in the queue" if never else "it ended before its first save"
        raise UserError(f"run {run.id} has no checkpoint yet", str(run.checkpoints_dir), f"start it again with `sft-tui train` ({why})")
    return checkpoint
