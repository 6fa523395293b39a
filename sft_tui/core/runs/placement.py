"""Which GPU has room for a run, and which queued runs start now: pure functions over a GPU sample and the admitted runs.

The memory rule (issue 14): a run fits a GPU when its estimated peak fits in the GPU's total
memory minus what other processes use there (NVML) minus what the runs already admitted
there will take. An admitted run takes the larger of its estimate and what NVML shows it
holding now: a run still loading its model has not reached its peak, and one whose estimate
was low holds more. Where NVML hides which process holds what (some containers), the GPU's
used memory and our runs' estimates cannot be told apart, and the larger of the two is taken.

Queue order is priority (higher first), then submission order. Rule against blocking and
starving (the issue asks for one): a waiting run that does not fit lets later runs that do
fit start ahead of it (backfill), but only MAX_PASSES times; after that nothing more starts
past it, so the GPUs drain until it fits. A large run at the head never stops small runs
from using idle room, and small runs cannot keep it waiting for ever: its wait is bounded
by the runs already going when it stopped letting others pass. Counting passes instead of
waiting time keeps the rule the same on a busy day and a quiet one, and testable.

Queued runs go to the GPU with the least room that still fits them (best fit), which keeps
the emptiest GPU for the large runs behind; a run started without the queue goes to the GPU
with the most room (it starts now, so spreading is safer than packing).

A multi-GPU run (issue 18: `[distributed] gpus`, one process per GPU) needs `gpu_count` GPUs
at once, each with room for its per-GPU peak, and reserves that peak on every one of them; it
is admitted all at once or not at all (half a DDP group cannot start). The rules above carry
over GPU by GPU. Queued: the `gpu_count` fitting GPUs with the least room. Every GPU it takes
gets the same amount, so taking the tightest ones leaves the largest rooms untouched: whatever
comes next (one large run, or another multi-GPU run needing several roomy GPUs) finds the best
rooms there are. Started now: the `gpu_count` GPUs with the most room. Equal rooms go to the
lower index; the GPUs are listed in index order, and rank i runs on the i-th (CUDA_VISIBLE_DEVICES
keeps that order). A run limited to some GPUs (`--gpus`, or `[distributed] gpus = [0, 2]`)
picks among those only, so a list as long as its count means exactly those GPUs. The passing
rule does not change: a multi-GPU run at the head waits for several GPUs to drain, and after
MAX_PASSES later runs nothing more starts past it, so it is not starved by a stream of small runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sft_tui.core.runs.schema import JobStatus, Placement
from sft_tui.core.runs.sysmon import GpuSample
from sft_tui.core.units import GIB

MAX_PASSES = 3
CPU = "cpu"


@dataclass(frozen=True)
class Claim:
    """A run admitted to GPUs (running, or admitted and starting): what it will take there."""

    run_id: str
    gpus: tuple[int, ...]
    estimate_gib: float | None  # peak per GPU; None: an older run without an estimate (counts what it holds)
    pids: frozenset[int] = frozenset()  # the trainer and its children, to find its memory in NVML's process list


@dataclass(frozen=True)
class GpuRoom:
    """One GPU's memory as the queue sees it."""

    index: int
    name: str
    total_gib: float
    used_gib: float  # every process, as NVML reports
    other_gib: float  # held by processes that are not admitted runs (0 when NVML hides processes)
    reserved_gib: float  # what admitted runs will take: max(estimate, held now) each
    runs: tuple[str, ...] = ()
    attributed: bool = True  # NVML says which process holds what here

    @property
    def free_gib(self) -> float:
        """Room for one more run."""
        return max(0.0, self.total_gib - max(self.used_gib, self.other_gib + self.reserved_gib))

    def describe(self) -> str:
        """`GPU0 14.0 of 24.0 GiB free (10.0 other processes, 0.0 our runs)` in words."""
        return (f"GPU{self.index} {self.free_gib:.1f} of {self.total_gib:.1f} GiB free "
                f"({self.other_gib:.1f} other processes, {self.reserved_gib:.1f} sft-tui runs)")


def gpu_rooms(gpus: Sequence[GpuSample], claims: Sequence[Claim]) -> list[GpuRoom]:
    """Each GPU's room given NVML's sample and the runs admitted to it."""
    rooms = []
    for gpu in gpus:
        here = [c for c in claims if gpu.index in c.gpus]
        attributed = bool(gpu.processes) and all(p.used_bytes is not None for p in gpu.processes)
        ours_pids = frozenset().union(*(c.pids for c in here)) if here else frozenset()
        reserved = 0.0
        for claim in here:
            held = sum(p.used_bytes or 0 for p in gpu.processes if p.pid in claim.pids) / GIB
            reserved += max(claim.estimate_gib or 0.0, held)
        other = sum(p.used_bytes or 0 for p in gpu.processes if p.pid not in ours_pids) / GIB if attributed else 0.0
        rooms.append(GpuRoom(gpu.index, gpu.name, gpu.memory_total_bytes / GIB, gpu.memory_used_bytes / GIB,
                             other, reserved, tuple(c.run_id for c in here), attributed))
    return rooms


def roomiest(rooms: Sequence[GpuRoom], allowed: Sequence[int] = ()) -> GpuRoom | None:
    """The allowed GPU with the most free memory (the lowest index among equals), fitting or not; None when none is allowed."""
    return max((r for r in rooms if not allowed or r.index in allowed), key=lambda r: (r.free_gib, -r.index), default=None)


def most_room(rooms: Sequence[GpuRoom], need_gib: float, allowed: Sequence[int] = ()) -> GpuRoom | None:
    """The allowed GPU with the most free memory, if it fits `need_gib` (placement of a run that starts now)."""
    best = roomiest(rooms, allowed)
    return best if best is not None and best.free_gib >= need_gib else None


def best_fit(rooms: Sequence[GpuRoom], need_gib: float, allowed: Sequence[int] = ()) -> GpuRoom | None:
    """The allowed GPU with the least free memory that still fits `need_gib` (placement of a queued run)."""
    fitting = [r for r in rooms if (not allowed or r.index in allowed) and r.free_gib >= need_gib]
    return min(fitting, key=lambda r: (r.free_gib, r.index), default=None)


def _allowed(rooms: Sequence[GpuRoom], allowed: Sequence[int]) -> list[GpuRoom]:
    return [r for r in rooms if not allowed or r.index in allowed]


def _in_index_order(chosen: Sequence[GpuRoom]) -> tuple[GpuRoom, ...]:
    return tuple(sorted(chosen, key=lambda r: r.index))


def most_room_many(rooms: Sequence[GpuRoom], need_gib: float, count: int, allowed: Sequence[int] = ()) -> tuple[GpuRoom, ...] | None:
    """The `count` allowed GPUs with the most free memory (index order), if every one fits `need_gib`; else None.

    Placement of a multi-GPU run that starts now; `count` 1 is `most_room`.
    """
    ranked = sorted(_allowed(rooms, allowed), key=lambda r: (-r.free_gib, r.index))[:count]
    if count < 1 or len(ranked) < count or any(r.free_gib < need_gib for r in ranked):
        return None
    return _in_index_order(ranked)


def best_fit_many(rooms: Sequence[GpuRoom], need_gib: float, count: int, allowed: Sequence[int] = ()) -> tuple[GpuRoom, ...] | None:
    """The `count` allowed GPUs with the least free memory that still fit `need_gib` (index order); None when fewer fit.

    Placement of a queued multi-GPU run (module docstring: why the tightest); `count` 1 is `best_fit`.
    """
    fitting = sorted((r for r in _allowed(rooms, allowed) if r.free_gib >= need_gib), key=lambda r: (r.free_gib, r.index))
    if count < 1 or len(fitting) < count:
        return None
    return _in_index_order(fitting[:count])


def closest_gpus(rooms: Sequence[GpuRoom], count: int, allowed: Sequence[int] = ()) -> tuple[GpuRoom, ...]:
    """The `count` allowed GPUs with the most room, fitting or not (most room first): where a waiting run is closest to fitting."""
    return tuple(sorted(_allowed(rooms, allowed), key=lambda r: (-r.free_gib, r.index))[:max(count, 1)])


def _gpu_names(rooms: Sequence[GpuRoom]) -> str:
    return ", ".join(f"GPU{r.index}" for r in rooms)


def why_waiting_many(rooms: Sequence[GpuRoom], need_gib: float | None, count: int, allowed: Sequence[int] = ()) -> str:
    """Why a multi-GPU run cannot start now, in one line: `needs 4 GPUs with 61.0 GiB each; 2 have room now (GPU0, GPU3)`.

    Says so when it can never start here (fewer GPUs than it needs, or too few large enough).
    """
    need = need_gib or 0.0
    mine = _allowed(rooms, allowed)
    wanted = f"GPUs {','.join(map(str, allowed))}" if allowed and len(allowed) == count else f"{count} GPUs"
    head = f"needs {wanted} with {need:.1f} GiB each"
    if allowed:
        missing = [i for i in allowed if i not in {r.index for r in rooms}]
        if missing and len(mine) < count:
            return f"{head}; this box has no GPU {','.join(map(str, missing))}: it cannot start; cancel it"
    if len(mine) < count:
        return f"{head}; this box has {len(mine)}: it cannot start; cancel it"
    large = [r for r in mine if r.total_gib >= need]
    if len(large) < count:
        return f"{head}; only {len(large)} {'has' if len(large) == 1 else 'have'} that much memory at all: it cannot start; cancel it"
    fitting = [r for r in mine if r.free_gib >= need]
    if not fitting:
        return f"{head}; none has room now (the most: {closest_gpus(mine, 1)[0].describe()})"
    return f"{head}; {len(fitting)} {'has' if len(fitting) == 1 else 'have'} room now ({_gpu_names(fitting)})"


def is_waiting(status: JobStatus | None, placement: Placement | None) -> bool:
    """A run in the queue: created queued, not yet given a device, not cancelled."""
    return (status is not None and status.state == "queued" and placement is not None
            and placement.queued and not placement.admitted_at)


@dataclass(frozen=True)
class Waiting:
    """A queued run as the planner sees it."""

    run_id: str
    priority: int
    order: float  # submission time, or where `queue move` put it
    device: str  # cuda | cpu
    estimate_gib: float | None
    allowed_gpus: tuple[int, ...] = ()
    max_parallel: int = 1  # cpu: start only while fewer runs than this run on the CPU
    passed: int = 0  # later runs that started ahead of it
    gpu_count: int = 1  # GPUs it needs at once, each with room for estimate_gib (a multi-GPU run)


def queue_order(waiting: Sequence[Waiting]) -> list[Waiting]:
    """Priority first (higher earlier), then submission order."""
    return sorted(waiting, key=lambda w: (-w.priority, w.order, w.run_id))


@dataclass(frozen=True)
class Plan:
    """What to do now: runs to start (with their GPUs), and for each waiting run, why it waits."""

    start: tuple[tuple[str, tuple[int, ...]], ...]
    reasons: dict[str, str] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)  # new pass counts of runs that were passed
    targets: dict[str, int] = field(default_factory=dict)  # the GPU each waiting run is closest to fitting (most room)


def _rooms_after(rooms: list[GpuRoom], index: int, run_id: str, need: float) -> list[GpuRoom]:
    from dataclasses import replace

    return [replace(r, reserved_gib=r.reserved_gib + need, runs=(*r.runs, run_id)) if r.index == index else r for r in rooms]


def _why_waiting(w: Waiting, rooms: Sequence[GpuRoom]) -> str:
    if w.gpu_count > 1:
        return why_waiting_many(rooms, w.estimate_gib, w.gpu_count, w.allowed_gpus)
    allowed = [r for r in rooms if not w.allowed_gpus or r.index in w.allowed_gpus]
    best = roomiest(allowed)
    if best is None:
        return f"none of GPUs {','.join(map(str, w.allowed_gpus))} exists on this box"
    largest = max(r.total_gib for r in allowed)
    if w.estimate_gib is not None and w.estimate_gib > largest:
        return f"needs {w.estimate_gib:.1f} GiB, more than any of its GPUs has ({largest:.1f} GiB): it cannot start; cancel it"
    return f"needs {w.estimate_gib or 0:.1f} GiB; best: {best.describe()}"


def _target(w: Waiting, rooms: Sequence[GpuRoom]) -> int | None:
    """The GPU it waits for: the one with most room (one GPU), or the tightest of the `gpu_count` roomiest (several)."""
    if w.device == CPU:
        return None
    closest = closest_gpus(rooms, w.gpu_count, w.allowed_gpus)
    return closest[-1].index if closest else None


def plan_admissions(waiting: Sequence[Waiting], rooms: Sequence[GpuRoom], cpu_running: int = 0) -> Plan:
    """Which waiting runs start now, in queue order, by the memory rule and the backfill limit (module docstring)."""
    rooms = list(rooms)
    start: list[tuple[str, tuple[int, ...]]] = []
    reasons: dict[str, str] = {}
    passed: dict[str, int] = {}
    targets: dict[str, int] = {}
    skipped: list[Waiting] = []  # earlier runs that did not fit: each run started now passes them
    for w in queue_order(waiting):
        holder = next((s for s in skipped if passed.get(s.run_id, s.passed) >= MAX_PASSES), None)
        if holder is not None:
            reasons[w.run_id] = f"behind {holder.run_id}, which goes first (passed {MAX_PASSES} times)"
            continue
        gpus: tuple[int, ...] | None = None
        if w.device == CPU:
            if cpu_running < w.max_parallel:
                gpus = ()
                cpu_running += 1
            else:
                reasons[w.run_id] = f"the CPU takes {w.max_parallel} run{'s' if w.max_parallel != 1 else ''} at a time; {cpu_running} running"
        else:
            chosen = best_fit_many(rooms, w.estimate_gib or 0.0, w.gpu_count, w.allowed_gpus)
            if chosen is not None:
                gpus = tuple(r.index for r in chosen)
                for index in gpus:  # its per-GPU peak on every GPU it takes
                    rooms = _rooms_after(rooms, index, w.run_id, w.estimate_gib or 0.0)
            else:
                reasons[w.run_id] = _why_waiting(w, rooms)
        if gpus is None:
            skipped.append(w)
            target = _target(w, rooms)
            if target is not None:
                targets[w.run_id] = target
            continue
        start.append((w.run_id, gpus))
        for earlier in skipped:
            passed[earlier.run_id] = passed.get(earlier.run_id, earlier.passed) + 1
    return Plan(tuple(start), reasons, passed, targets)
