"""The run-directory store: ids, atomic status, torn metrics lines, crash detection, the lock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from sft_tui.core import runs
from sft_tui.core.errors import UserError
from sft_tui.core.runs import RunStatus, RunStore

NOW = datetime(2026, 11, 22, 3, 30, 0, tzinfo=timezone.utc)


def make_run(store: RunStore, model: str = "smollm2-135m", method: str = "lora", now: datetime = NOW) -> runs.RunDir:
    text = f'[model]\nname = "{model}"\n[method]\nname = "{method}"\n'
    return store.create_run(text, model, method, now=now)


def test_empty_home_lists_nothing(runs_home):
    assert RunStore().list_runs() == []
    assert RunStore().home == runs_home.resolve()


def test_home_defaults_to_sft_runs_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("SFT_TUI_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert runs.runs_home() == tmp_path.resolve() / "sft-runs"


def test_create_run_makes_a_readable_unique_id(runs_home):
    store = RunStore()
    first, second, third = (make_run(store, "Qwen/Qwen2.5-7B", "qlora") for _ in range(3))
    assert first.id == "20261122-033000-qwen2.5-7b-qlora"
    assert second.id == first.id + "-2" and third.id == first.id + "-3"
    status = first.read_status()
    assert status.state == "queued" and status.pid == 0 and status.started_at.startswith("2026-11-22T03:30:00")
    assert first.config_identity() == ("Qwen/Qwen2.5-7B", "qlora")


def test_status_is_written_atomically_and_round_trips(runs_home):
    run = make_run(RunStore())
    status = RunStatus("failed", 123, NOW.isoformat(), NOW.isoformat(), 7, 100,
                       runs.RunError("oom", "CUDA out of memory", "lower micro_batch_size"), eta_s=12.5)
    run.write_status(status)
    assert run.read_status() == status
    assert sorted(p.name for p in run.path.iterdir()) == ["config.toml", "status.json"]  # no temp files left
    data = json.loads(run.status_path.read_text())
    assert set(data) >= {"state", "pid", "started_at", "updated_at", "step", "max_steps", "error"}
    assert data["error"] == {"kind": "oom", "message": "CUDA out of memory", "hint": "lower micro_batch_size"}
    with pytest.raises(ValueError):
        run.write_status(RunStatus("crashed", 1, NOW.isoformat(), NOW.isoformat()))  # derived, never written


def test_metrics_reader_waits_for_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step":1,"loss":2.0}\n{"step":2,"loss":1.5}\n{"step":3,"lo')
    chunk = runs.read_new_metrics(path, 0)
    assert [r["step"] for r in chunk.rows] == [1, 2]
    assert chunk.offset == len(b'{"step":1,"loss":2.0}\n{"step":2,"loss":1.5}\n')
    with path.open("ab") as handle:
        handle.write(b'ss":1.2}\nnot json\n[1]\n{"step":4,"loss":1.0}\n')
    chunk = runs.read_new_metrics(path, chunk.offset)
    assert [r["step"] for r in chunk.rows] == [3, 4]
    assert chunk.skipped_lines == 2
    assert runs.read_new_metrics(path, chunk.offset).rows == ()


def test_metrics_reader_restarts_when_the_file_was_replaced(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step":1}\n{"step":2}\n')
    offset = runs.read_new_metrics(path).offset
    path.write_text('{"step":9}\n')
    chunk = runs.read_new_metrics(path, offset)
    assert chunk.restarted and [r["step"] for r in chunk.rows] == [9]
    assert runs.read_new_metrics(tmp_path / "missing.jsonl", 10) == runs.MetricsChunk((), 0)


def test_metrics_writer_appends_flushed_rows_and_nulls_nan(runs_home):
    run = make_run(RunStore())
    writer = run.metrics_writer()
    writer.append({"step": 1, "loss": float("nan"), "grad_norm": float("inf")})
    writer.append({"step": 2, "loss": 0.5})
    # flushed: another reader sees the rows before the writer closes
    assert [r["loss"] for r in run.read_new_metrics().rows] == [None, 0.5]
    writer.close()
    assert json.loads(run.metrics_path.read_text().splitlines()[0]) == {"step": 1, "loss": None, "grad_norm": None}


def test_last_loss_comes_from_the_tail_of_a_long_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with path.open("w") as handle:
        for step in range(5000):
            handle.write(json.dumps({"step": step, "loss": 1.0 / (step + 1), "pad": "x" * 40}) + "\n")
        handle.write(json.dumps({"step": 5000, "eval_loss": 0.3}) + "\n")
    assert runs.last_metrics_row(path)["step"] == 4999
    assert runs.last_metrics_row(path, "eval_loss")["step"] == 5000


def _status(state: str, pid: int, age_s: float) -> RunStatus:
    updated = (NOW - timedelta(seconds=age_s)).isoformat()
    return RunStatus(state, pid, (NOW - timedelta(hours=1)).isoformat(), updated, 10, 100)


@pytest.mark.parametrize(
    "state, alive, age, expected",
    [
        ("running", False, 120, "crashed"),
        ("running", False, 3, "running"),  # heartbeat fresh: may be between beats
        ("running", True, 120, "running"),  # alive but slow: not crashed
        ("queued", False, 120, "crashed"),
        ("completed", False, 9999, "completed"),
        ("failed", False, 9999, "failed"),
        ("stopped", False, 9999, "stopped"),
    ],
)
def test_effective_state(state, alive, age, expected):
    assert runs.effective_state(_status(state, 4242, age), NOW, alive=lambda pid, after: alive) == expected


def test_pid_liveness_with_real_processes():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert runs.pid_is_alive(child.pid)
        # a pid whose process started after the heartbeat it claims is a reused pid
        assert not runs.pid_is_alive(child.pid, datetime.now(timezone.utc) - timedelta(hours=1))
    finally:
        child.kill()
        child.wait()
    assert not runs.pid_is_alive(child.pid)
    assert not runs.pid_is_alive(0)


def test_listing_flags_a_dead_run_with_a_stale_heartbeat_as_crashed(runs_home):
    store = RunStore()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = make_run(store, "llama3.1-8b", "qlora", now=NOW)
    old = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    dead.write_status(RunStatus("running", child.pid, old, old, 40, 200))
    live = make_run(store, "smollm2-135m", "lora", now=NOW + timedelta(seconds=1))
    fresh = runs.now_iso()
    live.write_status(RunStatus("running", 999_999, fresh, fresh, 5, 50))
    with live.metrics_writer() as writer:
        writer.append({"step": 5, "loss": 0.75})
    listed = {s.id: s for s in store.list_runs()}
    assert listed[dead.id].state == "crashed" and listed[dead.id].step == 40
    assert listed[live.id].state == "running" and listed[live.id].last_loss == 0.75
    assert [s.id for s in store.list_runs()] == [live.id, dead.id]  # newest first


def test_a_run_without_status_is_listed_as_unknown(runs_home):
    store = RunStore()
    run = make_run(store)
    run.status_path.write_text("{not json")
    assert store.list_runs()[0].state == "unknown"


def test_find_run_by_id_prefix_and_latest(runs_home):
    store = RunStore()
    with pytest.raises(UserError, match="no runs in"):
        store.find_run("x")
    a = make_run(store, "smollm2-135m", "lora", now=NOW)
    b = make_run(store, "qwen2.5-7b", "qlora", now=NOW + timedelta(seconds=5))
    assert store.find_run(a.id).path == a.path
    assert store.find_run("latest").path == b.path
    assert store.find_run("qwen").path == b.path
    with pytest.raises(UserError, match="matches 2 runs"):
        store.find_run("20261122")
    with pytest.raises(UserError, match="no run 'zzz'"):
        store.find_run("zzz")


_HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sft_tui.core.runs import RunDir
    lock = RunDir(Path(sys.argv[1])).lock().acquire()
    print("locked", flush=True)
    time.sleep(60)
""")


def test_lock_keeps_a_second_owner_out_and_dies_with_its_holder(runs_home):
    run = make_run(RunStore())
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=rf"owned by another process \(pid {holder.pid}\)"):
            run.lock().acquire()
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs, the kernel drops the flock
        holder.wait()
    with run.lock():
        assert run.path.joinpath(".lock").read_text() == str(__import__("os").getpid())
    with run.lock():  # released on exit, can be taken again
        pass
