"""Runs outlive their launcher; stop leaves a resumable checkpoint; deaths and failures are reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


from sft_tui.core.launcher import launch, request_stop, wait_until_inactive
from sft_tui.core.runs import RunStore, effective_state
from tests.trainer.conftest import DEMO, metrics, run_trainer, wait_for


def _state(run) -> str:
    status = run.read_status()
    return effective_state(status) if status else "unknown"


def test_a_run_survives_its_launching_shell_being_killed(runs_home, tiny_model, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text((DEMO / "demo.toml").read_text().replace('name = "tiny-demo-model"', f'name = "{tiny_model}"')
                      .replace('train = "train.jsonl"', f'train = "{DEMO / "train.jsonl"}"').replace('eval = "eval.jsonl"', f'eval = "{DEMO / "eval.jsonl"}"'))
    # a login shell that launches the run, then hangs around like an SSH session would
    shell = subprocess.Popen(["bash", "-c", f"{sys.executable} -m sft_tui.cli train {config} --set training.max_steps=40; sleep 120"],
                             start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = RunStore()
    wait_for(lambda: bool(store.run_dirs()) and _state(store.run_dirs()[0]) == "running", 60, "the run to start")
    os.killpg(shell.pid, signal.SIGKILL)  # the terminal and everything in its session are gone
    shell.wait()
    run = store.run_dirs()[0]
    wait_for(lambda: _state(run) != "running", 180, "the run to finish")
    assert _state(run) == "completed" and run.read_status().step == 40
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()


def test_stop_saves_a_checkpoint_and_resume_continues_without_repeating_steps(make_run):
    run = make_run("training.max_steps=150", "training.logging_steps=1", "training.save_steps=1000")
    launch(run)
    wait_for(lambda: (run.read_status().step or 0) >= 12, 90, "a dozen steps")
    result = request_stop(run)
    assert not result.escalated and "SIGTERM" in result.message
    assert wait_until_inactive(run, 60) == "stopped"
    stopped_at = run.read_status().step
    checkpoint = run.latest_checkpoint()
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{stopped_at}"  # saved at exactly that step
    assert run.read_summary()["stopped"] is True and not run.adapter_dir.exists()
    launch(run, resume=True)
    assert wait_until_inactive(run, 180) == "completed"
    steps = [r["step"] for r in metrics(run) if "loss" in r]
    assert steps == sorted(set(steps)), "no step logged twice"
    assert steps[-1] == 150 and stopped_at + 1 in steps  # the curve joins up
    assert run.read_status().step == 150


def test_a_second_stop_kills_and_says_so(make_run):
    run = make_run("training.max_steps=400", "training.save_steps=1000")
    launch(run)
    wait_for(lambda: _state(run) == "running" and (run.read_status().step or 0) >= 2, 90, "the run to step")
    first = request_stop(run)
    second = request_stop(run)
    assert not first.escalated and second.escalated and "SIGKILL" in second.message
    assert wait_until_inactive(run, 60) in ("stopped",)


def test_sigkill_shows_as_crashed_with_the_signal(make_run):
    run = make_run("training.max_steps=400")
    launch(run)
    wait_for(lambda: _state(run) == "running" and (run.read_status().step or 0) >= 2, 90, "the run to step")
    os.kill(run.read_status().pid, signal.SIGKILL)  # what the host's OOM killer does
    wait_for(lambda: _state(run) == "crashed", 30, "the supervisor to record the death")
    error = run.read_status().error
    assert error.kind == "crash" and "SIGKILL" in error.message and "out-of-memory killer" in error.hint
    summary = next(s for s in RunStore().list_runs() if s.id == run.id)
    assert summary.state == "crashed"


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
    proc = subprocess.run([sys.executable, "-m", "sft_tui.cli", "demo", "--no-tui"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = RunStore().run_dirs()[0]
    summary = run.read_summary()
    assert summary["final_loss"] < 0.5 * summary["first_loss"]
    assert (run.adapter_dir / "adapter_model.safetensors").is_file() and run.summary_path.is_file()
    assert "completed; loss" in proc.stdout


def test_preflight_refuses_a_run_the_estimate_says_will_not_fit(runs_home, tiny_model, cli, monkeypatch):
    import sft_tui.core.preflight as preflight
    from sft_tui.core.estimate_fit import GpuTarget

    monkeypatch.setattr(preflight, "detected_gpu", lambda *a, **k: GpuTarget("a 0.5 GiB test GPU", 0.5, None, "detected"))
    overrides = ["--set", f"model.name={tiny_model}"]
    refused = cli("train", str(DEMO / "demo.toml"), *overrides)
    assert refused.code == 2 and refused.err.splitlines()[-1].startswith(f"error: {DEMO / 'demo.toml'}: the estimate (")
    assert "  weights" in refused.err and "peak" in refused.err  # the breakdown comes with the refusal
    assert RunStore().run_dirs() == []
    forced = cli("train", str(DEMO / "demo.toml"), *overrides, "--set", "training.max_steps=2", "--force")
    assert forced.code == 0 and "started run" in forced.out
    run = RunStore().run_dirs()[0]
    assert wait_until_inactive(run, 120) == "completed"
