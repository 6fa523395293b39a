"""What people do with the queue: list it, reorder it, leave it, and who may (owners, --force).

The admission machinery (scan, admit, the waiters) is in queue.py; these are the edits a
person makes, each under the same lock, each recorded in the run's events.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, replace

from sft_tui.core.errors import UserError
from sft_tui.core.runs.liveness import current_owner, effective_state, pid_is_alive
from sft_tui.core.runs.placement import gpu_rooms, queue_order
from sft_tui.core.runs.queue import _event, is_waiting, queue_lock, scan, waiting_of
from sft_tui.core.runs.rundir import JobDir, RunDir
from sft_tui.core.runs.schema import JobStatus, Placement, now_iso, parse_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import GpuSnapshot


@dataclass(frozen=True)
class QueuedRun:
    """One waiting run as `sft-tui queue --json` lists it."""

    position: int
    id: str
    owner: str
    host: str
    priority: int
    estimate_gib: float | None
    device: str
    gpus: tuple[int, ...]  # the GPUs it may get (empty: any)
    waiting: str
    submitted_at: str
    passed: int
    waiting_gpu: int | None = None  # the GPU it is closest to fitting (a multi-GPU run: the tightest of those it needs)
    gpu_count: int = 1  # GPUs it needs at once, estimate_gib on each

    def needs(self) -> str:
        """What it waits for, short (the `needs` column): `12.0G`, `4 GPUs x 61.0G`, or its device when it has no estimate."""
        if self.estimate_gib is None:
            return f"{self.gpu_count} GPUs" if self.gpu_count > 1 else self.device
        return f"{self.gpu_count} GPUs x {self.estimate_gib:.1f}G" if self.gpu_count > 1 else f"{self.estimate_gib:.1f}G"

    def to_json(self) -> dict:
        """The JSON object of `sft-tui queue --json`."""
        return {"position": self.position, "id": self.id, "owner": self.owner, "host": self.host, "priority": self.priority,
                "estimate_gib": self.estimate_gib, "gpu_count": self.gpu_count, "device": self.device, "allowed_gpus": list(self.gpus),
                "waiting_for_gpu": self.waiting_gpu, "waiting_for": self.waiting, "submitted_at": self.submitted_at,
                "passed": self.passed}


def queued_runs(store: RunStore) -> list[QueuedRun]:
    """The waiting runs in the order they will be considered, position 1 first."""
    found = scan(store)
    by_id = {run.id: (status, placement) for run, status, placement in found.waiting}
    ordered = queue_order([waiting_of(p, r.id) for r, _, p in found.waiting])
    out = []
    for position, w in enumerate(ordered, start=1):
        status, placement = by_id[w.run_id]
        out.append(QueuedRun(position, w.run_id, status.owner, status.host, placement.priority, placement.estimate_gib,
                             placement.device, placement.allowed_gpus, placement.waiting or "its turn", placement.submitted_at,
                             placement.passed, placement.waiting_gpu, placement.gpu_count))
    return out


def check_owner(target: RunDir | JobDir, action: str, force: bool) -> None:
    """Only a run's (or job's) owner may stop, cancel or reorder it; --force lets anyone, and both attempts go to the run's events."""
    status, _ = target.status_or_reason()
    run = target if isinstance(target, RunDir) else target.run
    me, host = current_owner()
    owner = status.owner if status else ""
    if not owner or owner == me:
        return
    if not force:
        _event(run, "refused", f"{me}@{host} tried to {action} it (owned by {owner}); refused without --force")
        raise UserError(f"run {run.id} belongs to {owner}", fix=f"ask them, or pass --force to {action} it anyway (it is recorded in the run's events)")
    _event(run, "forced", f"{me}@{host} used --force to {action} it (owned by {owner})")


def _waiting_entry(store: RunStore, run: RunDir) -> tuple[JobStatus, Placement]:
    status, _ = run.status_or_reason()
    placement = run.read_placement()
    if not is_waiting(status, placement):
        state = effective_state(status) if status else "unknown"
        raise UserError(f"run {run.id} is not waiting in the queue (state: {state})", fix="`sft-tui queue` lists the queued runs")
    return status, placement


def move(store: RunStore, run: RunDir, to: int, force: bool = False) -> int:
    """Put a queued run at position `to` (1 = next); it takes the priority of the runs around it. Returns the new position."""
    check_owner(run, "move", force)
    with queue_lock(store):
        _, placement = _waiting_entry(store, run)
        others = [w for w in queue_order([waiting_of(p, r.id) for r, _, p in scan(store).waiting]) if w.run_id != run.id]
        index = min(max(to, 1), len(others) + 1) - 1
        after = others[index] if index < len(others) else None
        before = others[index - 1] if index > 0 else None
        if after is None and before is None:
            priority, order = placement.priority, placement.order
        elif after is None:
            priority, order = before.priority, before.order + 1.0
        elif before is None or before.priority != after.priority:
            priority, order = after.priority, after.order - 1.0
        else:
            priority, order = after.priority, (before.order + after.order) / 2
        run.write_placement(replace(placement, priority=priority, order=order))
    me, host = current_owner()
    _event(run, "queue", f"moved to position {index + 1} by {me}@{host}")
    return index + 1


def reprioritise(store: RunStore, run: RunDir, priority: int, force: bool = False) -> int:
    """Give a queued run a new priority (its submission order stays). Returns its new position."""
    check_owner(run, "reprioritise", force)
    with queue_lock(store):
        _, placement = _waiting_entry(store, run)
        run.write_placement(replace(placement, priority=priority))
    position = next(q.position for q in queued_runs(store) if q.id == run.id)
    me, host = current_owner()
    _event(run, "queue", f"priority set to {priority} by {me}@{host}: position {position}")
    return position


def cancel(store: RunStore, run: RunDir, force: bool = False) -> str:
    """Take a run out of the queue before it starts: state stopped, its waiter told to end. Returns a line to print."""
    check_owner(run, "cancel", force)
    me, host = current_owner()
    with queue_lock(store):
        status, placement = _waiting_entry(store, run)
        run.write_placement(replace(placement, waiting=f"cancelled by {me}@{host}"))
        run.write_status(replace(status, state="stopped", updated_at=now_iso(), eta_s=None,
                                 result=f"cancelled in the queue by {me}@{host} before it started"))
    if pid_is_alive(status.pid, parse_iso(status.updated_at)):
        try:
            os.kill(status.pid, signal.SIGTERM)  # the waiter sees the run is no longer queued and ends
        except OSError:
            pass
    _event(run, "cancelled", f"cancelled in the queue by {me}@{host}")
    return f"cancelled run {run.id}; it never started (start it again with `sft-tui train`)"


def place_for_resume(store: RunStore, run: RunDir, gpus: GpuSnapshot) -> str:
    """Before a resume: move the run to the GPU(s) with the most room now (its old ones may have been taken). Returns a line to show.

    A multi-GPU run moves only as a whole: to `gpu_count` GPUs that all have room, or it stays where it was.
    """
    from sft_tui.core.runs.placement import closest_gpus, most_room_many, why_waiting_many

    placement = run.read_placement()
    if placement is None or placement.device != "cuda" or not gpus.available:
        return ""
    count = placement.gpu_count
    with queue_lock(store):
        rooms = gpu_rooms(gpus.gpus, scan(store).claims)  # this run is not active, so not counted
        need = placement.estimate_gib or 0.0
        chosen = most_room_many(rooms, need, count, placement.allowed_gpus)
        if chosen is None:
            closest = closest_gpus(rooms, count, placement.allowed_gpus)
            old = ",".join(map(str, placement.gpus)) or ",".join(str(r.index) for r in closest)
            if count > 1 or not closest:
                return f"warning: {why_waiting_many(rooms, need, count, placement.allowed_gpus)}; it resumes on GPUs {old} and may run out of memory"
            best = closest[0]
            return (f"warning: no GPU has room for its {need:.1f} GiB now (the most: {best.describe()}); "
                    f"it resumes on GPU {old} and may run out of memory")
        indices = tuple(r.index for r in chosen)
        run.write_placement(replace(placement, gpus=indices, admitted_at=placement.admitted_at or now_iso()))
        status, _ = run.status_or_reason()
        if status is not None:
            run.write_status(replace(status, gpus=indices))
    if count > 1:
        return f"GPU: resumes on GPUs {','.join(map(str, indices))}: " + "; ".join(r.describe() for r in chosen)
    return f"GPU: resumes on GPU{chosen[0].index}: {chosen[0].describe()}"


def resume(store: RunStore, run: RunDir, force: bool = False) -> tuple[str, int]:
    """Resume a stopped, failed or crashed run: its owner's (or --force), on the GPU with the most room now.

    Returns (what to tell the person, the supervisor's pid); one path for `sft-tui resume` and the TUI's `r`.
    """
    from sft_tui.core.runs.jobs import check_resumable, launch
    from sft_tui.core.runs.sysmon import gpu_snapshot

    checkpoint = check_resumable(run)
    check_owner(run, "resume", force)
    placed = place_for_resume(store, run, gpu_snapshot())
    pid = launch(run, resume=True)
    said = f"resuming run {run.id} from {checkpoint.name}"
    return (f"{placed}\n{said}" if placed else said), pid
