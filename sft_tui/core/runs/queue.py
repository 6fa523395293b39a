"""The shared box's queue: no daemon, just files in $SFT_TUI_HOME and a lock.

Each run's placement.json says where it runs or why it waits (core/runs/placement.py has the
rule). Whoever holds the home's `.queue.lock` may start queued runs: a queued run's own
supervisor, which waits detached like a training job (a closed terminal or SSH session does
not reach it), polls every POLL_S; a finishing run's supervisor, the TUI, `sft-tui queue` and
`sft-tui train` do it too. So a run starts within seconds of room appearing, and a queue whose
waiters died with a reboot moves again as soon as anyone runs sft-tui: the admitter starts a
supervisor for any waiting run whose process is gone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from sft_tui.core.errors import UserError
from sft_tui.core.runs.liveness import current_owner, effective_state, pid_is_alive
from sft_tui.core.runs.placement import CPU, Claim, GpuRoom, Plan, Waiting, gpu_rooms, is_waiting, plan_admissions
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, EventRow, JobError, JobStatus, Placement, now_iso, parse_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import GpuSnapshot, gpu_snapshot

POLL_S = 2.0  # a waiting run looks for room this often


class QueueLock:
    """flock on $SFT_TUI_HOME/.queue.lock, held for milliseconds by whoever admits or reorders.

    Opened read-only: flock needs no write permission, so a teammate's lock file made under a
    0022 umask still works for everyone who can read the shared home.
    """

    def __init__(self, store: RunStore):
        self.path = store.home / ".queue.lock"
        self._fd: int | None = None

    def __enter__(self) -> "QueueLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o666)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            raise UserError(f"the queue's lock file cannot be used ({exc.strerror or exc})", str(self.path),
                            "it must be a file everyone sharing this home can read: remove it and it is made again") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def queue_lock(store: RunStore) -> QueueLock:
    """The home's queue lock (blocking: every holder keeps it for milliseconds)."""
    return QueueLock(store)


def _pids(pid: int) -> frozenset[int]:
    import psutil

    if pid <= 0:
        return frozenset()
    try:
        return frozenset({pid} | {c.pid for c in psutil.Process(pid).children(recursive=True)})
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return frozenset({pid})


@dataclass(frozen=True)
class QueueScan:
    """Every run this machine's queue cares about, read once."""

    waiting: tuple[tuple[RunDir, JobStatus, Placement], ...]
    claims: tuple[Claim, ...]
    cpu_running: int
    admitted_idle: tuple[tuple[RunDir, JobStatus, Placement], ...]  # admitted, but the process that should start it is gone


def process_gone(status: JobStatus) -> bool:
    """The run's recorded process (its waiter or trainer) is dead: now, not after the 30 s a crash display waits.

    A run is made and its waiter's pid written under the queue lock, so an admitter never sees the pid-0 moment.
    """
    return not pid_is_alive(status.pid, parse_iso(status.updated_at))


def _mine(status: JobStatus, me: str) -> bool:
    return status.owner in ("", me)


def scan(store: RunStore, now: datetime | None = None, me: str | None = None) -> QueueScan:
    """Read this machine's runs: the queue, what admitted runs hold, how many run on the CPU. A broken run is skipped.

    A home shared by several machines holds several queues: only runs started on this host
    count here (another host's GPUs and processes are not ours to see). `me`: whose admitted
    runs with a dead process still hold their room (this user will start them again).
    """
    now = now or datetime.now(timezone.utc)
    me = me if me is not None else current_owner()[0]
    host = current_owner()[1]
    waiting, claims, idle = [], [], []
    cpu_running = 0
    for run in store.run_dirs():
        status, _ = run.status_or_reason()
        if status is None or status.host not in ("", host):
            continue
        placement = run.read_placement()
        if is_waiting(status, placement):
            waiting.append((run, status, placement))
            continue
        state = effective_state(status, now)
        if status.state == "queued" and placement is not None and placement.admitted_at and process_gone(status):
            idle.append((run, status, placement))  # admitted, then its waiter died before the trainer started
            if not _mine(status, me):
                continue  # given back to the queue by admit(): it holds nothing until its owner starts it
            state = "queued"
        if state not in ACTIVE_STATES:
            continue
        gpus = (placement.gpus if placement else ()) or status.gpus
        if gpus:
            claims.append(Claim(run.id, tuple(gpus), placement.estimate_gib if placement else None, _pids(status.pid)))
        elif placement is None or placement.device == CPU:
            cpu_running += 1
    return QueueScan(tuple(waiting), tuple(claims), cpu_running, tuple(idle))


def waiting_of(placement: Placement, run_id: str) -> Waiting:
    """The planner's view of a queued run (a multi-GPU run's `gpu_count` GPUs, each needing its estimate)."""
    return Waiting(run_id, placement.priority, placement.order, placement.device, placement.estimate_gib,
                   placement.allowed_gpus, placement.max_parallel, placement.passed, placement.gpu_count)


def _event(run: RunDir, event: str, message: str) -> None:
    status, _ = run.status_or_reason()
    try:
        run.append_metric(EventRow(step=status.step if status else 0, event=event, time=time.time(), message=message))
    except OSError:
        pass


def admit(store: RunStore, gpus: GpuSnapshot, spawn: Callable[[RunDir], int] | None = None) -> Plan:
    """Start the queued runs that fit now (the memory rule, core/runs/placement.py), record why the others wait.

    A run given a GPU is started by its own waiting supervisor. This user's runs whose
    supervisor is gone (a reboot, a kill) get a new one from `spawn` (default: jobs.launch);
    a teammate's are left waiting for them (a job runs as the user who owns it), and one that
    was admitted but never started gives its room back to the queue.
    """
    from sft_tui.core.runs.jobs import launch

    spawn = spawn or launch
    if not store.runs_dir.is_dir():
        return Plan(())  # no runs yet: nothing to admit, and no folder made just for looking
    me = current_owner()[0]
    with queue_lock(store):
        found = scan(store, me=me)
        for run, status, placement in found.admitted_idle:
            if _mine(status, me):
                spawn(run)  # it keeps the room it was given (counted in found.claims)
            else:
                _write(run, me, status, lambda: (run.write_placement(replace(placement, admitted_at="", gpus=())),
                                                  run.write_status(replace(status, gpus=()))))
        waiting = list(found.waiting) + [(r, replace(st, gpus=()), replace(p, admitted_at="", gpus=()))
                                          for r, st, p in found.admitted_idle if not _mine(st, me)]
        # a teammate's run whose waiter is gone is started only by their own sft-tui
        orphans = {run.id: status.owner for run, status, _ in waiting if not _mine(status, me) and process_gone(status)}
        rooms = gpu_rooms(gpus.gpus, found.claims) if gpus.available else []
        plan = plan_admissions([waiting_of(p, r.id) for r, _, p in waiting if r.id not in orphans], rooms, found.cpu_running)
        entries = {run.id: (run, status, placement) for run, status, placement in waiting}
        stamp = now_iso()
        for run_id, gpu_ids in plan.start:  # in queue order
            run, status, placement = entries.pop(run_id)
            if not _write(run, me, status, lambda: (run.write_placement(replace(placement, admitted_at=stamp, gpus=gpu_ids, waiting="")),
                                                    run.write_status(replace(status, gpus=gpu_ids, updated_at=stamp)))):
                continue  # a teammate's run in a folder only they may write: their own waiter admits it
            where = (f"GPU {gpu_ids[0]}" if len(gpu_ids) == 1 else f"GPUs {','.join(map(str, gpu_ids))}") if gpu_ids else "the CPU"
            _event(run, "admitted", f"left the queue for {where}")
            if process_gone(status):
                spawn(run)
        for run, status, placement in entries.values():
            reason = plan.reasons.get(run.id, placement.waiting)
            if run.id in orphans:
                reason = f"its waiting process is gone (a reboot?); it moves again when {orphans[run.id]} runs sft-tui"
            update = replace(placement, waiting=reason, passed=plan.passed.get(run.id, placement.passed), waiting_gpu=plan.targets.get(run.id))
            if update != placement:
                _write(run, me, status, lambda: run.write_placement(update))
            if run.id not in orphans and process_gone(status):  # my run whose waiter died: a new one keeps it moving
                spawn(run)
    return plan


def _write(run: RunDir, me: str, status: JobStatus, write: Callable[[], object]) -> bool:
    """Write a run's queue files; a teammate's folder we may not write is skipped (False), our own raises."""
    try:
        write()
        return True
    except PermissionError:
        if _mine(status, me):
            raise
        return False


def admit_with_sampler(store: RunStore, sampler=None, spawn: Callable[[RunDir], int] | None = None) -> Plan:
    """admit() with a fresh NVML sample (a sampler passed in stays open)."""
    return admit(store, gpu_snapshot(sampler), spawn)


def rooms_now(store: RunStore, sampler=None) -> list[GpuRoom]:
    """Each GPU's room now, by the queue's rule (empty without a GPU). A runs home that cannot be read counts no
    sft-tui runs: an estimate or a job's placement goes on without them."""
    snapshot = gpu_snapshot(sampler)
    if not snapshot.available:
        return []
    try:
        claims = scan(store).claims
    except OSError:
        claims = ()
    return gpu_rooms(snapshot.gpus, claims)


def wait_for_admission(run: RunDir, stop: Callable[[float], bool], sampler=None) -> Placement | None:
    """The waiting supervisor's loop: admit (its own run or others) until this run has a device.

    Returns its placement, or None when it left the queue otherwise (cancelled, removed).
    `stop(timeout)` waits up to timeout and says whether to give up (a SIGTERM to the waiter).
    """
    store = RunStore(run.path.parent.parent)
    said = ""
    while True:
        placement = run.read_placement()
        status, _ = run.status_or_reason()
        if status is None or status.state != "queued":
            return None  # cancelled, or the folder is gone
        if placement is None:  # damaged or deleted by hand: say so rather than wait for ever
            run.write_status(replace(status, state="failed", updated_at=now_iso(), error=JobError(
                "config", f"{run.placement_path.name} of this queued run is missing or unreadable: it cannot be placed",
                "start the run again with `sft-tui train CONFIG --queue`")))
            _event(run, "failed", f"config: {run.placement_path.name} missing or unreadable while queued")
            return None
        if placement.admitted_at:
            return placement
        try:
            admit_with_sampler(store, sampler)
        except (OSError, UserError) as exc:  # a full disk, a broken lock file: say so once in the log, try again later
            line = exc.line() if isinstance(exc, UserError) else str(exc)
            if line != said:
                said = line
                _log(f"[sft-tui] queue: {line}; trying again every {POLL_S:g} s")
        placement = run.read_placement()
        if placement is not None and placement.admitted_at:
            return placement
        if stop(POLL_S):
            return None


def _log(line: str) -> None:
    """A line in the waiter's log; on a full disk even that fails, and the waiter must go on waiting."""
    try:
        print(line, flush=True)
    except OSError:
        pass


def placement_env(placement: Placement | None) -> dict[str, str]:
    """The environment that pins a trainer to its GPUs (NVML's indices are PCI bus order, so CUDA's must be too)."""
    if placement is None or not placement.gpus:
        return {}
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ",".join(map(str, placement.gpus))}
