"""Runs outlive their launcher; stop and SIGKILL leave a resumable run whose curve and counters carry on; failures are reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from sft_tui.core.runs.jobs import launch, request_stop, wait_until_inactive
from sft_tui.core.runs.store import RunStore
from tests.trainer.conftest import DEMO, FINISH_S, START_S, events, run_trainer, state, train_rows, wait_for


def test_a_run_survives_its_launching_shell_being_killed(runs_home, tiny_model, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text((DEMO / "demo.toml").read_text().replace('name = "tiny-demo-model"', f'name = "{tiny_model}"')
                      .replace('train = "train.jsonl"', f'train = "{DEMO / "train.jsonl"}"').replace('eval = "eval.jsonl"', f'eval = "{DEMO / "eval.jsonl"}"'))
    # a login shell that launches the run, then hangs around like an SSH session would
    shell = subprocess.Popen(["bash", "-c", f"{sys.executable} -m sft_tui.cli train {config} --set training.max_steps=40; sleep 600"],
                             start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = RunStore()
    wait_for(lambda: bool(store.run_dirs()) and state(store.run_dirs()[0]) == "running", START_S, "the run to start")
    os.killpg(shell.pid, signal.SIGKILL)  # the terminal and everything in its session are gone
    shell.wait()
    run = store.run_dirs()[0]
    wait_for(lambda: state(run) != "running", FINISH_S, "the run to finish")
    assert state(run) == "completed" and run.read_status().step == 40
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert run.read_status().result.startswith("loss ") and run.read_status().output == str(run.adapter_dir)


def test_stop_saves_a_checkpoint_and_resume_continues_the_curve_and_the_counters(make_run):
    run = make_run("training.max_steps=150", "training.logging_steps=1", "training.save_steps=1000")
    launch(run)
    wait_for(lambda: (run.read_status().step or 0) >= 12, START_S, "a dozen steps")
    result = request_stop(run)
    assert not result.escalated and "SIGTERM" in result.message
    assert wait_until_inactive(run, FINISH_S) == "stopped"
    stopped_at = run.read_status().step
    checkpoint = run.latest_checkpoint()
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{stopped_at}"  # saved at exactly that step
    first = run.read_summary()
    assert first.state == "stopped" and not first.stale and not run.adapter_dir.exists()
    before = {r.step: r for r in train_rows(run)}
    launch(run, resume=True)
    # the resumed trainer keeps the step it starts from (never "step 0/?") and marks the old summary stale
    wait_for(lambda: state(run) == "running" and run.read_summary().stale, START_S, "the resume to start")
    assert run.read_status().step >= stopped_at and run.read_status().max_steps == 150
    assert wait_until_inactive(run, FINISH_S) == "completed"
    rows = train_rows(run)
    steps = [r.step for r in rows]
    assert steps == list(range(1, 151)), "every step once: no gap, no repeat"
    samples = run.read_new_rows().system  # the supervisors sampled the trainer all along, both sessions
    assert samples and all(r.process_rss_gib and r.process_rss_gib > 0 for r in samples) and samples[-1].step >= stopped_at
    assert rows[stopped_at].learning_rate < before[stopped_at].learning_rate  # the schedule goes on, no new warm-up
    tokens = [r.tokens for r in rows]
    assert tokens == sorted(tokens) and tokens[stopped_at] > before[stopped_at].tokens  # counted across the resume
    walls = [r.wall_s for r in rows]
    assert walls[stopped_at] >= before[stopped_at].wall_s
    summary = run.read_summary()
    assert not summary.stale and summary.resumes == 1 and summary.tokens == tokens[-1] and summary.wall_time_s >= walls[stopped_at]
    assert [e.event for e in events(run)] == ["started", "stopped", "resumed", "completed"]
    assert run.read_status().step == 150


def test_sigkill_then_resume_keeps_every_row_to_the_checkpoint_and_appends_to_the_live_file(make_run):
    run = make_run("training.max_steps=300", "training.logging_steps=1", "training.save_steps=10", "training.save_total_limit=2")
    launch(run)
    wait_for(lambda: run.latest_checkpoint() is not None and any(r.step > run.checkpoint_step(run.latest_checkpoint()) + 2
                                                                  for r in train_rows(run)), START_S, "rows past a checkpoint")
    os.kill(run.read_status().pid, signal.SIGKILL)  # no checkpoint at this step, rows after the last one on disk
    wait_for(lambda: state(run) == "crashed", START_S, "the supervisor to record the death")
    killed = {r.step: r for r in train_rows(run)}
    launch(run, resume=True)
    checkpoint = run.checkpoint_step(run.latest_checkpoint())
    assert max(killed) > checkpoint + 2
    wait_for(lambda: state(run) == "running", START_S, "the resume to start")
    trainer = run.read_status().pid
    wait_for(lambda: max((r.step for r in train_rows(run)), default=0) > checkpoint + 2, START_S, "new rows after the checkpoint")
    fds = [os.readlink(f"/proc/{trainer}/fd/{fd}") for fd in os.listdir(f"/proc/{trainer}/fd")] if os.path.isdir(f"/proc/{trainer}") else []
    assert not any(path.endswith("(deleted)") and "metrics" in path for path in fds)
    assert wait_until_inactive(run, FINISH_S) == "completed"
    rows = {r.step: r for r in train_rows(run)}
    assert sorted(rows) == list(range(1, 301)) and len(train_rows(run)) == 300  # no gap, no repeat
    for step in range(1, checkpoint + 1):  # kept as they were
        assert rows[step] == killed[step]
    for step in range(checkpoint + 1, max(killed) + 1):  # run again from the checkpoint: the same schedule and data
        assert rows[step].learning_rate == killed[step].learning_rate and rows[step].tokens == killed[step].tokens
    overview = next(o for o in RunStore().list_runs() if o.id == run.id)
    assert overview.state == "completed" and overview.last_loss == rows[300].loss


def test_a_second_stop_kills_and_says_so(make_run):
    run = make_run("training.max_steps=4000", "training.save_steps=1000")
    launch(run)
    wait_for(lambda: state(run) == "running" and (run.read_status().step or 0) >= 2, START_S, "the run to step")
    first = request_stop(run)
    second = request_stop(run)
    assert not first.escalated and second.escalated and "SIGKILL" in second.message
    assert wait_until_inactive(run, FINISH_S) == "stopped"


def test_sigkill_shows_as_crashed_with_the_signal(make_run):
    run = make_run("training.max_steps=4000")
    launch(run)
    wait_for(lambda: state(run) == "running" and (run.read_status().step or 0) >= 2, START_S, "the run to step")
    os.kill(run.read_status().pid, signal.SIGKILL)  # what the host's OOM killer does
    wait_for(lambda: state(run) == "crashed", START_S, "the supervisor to record the death")
    error = run.read_status().error
    assert error.kind == "crash" and "SIGKILL" in error.message and "out-of-memory killer" in error.hint
    overview = next(s for s in RunStore().list_runs() if s.id == run.id)
    assert overview.state == "crashed"
    assert events(run)[-1].event == "failed" and "SIGKILL" in events(run)[-1].message


def test_out_of_memory_fails_with_a_hint(make_run):
    run = make_run("training.max_steps=20")
    proc = run_trainer(run, env={"SFT_TUI_INJECT_OOM_AT_STEP": "3"})
    assert proc.returncode == 1
    status = run.read_status()
    assert status.state == "failed" and status.error.kind == "oom"
    assert "out of memory at step 3" in status.error.message
    assert "micro_batch_size" in status.error.hint


def test_bad_data_found_in_the_trainer_fails_as_data_with_the_line(make_run, tmp_path):
    data = tmp_path / "late.jsonl"
    good = json.dumps({"instruction": "a", "output": "b"})
    data.write_text("\n".join([good] * 4 + ['{"instruction": "a", "output": 7}', good]) + "\n")
    run = make_run(f"data.train={data}")  # written past pre-flight, as if the file changed after launch
    proc = run_trainer(run)
    assert proc.returncode == 1
    error = run.read_status().error
    assert error.kind == "data" and f"{data}:5" in error.message and "'output' must be a string" in error.message


def test_preflight_refuses_bad_data_and_missing_weights_in_one_line(runs_home, tiny_model, tmp_path, cli):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n" + "{oops\n")
    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nname = "{tiny_model}"\n[data]\ntrain = "{data}"\n')
    result = cli("train", str(config))
    assert result.code == 2 and result.err.splitlines()[-1].startswith(f"error: {data}:2: not valid JSON")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    result = cli("train", str(config), "--set", f"model.name={empty}", "--set", f"data.train={DEMO / 'train.jsonl'}")
    assert result.code == 2 and "no weights in this folder" in result.err.splitlines()[-1]
    assert RunStore().run_dirs() == []  # nothing was created


def test_demo_runs_to_a_falling_loss(runs_home):
    proc = subprocess.run([sys.executable, "-m", "sft_tui.cli", "demo", "--no-tui"], capture_output=True, text=True, timeout=FINISH_S)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = RunStore().run_dirs()[0]
    summary = run.read_summary()
    assert summary.final_loss < 0.5 * summary.first_loss
    assert (run.adapter_dir / "adapter_model.safetensors").is_file() and run.summary_path.is_file()
    assert "completed; loss" in proc.stdout


def test_preflight_refuses_a_run_the_estimate_says_will_not_fit(runs_home, tiny_model, cli, monkeypatch):
    import sft_tui.core.runs.preflight as preflight
    from sft_tui.core.estimate.fit import GpuTarget

    monkeypatch.setattr(preflight, "detected_gpus", lambda *a, **k: (GpuTarget("a 0.5 GiB test GPU", 0.5, None, "detected"),))
    overrides = ["--set", f"model.name={tiny_model}"]
    refused = cli("train", str(DEMO / "demo.toml"), *overrides)
    assert refused.code == 2 and refused.err.splitlines()[-1].startswith(f"error: {DEMO / 'demo.toml'}: the estimate (")
    assert "  weights" in refused.err and "peak" in refused.err  # the breakdown comes with the refusal
    assert RunStore().run_dirs() == []
    forced = cli("train", str(DEMO / "demo.toml"), *overrides, "--set", "training.max_steps=2", "--force")
    assert forced.code == 0 and "started run" in forced.out
    run = RunStore().run_dirs()[0]
    assert wait_until_inactive(run, FINISH_S) == "completed"
