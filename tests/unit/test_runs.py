"""The run store: ids, atomic status, torn metrics lines, crash detection, the lock, listing that survives a broken run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from sft_tui.core.errors import UserError
from sft_tui.core.runs import liveness, metrics
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import EvalRow, JobError, JobStatus, TrainRow, now_iso
from sft_tui.core.runs.store import RunStore, runs_home

NOW = datetime(2026, 11, 22, 3, 30, 0, tzinfo=timezone.utc)


def make_run(store: RunStore, model: str = "smollm2-135m", method: str = "lora", now: datetime = NOW) -> RunDir:
    text = f'[model]\nname = "{model}"\n[method]\nname = "{method}"\n'
    return store.create_run(text, model, method, now=now)


def test_empty_home_lists_nothing(runs_home):
    assert RunStore().list_runs() == []
    assert RunStore().home == runs_home.resolve()


def test_home_defaults_to_sft_runs_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("SFT_TUI_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert runs_home() == tmp_path.resolve() / "sft-runs"


def test_create_run_makes_a_readable_unique_id(runs_home):
    store = RunStore()
    first, second, third = (make_run(store, "Qwen/Qwen2.5-7B", "qlora") for _ in range(3))
    assert first.id == "20261122-033000-qwen2.5-7b-qlora"
    assert second.id == first.id + "-2" and third.id == first.id + "-3"
    status = first.read_status()
    assert status.state == "queued" and status.pid == 0 and status.started_at.startswith("2026-11-22T03:30:00")
    assert status.owner and status.host  # who started it, for a team on one box
    assert first.config_identity() == ("Qwen/Qwen2.5-7B", "qlora")


def test_status_is_written_atomically_and_round_trips(runs_home):
    run = make_run(RunStore())
    status = JobStatus("failed", 123, NOW.isoformat(), NOW.isoformat(), step=7, max_steps=100,
                       error=JobError("oom", "CUDA out of memory", "lower micro_batch_size"), eta_s=12.5)
    run.write_status(status)
    assert run.read_status() == status
    assert sorted(p.name for p in run.path.iterdir()) == ["config.toml", "status.json"]  # no temp files left
    data = json.loads(run.status_path.read_text())
    assert set(data) >= {"state", "pid", "started_at", "updated_at", "step", "max_steps", "error", "kind", "owner", "format"}
    assert data["error"] == {"kind": "oom", "message": "CUDA out of memory", "hint": "lower micro_batch_size"}
    with pytest.raises(ValueError):
        run.write_status(JobStatus("crashed", 1, NOW.isoformat(), NOW.isoformat()))  # derived, never written


def test_metrics_reader_waits_for_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step":1,"loss":2.0}\n{"step":2,"loss":1.5}\n{"step":3,"lo')
    chunk = metrics.read_new_rows(path, 0)
    assert [r.step for r in chunk.rows] == [1, 2]
    assert chunk.offset == len(b'{"step":1,"loss":2.0}\n{"step":2,"loss":1.5}\n')
    with path.open("ab") as handle:
        handle.write(b'ss":1.2}\nnot json\n[1]\n{"step":"x","loss":1}\n{"step":4,"loss":1.0}\n')
    chunk = metrics.read_new_rows(path, chunk.offset)
    assert [r.step for r in chunk.rows] == [3, 4]
    assert chunk.skipped_lines == 3  # not JSON, not an object, a step that is not a number
    assert metrics.read_new_rows(path, chunk.offset).rows == ()


def test_metrics_reader_restarts_when_the_file_was_replaced(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step":1,"loss":1}\n{"step":2,"loss":1}\n')
    offset = metrics.read_new_rows(path).offset
    path.write_text('{"step":9,"loss":1}\n')
    chunk = metrics.read_new_rows(path, offset)
    assert chunk.restarted and [r.step for r in chunk.rows] == [9]
    assert metrics.read_new_rows(tmp_path / "missing.jsonl", 10) == metrics.MetricsChunk((), 0)


def test_metrics_rows_are_typed_flushed_and_nan_becomes_null(runs_home):
    run = make_run(RunStore())
    run.append_metric(TrainRow(step=1, loss=float("nan"), grad_norm=float("inf")))
    run.append_metric(TrainRow(step=2, loss=0.5))
    run.append_metric(EvalRow(step=2, eval_loss=0.7))
    chunk = run.read_new_rows()
    assert [r.loss for r in chunk.train] == [None, 0.5] and [r.eval_loss for r in chunk.evals] == [0.7]
    first = json.loads(run.metrics_path.read_text().splitlines()[0])
    assert first["kind"] == "train" and first["loss"] is None and first["grad_norm"] is None


def test_last_loss_comes_from_the_tail_of_a_long_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with path.open("w") as handle:
        for step in range(5000):
            handle.write(json.dumps({"step": step, "loss": 1.0 / (step + 1), "pad": "x" * 40}) + "\n")
        handle.write(json.dumps({"step": 5000, "eval_loss": 0.3}) + "\n")
    assert metrics.last_train_row(path).step == 4999


def _status(state: str, pid: int, age_s: float) -> JobStatus:
    updated = (NOW - timedelta(seconds=age_s)).isoformat()
    return JobStatus(state, pid, (NOW - timedelta(hours=1)).isoformat(), updated, step=10, max_steps=100)


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
    assert liveness.effective_state(_status(state, 4242, age), NOW, alive=lambda pid, after: alive) == expected


def test_pid_liveness_with_real_processes():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert liveness.pid_is_alive(child.pid)
        # a pid whose process started after the heartbeat it claims is a reused pid
        assert not liveness.pid_is_alive(child.pid, datetime.now(timezone.utc) - timedelta(hours=1))
    finally:
        child.kill()
        child.wait()
    assert not liveness.pid_is_alive(child.pid)
    assert not liveness.pid_is_alive(0)


def test_listing_flags_a_dead_run_with_a_stale_heartbeat_as_crashed(runs_home):
    store = RunStore()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = make_run(store, "llama3.1-8b", "qlora", now=NOW)
    old = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    dead.write_status(JobStatus("running", child.pid, old, old, step=40, max_steps=200))
    live = make_run(store, "smollm2-135m", "lora", now=NOW + timedelta(seconds=1))
    fresh = now_iso()
    live.write_status(JobStatus("running", 999_999, fresh, fresh, step=5, max_steps=50))
    live.append_metric(TrainRow(step=5, loss=0.75))
    listed = {s.id: s for s in store.list_runs()}
    assert listed[dead.id].state == "crashed" and listed[dead.id].step == 40
    assert listed[live.id].state == "running" and listed[live.id].last_loss == 0.75
    assert [s.id for s in store.list_runs()] == [live.id, dead.id]  # newest first


@pytest.mark.parametrize("content, reason", [
    ("{not json", "status.json: not valid JSON"),
    (None, "status.json is missing"),
    ('{"state": "running", "pid": 1, "started_at": "2026-11-22T03:30:00+00:00", "updated_at": "yesterday"}',
     "status.json: field 'updated_at': not an ISO-8601 time: 'yesterday'"),
    ('{"state": "runing", "pid": 1, "started_at": "2026-11-22T03:30:00+00:00", "updated_at": "2026-11-22T03:30:00+00:00"}',
     "status.json: field 'state': unknown state 'runing'"),
    ('{"state": "running", "pid": "one", "started_at": "2026-11-22T03:30:00+00:00", "updated_at": "2026-11-22T03:30:00+00:00"}',
     "status.json: field 'pid': expected a whole number, got 'one'"),
    (b'{"state": "running\xff"}', "status.json: not UTF-8 (byte 0xff at offset 18)"),
])
def test_one_broken_run_is_listed_as_unknown_with_the_reason_and_hides_no_other(runs_home, content, reason):
    store = RunStore()
    good = make_run(store, now=NOW)
    broken = make_run(store, now=NOW + timedelta(seconds=1))
    if content is None:
        broken.status_path.unlink()
    elif isinstance(content, bytes):
        broken.status_path.write_bytes(content)
    else:
        broken.status_path.write_text(content)
    listed = {o.id: o for o in store.list_runs()}
    assert listed[broken.id].state == "unknown" and listed[broken.id].reason.startswith(reason)
    assert listed[good.id].state == "crashed" and listed[good.id].reason == ""  # queued a day ago, no process: crashed, but readable


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
    from sft_tui.core.runs.rundir import RunDir
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


def test_compare_uses_the_summary_until_a_resume_makes_it_stale(runs_home):
    from sft_tui.core.runs.compare import compare_runs, final_numbers
    from sft_tui.core.runs.schema import TrainSummary

    store = RunStore()
    run = make_run(store)
    other = make_run(store, "qwen2.5-7b", "qlora", now=NOW + timedelta(seconds=1))
    for step in (1, 2, 3):
        run.append_metric(TrainRow(step=step, loss=2.0 / step, tokens_per_s=100.0))
    run.write_summary(TrainSummary(state="stopped", steps=3, max_steps=9, final_loss=0.6667, tokens_per_s=90.0))
    assert final_numbers(run) == ["0.6667", "-", "3", "90"]
    run.mark_summary_stale()  # what a resume does first
    run.append_metric(TrainRow(step=4, loss=0.4, tokens_per_s=110.0))
    assert run.read_summary().stale
    assert final_numbers(run) == ["0.4 (live)", "-", "4 (live)", "110 (live)"]
    comparison = compare_runs([run, other])
    assert comparison.series[0][1] == (1.0, 2.0, 3.0, 4.0) and ("model.name", "smollm2-135m", "qwen2.5-7b") in comparison.rows


def test_a_checkpoint_whose_trainer_state_is_cut_is_passed_over(runs_home):
    run = make_run(RunStore())
    for step, state in ((10, '{"global_step": 10}'), (20, '{"global_step": 20}'), (30, ""), (40, '{"global_st')):
        folder = run.checkpoint_dir(step)
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(state)
    run.checkpoint_dir(50).mkdir()  # being written: no trainer state yet
    assert run.latest_checkpoint() == run.checkpoint_dir(20)


def test_a_run_whose_status_is_lost_can_still_be_resumed_but_not_without_its_config(runs_home):
    from sft_tui.core.runs.jobs import check_resumable

    run = make_run(RunStore())
    run.checkpoint_dir(10).mkdir(parents=True)
    (run.checkpoint_dir(10) / "trainer_state.json").write_text("{}")
    run.status_path.write_text("")  # damaged: nothing holds the run, so the checkpoint is still usable
    assert check_resumable(run) == run.checkpoint_dir(10)
    run.status_path.unlink()
    assert check_resumable(run) == run.checkpoint_dir(10)
    run.config_path.unlink()
    with pytest.raises(UserError) as caught:
        check_resumable(run)
    assert caught.value.where == str(run.config_path) and "config is missing" in caught.value.what


def test_preflight_works_before_the_runs_home_exists(tmp_path, monkeypatch):
    import struct

    from sft_tui.core.runs.preflight import preflight
    from sft_tui.core.runs.sysmon import SystemSampler
    from tests.unit.test_sysmon import FakeNvml

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(dict(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                       num_key_value_heads=2, intermediate_size=128, vocab_size=500)))
    (model / "tokenizer.json").write_text("{}")
    (model / "model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
    (tmp_path / "d.jsonl").write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    config = tmp_path / "run.toml"
    config.write_text('[model]\nname = "model"\n[data]\ntrain = "d.jsonl"\n')
    fresh = tmp_path / "project" / "sft-runs"  # a new project: nothing made yet
    notes = []
    resolved = preflight(config, [], False, notes.append, store=RunStore(fresh), sampler=SystemSampler(FakeNvml(fail_init="no GPU")))
    assert resolved.config.model.name == str(model) and not fresh.exists()  # checked, and nothing created by checking


def test_a_starter_killed_while_making_a_job_leaves_no_half_made_job(runs_home, monkeypatch):
    """Ctrl-C or a dropped SSH session between the folder and its status must not leave a job that never ends."""
    from sft_tui.core.runs import jobs
    from sft_tui.core.runs.rundir import JobDir

    run = make_run(RunStore())

    def killed(self, request):
        raise KeyboardInterrupt  # the starter dies here: not an OSError, so no cleanup of its own runs

    monkeypatch.setattr(JobDir, "write_request", killed)
    with pytest.raises(KeyboardInterrupt):
        jobs.start_job(run, jobs.job_request("merge", output="out"))
    assert run.jobs() == []  # nothing a listing or a wait could take for a job
    monkeypatch.undo()
    spawned = []
    monkeypatch.setattr(jobs, "_spawn", lambda target, log, extra: spawned.append(target) or 4242)
    job = jobs.start_job(run, jobs.job_request("merge", output="out"))
    assert job.name == "merge-1" and spawned == [job.path]
    assert job.read_request().kind == "merge" and job.read_status().pid == 4242
    assert [p.name for p in run.jobs_dir.iterdir() if p.name.startswith(".") and p.name != ".lock"] == []  # the leftover is gone


def test_waiting_on_a_job_folder_that_never_gets_a_status_ends_as_unknown(runs_home):
    from sft_tui.core.runs.jobs import wait_until_inactive

    run = make_run(RunStore(), now=datetime.now(timezone.utc))
    run.jobs_dir.mkdir()
    job = run.job("merge-1")
    job.path.mkdir()  # made by hand, or by an older version killed half-way
    assert wait_until_inactive(job, timeout_s=60, poll_s=0.01, missing_s=0.05) == "unknown"
    assert wait_until_inactive(run, timeout_s=0.05, poll_s=0.01) is None  # a queued run with a fresh status is still waited on
