"""The shared box's queue: the memory rule on a faked 2-GPU box, order and passing, owners, move and cancel, `queue --json`."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace

import pytest

from sft_tui.core.errors import UserError
from sft_tui.core.runs import queue, queue_edits
from sft_tui.core.runs.placement import MAX_PASSES, Claim, GpuRoom, Waiting, gpu_rooms, most_room, plan_admissions
from sft_tui.core.runs.schema import Placement, now_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import GpuProcess, GpuSample, SystemSampler
from tests.unit.test_sysmon import FakeNvml

GIB = 2**30
HOST = socket.gethostname()  # the queue counts only runs started on this machine
FOREIGN_PID = 999_999_999  # no such process: someone else's notebook holding memory


class TwoGpuBox(FakeNvml):
    """Two 24 GiB GPUs; another user's process holds 10 GiB on GPU 0."""

    def __init__(self):
        super().__init__()
        gpu = dict(name="NVIDIA GeForce RTX 4090", used=0, total=24 * GIB, util=0, temp=40, power=50_000, limit=450_000, cc=(8, 9), procs=[])
        self.gpus = [dict(gpu, used=10 * GIB, procs=[_proc(FOREIGN_PID, 10)]), dict(gpu)]


def _proc(pid: int, gib: float):
    from types import SimpleNamespace

    return SimpleNamespace(pid=pid, usedGpuMemory=int(gib * GIB))


def _sample(index: int, total: float, procs: tuple[tuple[int, float], ...] = ()) -> GpuSample:
    used = int(sum(g for _, g in procs) * GIB)
    return GpuSample(index, "GPU", used, int(total * GIB), None, None, None, None, "8.0", True,
                     tuple(GpuProcess(pid, int(g * GIB)) for pid, g in procs))


def queued_run(store: RunStore, name: str, estimate: float, owner: str, order: float, priority: int = 0, waiter: int | None = None):
    """A run waiting in the queue, as `train --queue` leaves it; its waiter is this live process unless given."""
    run = store.create_run(f"# {name}\n", "m", "lora", name=name)
    run.write_status(replace(run.read_status(), owner=owner, host=HOST, pid=os.getpid() if waiter is None else waiter))
    run.write_placement(Placement(now_iso(), "cuda", estimate, queued=True, priority=priority, order=order))
    return run


class FakeStarter:
    """Stands in for jobs.launch: records the runs a new supervisor would have been started for."""

    def __init__(self):
        self.started: list[str] = []

    def __call__(self, run) -> int:
        self.started.append(run.id)
        return os.getpid()


def admitted(store: RunStore) -> list[tuple[str, tuple[int, ...]]]:
    """(run id, GPUs) of every run given a device, oldest admission first."""
    found = [(r.read_placement().admitted_at, r.id, r.read_placement().gpus) for r in store.run_dirs() if r.read_placement().admitted_at]
    return [(run_id, gpus) for _, run_id, gpus in sorted(found)]


def finish(run) -> None:
    run.write_status(replace(run.read_status(), state="completed", updated_at=now_iso()))


def test_three_queued_runs_on_a_shared_two_gpu_box_are_placed_by_the_memory_rule(cli, monkeypatch):
    nvml = TwoGpuBox()
    monkeypatch.setattr("sft_tui.core.runs.sysmon.SystemSampler", lambda *a, **k: SystemSampler(nvml))
    starter = FakeStarter()
    monkeypatch.setattr("sft_tui.core.runs.jobs.launch", starter)
    store = RunStore()
    a = queued_run(store, "a", 12, "alice", order=1)
    b = queued_run(store, "b", 12, "bob", order=2)
    c = queued_run(store, "c", 20, "carol", order=3)

    def listed():
        result = cli("queue", "--json")
        assert result.code == 0, result.err
        return json.loads(result.out)

    before = [(q.position, q.id, q.owner) for q in queue_edits.queued_runs(store)]
    assert before == [(1, a.id, "alice"), (2, b.id, "bob"), (3, c.id, "carol")]

    # `queue` admits as it lists: 12 GiB fits GPU0's 14 free (tightest fit), the next 12 only GPU1, 20 fits nowhere;
    # each run's own (live) waiter starts its trainer pinned there, so no new process is started
    shown = listed()
    assert admitted(store) == [(a.id, (0,)), (b.id, (1,))] and starter.started == []
    assert a.read_status().gpus == (0,) and b.read_status().gpus == (1,)
    assert [(q["position"], q["id"], q["owner"], q["estimate_gib"], q["waiting_for_gpu"]) for q in shown] == [(1, c.id, "carol", 20, 1)]
    assert "needs 20.0 GiB; best: GPU1 12.0 of 24.0 GiB free" in shown[0]["waiting_for"]
    assert [o.queue_position for o in store.list_runs() if o.id == c.id] == [1]

    finish(a)  # GPU0 now has 14 GiB free: still not 20
    shown = listed()
    assert len(admitted(store)) == 2 and shown[0]["id"] == c.id
    assert "best: GPU0 14.0 of 24.0 GiB free (10.0 other processes" in shown[0]["waiting_for"]

    finish(b)  # GPU1 is empty again
    assert listed() == []
    assert admitted(store)[-1] == (c.id, (1,)) and starter.started == []
    assert [e.event for e in c.read_new_rows().events] == ["admitted"]


def test_after_a_reboot_the_owners_next_sft_tui_starts_new_waiters_and_leaves_teammates_runs_to_them(monkeypatch):
    from datetime import datetime, timedelta, timezone

    monkeypatch.setattr("sft_tui.core.runs.queue.current_owner", lambda: ("alice", HOST))
    store = RunStore()
    long_ago = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat()
    mine = queued_run(store, "mine", 30, "alice", order=1, waiter=FOREIGN_PID)  # no such process any more
    theirs = queued_run(store, "theirs", 30, "bob", order=2, waiter=FOREIGN_PID)
    for run in (mine, theirs):
        run.write_status(replace(run.read_status(), updated_at=long_ago))
    assert [(o.id, o.state) for o in store.list_runs()] == [(theirs.id, "queued"), (mine.id, "queued")]  # still queued, not crashed
    starter = FakeStarter()
    queue.admit(store, SystemSampler(TwoGpuBox()).sample_gpus(), spawn=starter)
    assert starter.started == [mine.id]  # a new waiter for alice's run; bob's runs only as bob
    assert theirs.read_placement().waiting == "its waiting process is gone (a reboot?); it moves again when bob runs sft-tui"
    assert mine.read_placement().waiting == "needs 30.0 GiB, more than any of its GPUs has (24.0 GiB): it cannot start; cancel it"


def test_an_admitted_run_reserves_the_larger_of_its_estimate_and_what_it_holds():
    me = os.getpid()
    claims = [Claim("r", (0,), 12.0, frozenset({me}))]
    loading = gpu_rooms([_sample(0, 24, ((me, 3),))], claims)[0]  # still loading: its estimate counts
    assert loading.reserved_gib == 12 and loading.free_gib == 12
    above = gpu_rooms([_sample(0, 24, ((me, 16),))], claims)[0]  # past its estimate: what it holds counts
    assert above.reserved_gib == 16 and above.free_gib == 8
    foreign = gpu_rooms([_sample(0, 24, ((me, 3), (FOREIGN_PID, 5)))], claims)[0]
    assert foreign.other_gib == 5 and foreign.free_gib == 7


def test_where_nvml_hides_processes_used_memory_and_estimates_are_not_added_twice():
    hidden = GpuSample(0, "GPU", 13 * GIB, 24 * GIB, None, None, None, None, "8.0", True, ())
    room = gpu_rooms([hidden], [Claim("r", (0,), 12.0)])[0]
    assert not room.attributed and room.free_gib == pytest.approx(11)  # 24 - max(13 used, 12 reserved)


def test_a_run_started_without_the_queue_goes_to_the_gpu_with_the_most_room():
    rooms = [GpuRoom(0, "a", 24, 10, 10, 0), GpuRoom(1, "b", 24, 0, 0, 4), GpuRoom(2, "c", 24, 0, 0, 0)]
    assert most_room(rooms, 12).index == 2
    assert most_room(rooms, 12, allowed=(0, 1)).index == 1
    assert most_room(rooms, 21, allowed=(0, 1)) is None


def _big_and_small(n_small: int, passed: int = 0) -> list[Waiting]:
    big = Waiting("big", 0, 0.0, "cuda", 30.0, passed=passed)
    return [big] + [Waiting(f"s{i}", 0, float(i + 1), "cuda", 4.0) for i in range(n_small)]


def test_small_runs_pass_a_large_head_run_only_so_many_times():
    rooms = [GpuRoom(0, "g", 24, 0, 0, 0)]
    plan = plan_admissions(_big_and_small(5), rooms)
    assert [r for r, _ in plan.start] == ["s0", "s1", "s2"]  # backfill: idle room is used
    assert plan.passed == {"big": MAX_PASSES}
    assert plan.reasons["s3"].startswith("behind big, which goes first")
    # next time round the big run holds the queue until it fits, even where a small one would
    held = plan_admissions(_big_and_small(1, passed=MAX_PASSES), [GpuRoom(0, "g", 24, 12, 12, 0)])
    assert held.start == () and held.reasons["s0"].startswith("behind big")


def test_priority_comes_before_submission_order_and_the_cpu_takes_one_run_unless_told():
    waiting = [Waiting("old", 0, 1.0, "cpu", None), Waiting("urgent", 5, 2.0, "cpu", None), Waiting("wide", 0, 3.0, "cpu", None, max_parallel=3)]
    plan = plan_admissions(waiting, [], cpu_running=0)
    assert [r for r, _ in plan.start] == ["urgent", "wide"]  # wide allows 3 on the CPU; old allows only 1
    assert plan.reasons["old"] == "the CPU takes 1 run at a time; 1 running"


def test_a_run_larger_than_any_gpu_says_so_while_it_waits():
    plan = plan_admissions([Waiting("huge", 0, 0.0, "cuda", 30.0)], gpu_rooms([_sample(0, 24)], []))
    assert plan.reasons["huge"] == "needs 30.0 GiB, more than any of its GPUs has (24.0 GiB): it cannot start; cancel it"


def test_move_and_cancel_are_for_the_owner_unless_forced_and_both_are_recorded(cli, monkeypatch):
    monkeypatch.setattr("sft_tui.core.runs.queue_edits.current_owner", lambda: ("alice", HOST))
    monkeypatch.setattr("sft_tui.core.runs.queue.admit_with_sampler", lambda *a, **k: None)
    monkeypatch.setattr("sft_tui.cli.queue._moved_on", lambda store: None)
    store = RunStore()
    # waiters that are not this process: cancelling sends the waiter SIGTERM
    mine, bobs, third = (queued_run(store, name, 4, owner, order=n, waiter=FOREIGN_PID)
                         for n, (name, owner) in enumerate((("mine", "alice"), ("bobs", "bob"), ("third", "alice")), start=1))

    moved = cli("queue", "move", third.id, "--to", "1")
    assert moved.code == 0 and f"run {third.id} is now at position 1" in moved.out
    assert [q.id for q in queue_edits.queued_runs(store)] == [third.id, mine.id, bobs.id]

    refused = cli("queue", "move", bobs.id, "--to", "1")
    assert refused.code == 2 and refused.err.strip() == (
        f"error: run {bobs.id} belongs to bob; ask them, or pass --force to move it anyway (it is recorded in the run's events)")
    assert f"alice@{HOST} tried to move it" in bobs.read_new_rows().events[-1].message

    cancelled = cli("queue", "cancel", bobs.id, "--force")
    assert cancelled.code == 0 and "cancelled run" in cancelled.out
    assert bobs.read_status().state == "stopped" and f"cancelled in the queue by alice@{HOST}" in bobs.read_status().result
    assert [e.event for e in bobs.read_new_rows().events] == ["refused", "forced", "cancelled"]
    assert [q.id for q in queue_edits.queued_runs(store)] == [third.id, mine.id]

    reprioritised = cli("queue", "move", mine.id, "--priority", "3")
    assert reprioritised.code == 0 and f"run {mine.id} is now at position 1" in reprioritised.out
    assert mine.read_placement().priority == 3 and [q.id for q in queue_edits.queued_runs(store)] == [mine.id, third.id]
    neither = cli("queue", "move", mine.id)
    assert neither.code == 2 and "takes one of --to N or --priority P, got neither --to nor --priority" in neither.err
    both = cli("queue", "move", mine.id, "--to", "1", "--priority", "2")
    assert both.code == 2 and "got both --to and --priority" in both.err

    stopped = cli("stop", mine.id)  # stop on a waiting run takes it out of the queue
    assert stopped.code == 0 and mine.read_status().state == "stopped"
    again = cli("queue", "cancel", mine.id)
    assert again.code == 2 and "is not waiting in the queue (state: stopped)" in again.err


def test_runs_lists_queue_positions_and_filters_by_owner(cli, monkeypatch):
    monkeypatch.setattr("sft_tui.core.runs.liveness.current_owner", lambda: ("bob", HOST))
    store = RunStore()
    queued_run(store, "first", 4, "alice", order=1)
    second = queued_run(store, "second", 4, "bob", order=2)
    listed = json.loads(cli("runs", "--json", "--owner", "bob").out)
    assert [(r["id"], r["queue_position"], r["owner"]) for r in listed] == [(second.id, 2, "bob")]
    mine = cli("runs", "--mine")
    assert second.id in mine.out and "first" not in mine.out and "queue #2" in mine.out


def test_unknown_gpu_ids_are_refused_in_one_line(cli, monkeypatch, tmp_path):
    from sft_tui.cli.train import parse_gpu_ids
    from sft_tui.core.runs.preflight import PlacementRequest, check_gpu_ids

    assert parse_gpu_ids("2, 3,2") == (2, 3)
    with pytest.raises(UserError, match="'x' is not a GPU index"):
        parse_gpu_ids("1,x")
    box = SystemSampler(TwoGpuBox()).sample_gpus()
    with pytest.raises(UserError, match=r"this machine has no GPU 5 \(it has 0,1\)"):
        check_gpu_ids(PlacementRequest(gpus=(1, 5)), box)
    with pytest.raises(UserError, match="no NVIDIA GPU"):
        check_gpu_ids(PlacementRequest(gpus=(0,)), SystemSampler(FakeNvml(fail_init="no driver")).sample_gpus())


def test_a_resumed_run_moves_to_the_gpu_with_the_most_room_now():
    store = RunStore()
    run = store.create_run("# r\n", "m", "lora", name="r")
    run.write_status(replace(run.read_status(), state="stopped", gpus=(0,)))
    run.write_placement(Placement(now_iso(), "cuda", 12.0, admitted_at=now_iso(), gpus=(0,)))
    line = queue_edits.place_for_resume(store, run, SystemSampler(TwoGpuBox()).sample_gpus())  # GPU0 has another user's 10 GiB
    assert line.startswith("GPU: resumes on GPU1: GPU1 24.0 of 24.0 GiB free")
    assert run.read_placement().gpus == (1,) and run.read_status().gpus == (1,)
    assert queue.placement_env(run.read_placement()) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1"}


def _demo_config():
    from sft_tui.core.config.load import load_run_config
    from tests.trainer.conftest import DEMO

    return load_run_config(DEMO / "demo.toml", [])


def test_train_without_the_queue_goes_to_the_gpu_with_the_most_room_and_refuses_when_none_has_it(monkeypatch):
    from sft_tui.core.runs import preflight

    monkeypatch.setattr(preflight, "run_peak_gib", lambda config, gpu, *visible: 12.0)
    store, lines, starter = RunStore(), [], FakeStarter()
    box = SystemSampler(TwoGpuBox())
    first = preflight.start_run(_demo_config(), "demo.toml", lines.append, launch_fn=starter, store=store, sampler=box)
    assert first.read_placement().gpus == (1,) and first.read_status().gpus == (1,) and not first.read_placement().queued
    assert "GPU: placed on GPU1 NVIDIA GeForce RTX 4090: GPU1 24.0 of 24.0 GiB free" in "\n".join(lines)
    first.write_status(replace(first.read_status(), pid=os.getpid()))  # its trainer is up: it holds GPU1's room
    second = preflight.start_run(_demo_config(), "demo.toml", lines.append, launch_fn=starter, store=store, sampler=box)
    assert second.read_placement().gpus == (0,)  # GPU0: 14 free beats GPU1's 12
    second.write_status(replace(second.read_status(), pid=os.getpid()))
    third = preflight.start_run(_demo_config(), "demo.toml", lines.append, launch_fn=starter, store=store, sampler=box)
    assert third.read_placement().gpus == (1,)  # GPU1's last 12 GiB
    with pytest.raises(UserError, match=r"no GPU has room for this run now: it needs 12.0 GiB; the most is GPU0 2.0 of 24.0 GiB free.*queue it to start when room appears \(--queue"):
        preflight.start_run(_demo_config(), "demo.toml", lines.append, launch_fn=starter, store=store, sampler=box)
    assert len(store.run_dirs()) == 3  # nothing made for the refused one
    queued = preflight.start_run(_demo_config(), "demo.toml", lines.append, launch_fn=starter, store=store, sampler=box,
                                 request=preflight.PlacementRequest(queue=True, priority=2))
    assert queued.read_placement().queued and queued.read_placement().priority == 2 and queued.read_status().state == "queued"
    assert f"queued run {queued.id} at position 1" in "\n".join(lines)
    assert starter.started == [first.id, second.id, third.id, queued.id]


def test_the_watcher_says_why_a_queued_run_waits_and_keeps_it_queued_without_its_waiter():
    from datetime import datetime, timedelta, timezone

    from sft_tui.core.runs.watch import RunWatcher

    run = queued_run(RunStore(), "w", 20, "ana", order=1, waiter=FOREIGN_PID)
    run.write_status(replace(run.read_status(), updated_at=(datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()))
    run.write_placement(replace(run.read_placement(), waiting="needs 20.0 GiB; best: GPU1 12.0 of 24.0 GiB free"))
    snapshot = RunWatcher(run).poll()
    assert snapshot.state == "queued" and snapshot.waiting == "priority 0 · needs 20.0 GiB; best: GPU1 12.0 of 24.0 GiB free"
    run.write_placement(replace(run.read_placement(), admitted_at=now_iso(), gpus=(1,)))
    assert RunWatcher(run).poll().waiting == ""


def test_resuming_a_teammates_run_needs_force(cli, monkeypatch):
    from sft_tui.core.config.load import dump_run_config

    monkeypatch.setattr("sft_tui.core.runs.queue_edits.current_owner", lambda: ("alice", HOST))
    run = RunStore().create_run(dump_run_config(_demo_config().config), "m", "lora", name="bobs")
    run.write_status(replace(run.read_status(), state="stopped", owner="bob"))
    (run.checkpoint_dir(5)).mkdir(parents=True)
    (run.checkpoint_dir(5) / "trainer_state.json").write_text("{}")
    refused = cli("resume", run.id)
    assert refused.code == 2 and refused.err.strip().endswith("pass --force to resume it anyway (it is recorded in the run's events)")
    assert run.read_status().state == "stopped" and run.read_new_rows().events[-1].event == "refused"


def test_a_queued_run_whose_placement_file_is_damaged_fails_in_one_line_instead_of_waiting_for_ever():
    run = queued_run(RunStore(), "broken", 4, "ana", order=1)
    run.placement_path.write_text("{not json")
    assert queue.wait_for_admission(run, stop=lambda timeout: True) is None
    status = run.read_status()
    assert status.state == "failed" and status.error.kind == "config"
    assert status.error.message == "placement.json of this queued run is missing or unreadable: it cannot be placed"
    assert [(o.id, o.state) for o in RunStore().list_runs()] == [(run.id, "failed")]


def test_stop_force_on_a_teammates_trainer_asks_through_the_stop_file_when_it_cannot_be_signalled(monkeypatch):
    from sft_tui.core.runs import jobs

    run = RunStore().create_run("# r\n", "m", "lora", name="theirs")
    run.write_status(replace(run.read_status(), state="running", pid=os.getpid(), owner="alice"))
    sent = []

    def kill(pid, sig):  # this process stands for alice's trainer: another user's, so no signal may reach it
        sent.append(sig)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(jobs.os, "kill", kill)
    result = jobs.request_stop(run)
    assert "through its stop file (pid" in result.message and "runs as alice" in result.message
    assert run.stop_request_path.exists() and sent == [0]  # asked whether it may signal; wrote the file the trainer watches
    with pytest.raises(UserError, match="only alice or root can kill it"):
        jobs.request_stop(run)


def test_a_teammates_admitted_run_whose_waiter_died_gives_its_room_back_to_the_queue(monkeypatch):
    monkeypatch.setattr("sft_tui.core.runs.queue.current_owner", lambda: ("bob", HOST))
    store = RunStore()
    box = SystemSampler(TwoGpuBox()).sample_gpus()
    alices = queued_run(store, "alices", 20, "alice", order=1, waiter=FOREIGN_PID)  # its waiter died right after admission
    alices.write_placement(replace(alices.read_placement(), admitted_at=now_iso(), gpus=(1,)))
    bobs = queued_run(store, "bobs", 20, "bob", order=2)
    starter = FakeStarter()
    queue.admit(store, box, spawn=starter)
    assert starter.started == []  # never alice's run as bob
    assert bobs.read_placement().gpus == (1,)  # alice's stranded admission held nothing
    assert not alices.read_placement().admitted_at and alices.read_status().gpus == ()
    assert alices.read_placement().waiting == "its waiting process is gone (a reboot?); it moves again when alice runs sft-tui"
    assert [q.id for q in queue_edits.queued_runs(store)] == [alices.id]  # listed, so `queue cancel --force` reaches it


def test_a_broken_queue_lock_is_one_line(cli, tmp_path):
    store = RunStore()
    store.create_run("# r\n", "m", "lora")
    (store.home / ".queue.lock").mkdir()
    result = cli("queue")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "the queue's lock file cannot be used (Is a directory)" in result.err and "remove it and it is made again" in result.err


def test_an_interrupted_start_leaves_no_half_made_run(monkeypatch):
    from sft_tui.core.runs import preflight

    def interrupted(run):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        preflight.start_run(_demo_config(), "demo.toml", print, launch_fn=interrupted, store=RunStore(),
                            request=preflight.PlacementRequest(queue=True))
    assert RunStore().run_dirs() == []


def test_in_a_setgid_team_home_run_folders_are_group_writable_whatever_the_umask(tmp_path):
    import stat

    home = tmp_path / "team"
    home.mkdir()
    home.chmod(0o2775)
    old = os.umask(0o022)
    try:
        run = RunStore(home).create_run("# r\n", "m", "lora")
        plain = RunStore(tmp_path / "mine").create_run("# r\n", "m", "lora")  # not a team folder: the umask stands
    finally:
        os.umask(old)
    assert stat.S_IMODE(run.path.stat().st_mode) & 0o070 == 0o070
    assert stat.S_IMODE((home / "runs").stat().st_mode) & 0o070 == 0o070
    assert stat.S_IMODE(plain.path.stat().st_mode) & 0o020 == 0
