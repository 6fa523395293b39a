"""Runs of several processes (DDP over gloo on the CPU, through accelerate launch): the same curve as one process with the
same global batch, stop and resume on every rank at once, a rank's death named, and two "machines" on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import psutil

from sft_tui.core.runs.jobs import launch, request_stop, wait_until_inactive
from sft_tui.core.runs.store import RunStore
from tests.trainer.conftest import DEMO, FINISH_S, START_S, events, state, train_rows, wait_for

# One process of micro-batch 4 x accumulation 2 against two processes of micro-batch 4 x accumulation 1: the same 8
# examples make each step (accelerate hands process k every k-th micro-batch of the one shuffled order), and transformers
# averages the loss over the tokens of all processes. Measured here: equal to the last bit (gloo sums two fp32 numbers);
# the tolerance leaves room for another machine's summation order.
LOSS_TOLERANCE = 1e-4  # relative, per logged step
QUICK = ("training.logging_steps=1", "data.eval=", "training.save_steps=1000")


def losses(run) -> dict[int, float]:
    """Train loss per step."""
    return {r.step: r.loss for r in train_rows(run)}


def test_two_cpu_processes_give_the_curve_of_one_process_with_the_same_global_batch(make_run):
    single = make_run("training.max_steps=20", "training.micro_batch_size=4", "training.gradient_accumulation_steps=2", *QUICK)
    double = make_run("training.max_steps=20", "training.micro_batch_size=4", "training.gradient_accumulation_steps=1",
                      "distributed.processes=2", *QUICK)
    for run in (single, double):
        launch(run)
        assert wait_until_inactive(run, FINISH_S) == "completed", run.log_path.read_text()[-3000:]
    one, two = losses(single), losses(double)
    assert sorted(two) == list(range(1, 21)), "one metrics row per step, written by rank 0 alone"
    worst = max(abs(one[s] - two[s]) / one[s] for s in one)
    assert worst <= LOSS_TOLERANCE, f"largest relative difference {worst:.2e}"
    assert two[20] < two[1] * 0.8  # and it learned
    log = double.log_path.read_text()
    assert "accelerate.commands.launch" in log and "2 CPU processes (gloo)" in log
    assert json.loads(double.accelerate_config_path.read_text())["num_processes"] == 2
    summary = double.read_summary()
    assert summary.processes == 2 and summary.strategy == "ddp"
    assert (double.adapter_dir / "adapter_model.safetensors").is_file()


def test_a_distributed_run_stops_on_every_rank_at_one_step_and_resumes(make_run):
    run = make_run("training.max_steps=60", "distributed.processes=2", "training.micro_batch_size=4", *QUICK)
    launch(run)
    wait_for(lambda: (run.read_status().step or 0) >= 5, START_S, "a few steps")
    assert "SIGTERM" in request_stop(run).message  # to rank 0 alone: the ranks agree on the step after it
    assert wait_until_inactive(run, FINISH_S) == "stopped", run.log_path.read_text()[-3000:]
    stopped_at = run.read_status().step
    checkpoint = run.latest_checkpoint()
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{stopped_at}"
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}  # both ranks saved
    launch(run, resume=True)
    assert wait_until_inactive(run, FINISH_S) == "completed", run.log_path.read_text()[-3000:]
    assert [r.step for r in train_rows(run)] == list(range(1, 61)), "every step once across the resume"
    assert [e.event for e in events(run)] == ["started", "stopped", "resumed", "completed"]


def _rank_pids(run) -> list[int]:
    """The trainers of a run (one per rank), found among the supervisor's descendants."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = process.info["cmdline"] or []
        if "sft_tui.trainer" in command and str(run.path) in command:
            found.append(process.pid)
    return found


def test_a_rank_killed_by_a_signal_is_named_in_the_status(make_run):
    run = make_run("training.max_steps=400", "distributed.processes=2", "training.micro_batch_size=4", *QUICK)
    launch(run)
    wait_for(lambda: (run.read_status().step or 0) >= 3, START_S, "a few steps")
    rank0 = run.read_status().pid
    others = wait_for(lambda: [p for p in _rank_pids(run) if p != rank0], START_S, "rank 1's process")
    os.kill(others[0], signal.SIGKILL)
    wait_for(lambda: (run.read_status().error is not None and "rank 1" in run.read_status().error.message), FINISH_S,
             "the launcher to name the rank")
    status = run.read_status()
    assert status.state == "failed" and "signal 9 (SIGKILL)" in status.error.message and "resume" in status.error.hint
    assert [e.event for e in events(run)][-1] == "failed"


def _config(tmp_path, tiny_model, *lines: str):
    """The demo config as a file (absolute data paths, the tiny model), with extra TOML lines at the end."""
    text = ((DEMO / "demo.toml").read_text().replace('name = "tiny-demo-model"', f'name = "{tiny_model}"')
            .replace('train = "train.jsonl"', f'train = "{DEMO / "train.jsonl"}"').replace('eval = "eval.jsonl"', 'eval = ""'))
    path = tmp_path / "run.toml"
    path.write_text(text + "\n" + "\n".join(lines) + "\n")
    return path


def test_the_commands_launch_command_prints_for_two_machines_complete_on_one(runs_home, tiny_model, tmp_path, cli):
    config = _config(tmp_path, tiny_model)
    result = cli("launch-command", str(config), "--nodes", "2", "--address", "127.0.0.1", "--port", str(_free_port()), "--json",
                 "--set", "training.max_steps=12", "--set", "training.logging_steps=1")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    run = RunStore().find_run(plan["run"])
    assert state(run) == "stopped" and "prepared for 2 machines" in run.read_status().result
    assert plan["processes_per_machine"] == 1 and len(plan["commands"]) == 2
    assert [c[c.index("--machine_rank") + 1] for c in plan["commands"]] == ["0", "1"]
    machines = [subprocess.Popen(command, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "TQDM_DISABLE": "1"})
                for command, log in zip(plan["commands"], plan["logs"])]
    codes = [m.wait(timeout=FINISH_S) for m in machines]
    assert codes == [0, 0], run.log_path.read_text()[-3000:]
    assert state(run) == "completed" and run.read_summary().processes == 2
    assert [r.step for r in train_rows(run)] == list(range(1, 13))


def test_launch_command_writes_a_slurm_script(runs_home, tiny_model, tmp_path, cli):
    config = _config(tmp_path, tiny_model, "[distributed]", "gpus = 4", 'strategy = "fsdp"')
    result = cli("launch-command", str(config), "--nodes", "3", "--slurm")  # on a login node without GPUs
    assert result.code == 0, result.err
    run = RunStore().run_dirs()[0]
    script = run.slurm_script_path.read_text()
    assert "#SBATCH --nodes=3" in script and "#SBATCH --gpus-per-node=4" in script
    assert "--machine_rank $SLURM_NODEID" in script and "--num_processes 12" in script and "scontrol show hostnames" in script
    assert json.loads(run.accelerate_config_path.read_text())["distributed_type"] == "FSDP"


def _free_port() -> int:
    from sft_tui.core.runs.distributed import free_port

    return free_port()


assert DEMO.is_dir()


def test_launch_command_again_refuses_another_global_batch_and_clears_an_old_stop(make_run, cli):
    run = make_run("distributed.processes=2")
    run.write_accelerate_config('{"num_processes": 2}\n')  # it trained in 2 processes
    from dataclasses import replace

    run.write_status(replace(run.read_status(), state="stopped"))
    run.checkpoint_dir(5).mkdir(parents=True)
    (run.checkpoint_dir(5) / "trainer_state.json").write_text("{}")
    run.stop_request_path.write_text("x")  # its last session was stopped
    refused = cli("launch-command", run.id, "--nodes", "2", "--address", "127.0.0.1")  # 2 machines x 2 = 4 processes
    assert refused.code == 2 and "trained in 2 processes (global batch 16)" in refused.err and "would make it 32" in refused.err
    ok = cli("launch-command", run.id, "--nodes", "1", "--address", "127.0.0.1")  # 1 machine x 2 processes
    assert ok.code == 0, ok.err
    assert "resumes from its last checkpoint" in ok.out and "= 16 examples per step" in ok.out
    assert not run.stop_request_path.exists()
