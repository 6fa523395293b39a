"""The queue on N GPUs (issue 18): a multi-GPU run starts only when N GPUs have room for its per-GPU peak, reserves
that peak on each, goes to exactly its listed GPUs, is not starved by small runs, and old placement files still read."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from sft_tui.core.runs import queue, queue_edits
from sft_tui.core.runs.codec import SchemaError
from sft_tui.core.runs.placement import (
    MAX_PASSES,
    Claim,
    GpuRoom,
    Waiting,
    best_fit_many,
    gpu_rooms,
    most_room_many,
    plan_admissions,
    why_waiting_many,
)
from sft_tui.core.runs.schema import Placement, now_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import GpuProcess, GpuSample, SystemSampler
from tests.unit.test_queue import HOST, FakeStarter, admitted, finish
from tests.unit.test_sysmon import FakeNvml

GIB = 2**30


def _room(index: int, free: float, total: float = 80.0) -> GpuRoom:
    """A GPU with `free` GiB of room: the rest held by another user's process."""
    return GpuRoom(index, "H100", total, total - free, total - free, 0.0)


def _indices(rooms) -> tuple[int, ...] | None:
    return None if rooms is None else tuple(r.index for r in rooms)


def test_a_run_that_starts_now_takes_the_n_roomiest_gpus_and_a_queued_one_the_n_tightest_that_fit():
    rooms = [_room(0, 30), _room(1, 70), _room(2, 50), _room(3, 80)]
    assert _indices(most_room_many(rooms, 40, 2)) == (1, 3)  # index order: rank 0 on GPU1, rank 1 on GPU3
    assert _indices(best_fit_many(rooms, 40, 2)) == (1, 2)  # GPU3, the emptiest, stays for a larger run
    assert _indices(best_fit_many(rooms, 40, 3)) == (1, 2, 3)
    assert most_room_many(rooms, 40, 4) is None and best_fit_many(rooms, 40, 4) is None  # GPU0 has 30 of the 40
    assert most_room_many(rooms, 60, 3) is None  # the third roomiest has 50
    assert _indices(most_room_many(rooms, 40, 1)) == (3,) and _indices(best_fit_many(rooms, 40, 1)) == (2,)  # as most_room/best_fit
    assert most_room_many(rooms, 1, 5) is None  # more GPUs than the box has


def test_a_listed_set_of_gpus_means_exactly_those():
    rooms = [_room(0, 70), _room(1, 80), _room(2, 45), _room(3, 80)]
    assert _indices(most_room_many(rooms, 40, 2, allowed=(0, 2))) == (0, 2)  # not the roomier GPU1 and GPU3
    assert _indices(best_fit_many(rooms, 40, 2, allowed=(0, 2))) == (0, 2)
    assert best_fit_many(rooms, 50, 2, allowed=(0, 2)) is None  # GPU2 lacks room: it waits although GPU1 and GPU3 are empty
    assert most_room_many(rooms, 50, 2, allowed=(0, 2)) is None
    assert _indices(best_fit_many(rooms, 40, 2, allowed=(0, 1, 3))) == (0, 1)  # --gpus narrows, the count still picks


def test_a_waiting_multi_gpu_run_says_how_many_gpus_have_room():
    rooms = [_room(0, 70), _room(1, 20), _room(2, 10), _room(3, 65)]
    assert why_waiting_many(rooms, 61.0, 4) == "needs 4 GPUs with 61.0 GiB each; 2 have room now (GPU0, GPU3)"
    assert why_waiting_many(rooms, 61.0, 2, allowed=(0, 1)) == "needs GPUs 0,1 with 61.0 GiB each; 1 has room now (GPU0)"
    assert why_waiting_many(rooms, 75.0, 2).startswith("needs 2 GPUs with 75.0 GiB each; none has room now (the most: GPU0 70.0 of 80.0")
    assert why_waiting_many(rooms, 61.0, 8) == "needs 8 GPUs with 61.0 GiB each; this box has 4: it cannot start; cancel it"
    assert why_waiting_many(rooms, 61.0, 2, allowed=(0, 6)) == (
        "needs GPUs 0,6 with 61.0 GiB each; this box has no GPU 6: it cannot start; cancel it")
    mixed = [_room(0, 80), _room(1, 24, total=24)]
    assert why_waiting_many(mixed, 30.0, 2) == "needs 2 GPUs with 30.0 GiB each; only 1 has that much memory at all: it cannot start; cancel it"


def test_a_two_gpu_run_is_admitted_only_when_two_gpus_have_room_and_reserves_its_peak_on_both():
    two = Waiting("two", 0, 1.0, "cuda", 40.0, gpu_count=2)
    one_free = [_room(0, 80), _room(1, 30), _room(2, 20)]
    plan = plan_admissions([two], one_free)
    assert plan.start == () and plan.reasons["two"] == "needs 2 GPUs with 40.0 GiB each; 1 has room now (GPU0)"
    assert plan.targets["two"] == 1  # the tightest of the two it is closest to getting: GPU1 must free room

    two_free = [_room(0, 80), _room(1, 50), _room(2, 20)]
    after = Waiting("after", 0, 2.0, "cuda", 45.0)
    plan = plan_admissions([two, after], two_free)
    # the 2-GPU run takes GPU0 and GPU1 (the two that fit); 40 GiB is reserved on both, so the 1-GPU run behind it
    # sees 40 on GPU0 and 10 on GPU1 (and GPU2's 20): none has 45, which either GPU had before
    assert plan.start == (("two", (0, 1)),)
    assert plan.reasons["after"] == "needs 45.0 GiB; best: GPU0 40.0 of 80.0 GiB free (0.0 other processes, 40.0 sft-tui runs)"
    smaller = plan_admissions([two, replace(after, estimate_gib=30.0)], two_free)
    assert smaller.start == (("two", (0, 1)), ("after", (0,)))  # 30 fits the 40 left on GPU0 only


def test_an_admitted_multi_gpu_run_counts_on_every_gpu_it_was_given():
    samples = [GpuSample(i, "H100", 0, 80 * GIB, None, None, None, None, "9.0", True, ()) for i in range(3)]
    rooms = gpu_rooms(samples, [Claim("ddp", (0, 2), 61.0)])
    assert [(r.index, r.free_gib, r.runs) for r in rooms] == [(0, 19.0, ("ddp",)), (1, 80.0, ()), (2, 19.0, ("ddp",))]
    held = [GpuSample(i, "H100", 70 * GIB, 80 * GIB, None, None, None, None, "9.0", True, (GpuProcess(100 + i, 70 * GIB),))
            for i in range(2)]
    rooms = gpu_rooms(held, [Claim("ddp", (0, 1), 61.0, frozenset({100, 101}))])  # each rank holds more than the estimate
    assert [r.free_gib for r in rooms] == [10.0, 10.0]


def test_a_four_gpu_run_at_the_head_is_not_starved_by_a_stream_of_one_gpu_runs():
    """Four 80 GiB GPUs, each with a 30 GiB run on it; a 4-GPU run needing 60 GiB each at the head; a new 10 GiB
    run arrives every round. Small runs pass it MAX_PASSES times, then nothing starts past it, the GPUs drain
    as runs finish, and it starts."""
    running: dict[str, tuple[int, float]] = {f"old{i}": (i, 30.0) for i in range(4)}  # run -> (GPU, GiB)
    big = Waiting("big", 0, 0.0, "cuda", 60.0, gpu_count=4)
    stream = [Waiting(f"s{i}", 0, float(i + 1), "cuda", 10.0) for i in range(40)]
    waiting = [big]
    started_ahead: list[str] = []
    for round_ in range(40):
        waiting.append(stream[round_])
        rooms = [GpuRoom(i, "H100", 80.0, 0.0, 0.0, sum(g for gpu, g in running.values() if gpu == i)) for i in range(4)]
        plan = plan_admissions(waiting, rooms)
        waiting = [replace(w, passed=plan.passed.get(w.run_id, w.passed)) for w in waiting if w.run_id not in dict(plan.start)]
        if "big" in dict(plan.start):
            assert dict(plan.start)["big"] == (0, 1, 2, 3)
            break
        started_ahead += [r for r, _ in plan.start]
        for run_id, gpus in plan.start:
            running[run_id] = (gpus[0], 10.0)
        assert len(started_ahead) <= MAX_PASSES, f"more than {MAX_PASSES} runs started past the 4-GPU run: {started_ahead}"
        held_back = [w.run_id for w in waiting if plan.reasons.get(w.run_id, "").startswith("behind big, which goes first")]
        assert held_back == ([w.run_id for w in waiting if w.run_id != "big"] if len(started_ahead) == MAX_PASSES else [])
        running.pop(min(running))  # one run ends each round, the old ones first
    else:
        pytest.fail("the 4-GPU run never started")
    assert len(started_ahead) == MAX_PASSES  # idle room was used while it could not start anyway


def test_an_old_placement_file_without_gpu_count_reads_as_one_gpu():
    old = {"submitted_at": "2026-11-23T09:30:00.000+00:00", "device": "cuda", "estimate_gib": 13.42, "queued": True, "priority": 0,
           "order": 1795465800.0, "allowed_gpus": [], "max_parallel": 1, "passed": 0, "waiting": "", "admitted_at": "", "gpus": [],
           "format": 1}
    placement = Placement.from_json(old, "placement.json")
    assert placement.gpu_count == 1 and queue.waiting_of(placement, "r").gpu_count == 1
    assert Placement.from_json({**old, "gpu_count": 4}, "placement.json").gpu_count == 4
    with pytest.raises(SchemaError, match="placement.json: field 'gpu_count': expected 1 or more GPUs, got 0"):
        Placement.from_json({**old, "gpu_count": 0}, "placement.json")


class FourGpuBox(FakeNvml):
    """Four empty 80 GiB GPUs."""

    def __init__(self):
        super().__init__()
        gpu = dict(name="NVIDIA H100 80GB HBM3", used=0, total=80 * GIB, util=0, temp=35, power=70_000, limit=700_000, cc=(9, 0), procs=[])
        self.gpus = [dict(gpu) for _ in range(4)]


def _queued(store: RunStore, name: str, estimate: float, order: float, gpu_count: int = 1, allowed: tuple[int, ...] = ()):
    run = store.create_run(f"# {name}\n", "m", "lora", name=name)
    run.write_status(replace(run.read_status(), owner="ana", host=HOST, pid=os.getpid()))
    run.write_placement(Placement(now_iso(), "cuda", estimate, queued=True, order=order, allowed_gpus=allowed, gpu_count=gpu_count))
    return run


def test_admission_writes_every_gpu_in_order_and_the_trainer_sees_them_all(monkeypatch):
    monkeypatch.setattr("sft_tui.core.runs.queue.current_owner", lambda: ("ana", HOST))
    store = RunStore()
    listed = _queued(store, "listed", 61.0, order=1, gpu_count=2, allowed=(3, 1))
    counted = _queued(store, "counted", 61.0, order=2, gpu_count=2)
    third = _queued(store, "third", 61.0, order=3, gpu_count=2)
    box = SystemSampler(FourGpuBox()).sample_gpus()
    queue.admit(store, box, spawn=FakeStarter())
    assert dict(admitted(store)) == {listed.id: (1, 3), counted.id: (0, 2)}  # the listed run gets exactly GPUs 1 and 3
    assert listed.read_status().gpus == (1, 3)
    assert queue.placement_env(listed.read_placement())["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert listed.read_new_rows().events[-1].message == "left the queue for GPUs 1,3"
    assert third.read_placement().waiting == ("needs 2 GPUs with 61.0 GiB each; none has room now "
                                              "(the most: GPU0 19.0 of 80.0 GiB free (0.0 other processes, 61.0 sft-tui runs))")
    finish(listed)
    queue.admit(store, box, spawn=FakeStarter())
    assert dict(admitted(store))[third.id] == (1, 3)


def test_queue_lists_a_multi_gpu_run_as_needing_n_gpus(cli, monkeypatch):
    monkeypatch.setattr("sft_tui.core.runs.sysmon.SystemSampler", lambda *a, **k: SystemSampler(FakeNvml()))  # one 80 GiB A100 (and a T4)
    store = RunStore()
    run = _queued(store, "wide", 61.0, order=1, gpu_count=4)
    [entry] = queue_edits.queued_runs(store)
    assert entry.needs() == "4 GPUs x 61.0G" and replace(entry, gpu_count=1).needs() == "61.0G"
    shown = json.loads(cli("queue", "--json").out)
    assert [(q["id"], q["gpu_count"], q["waiting_for"]) for q in shown] == [
        (run.id, 4, "needs 4 GPUs with 61.0 GiB each; this box has 2: it cannot start; cancel it")]


def test_a_resumed_multi_gpu_run_moves_as_a_whole_or_stays():
    store = RunStore()
    run = store.create_run("# r\n", "m", "lora", name="r")
    run.write_status(replace(run.read_status(), state="stopped", gpus=(0, 1)))
    run.write_placement(Placement(now_iso(), "cuda", 61.0, admitted_at=now_iso(), gpus=(0, 1), gpu_count=2))
    nvml = FourGpuBox()
    nvml.gpus[0]["used"], nvml.gpus[0]["procs"] = 40 * GIB, [_proc(999_999_999, 40)]  # someone took GPU0 meanwhile
    line = queue_edits.place_for_resume(store, run, SystemSampler(nvml).sample_gpus())
    assert line.startswith("GPU: resumes on GPUs 1,2: GPU1 80.0 of 80.0 GiB free")
    assert run.read_placement().gpus == (1, 2) and run.read_status().gpus == (1, 2)
    for gpu in nvml.gpus[1:]:
        gpu["used"], gpu["procs"] = 40 * GIB, [_proc(999_999_999, 40)]
    line = queue_edits.place_for_resume(store, run, SystemSampler(nvml).sample_gpus())
    assert line == ("warning: needs 2 GPUs with 61.0 GiB each; none has room now (the most: GPU0 40.0 of 80.0 GiB free "
                    "(40.0 other processes, 0.0 sft-tui runs)); it resumes on GPUs 1,2 and may run out of memory")
    assert run.read_placement().gpus == (1, 2)


def _proc(pid: int, gib: float):
    from types import SimpleNamespace

    return SimpleNamespace(pid=pid, usedGpuMemory=int(gib * GIB))
