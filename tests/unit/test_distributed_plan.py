"""[distributed]: the gpus spellings, the topology a machine gets, the one-line refusals, and what accelerate launch is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from sft_tui.core.config.gpus import gpu_count, gpu_ids
from sft_tui.core.config.load import resolve_layers
from sft_tui.core.errors import UserError
from sft_tui.core.runs.distributed import (accelerate_config, launch_argv, node_launch, plan_distribution, runs_several_processes,
                                           slurm_script)


def config(**distributed):
    data = {"model": {"name": "m"}, "data": {"train": "t.jsonl"}, "distributed": distributed}
    return resolve_layers(data, None, "run.toml", Path(".")).config


@pytest.mark.parametrize("given, spec, count, ids", [(2, "2", 2, ()), ("all", "all", 8, ()), ([0, 2], "[0, 2]", 2, (0, 2)),
                                                      ([3], "[3]", 1, (3,)), ("1,3", "[1, 3]", 2, (1, 3))])
def test_gpus_takes_a_count_all_or_indices(given, spec, count, ids):
    section = config(gpus=given).distributed
    assert section.gpus == spec and gpu_count(spec, 8) == count and gpu_ids(spec) == ids


@pytest.mark.parametrize("given", [0, [], "two", True, [-1], [0, 0]])
def test_a_bad_gpus_value_is_one_line_naming_the_field(given):
    with pytest.raises(UserError, match="distributed.gpus must be a GPU count"):
        config(gpus=given)


def test_one_process_per_gpu_and_the_refusals_name_the_field():
    plan = plan_distribution(config(gpus=4, strategy="fsdp"), visible_gpus=8)
    assert (plan.processes, plan.device, plan.strategy, plan.world_size, plan.backend) == (4, "cuda", "fsdp", 4, "nccl")
    assert plan_distribution(config(gpus="all"), 8).processes == 8
    assert plan_distribution(config(gpus=[1, 5]), 8).gpu_ids == (1, 5)
    for kwargs, visible, where in (({"gpus": 4}, 2, "distributed.gpus"), ({"gpus": [0, 9]}, 4, "distributed.gpus"),
                                   ({"gpus": 2}, 0, "distributed.gpus"), ({"processes": 2}, 4, "distributed.processes")):
        with pytest.raises(UserError) as caught:
            plan_distribution(config(**kwargs), visible)
        assert caught.value.where == where


def test_fsdp_over_cpu_processes_is_refused_when_the_config_loads():
    with pytest.raises(UserError, match="distributed.strategy = 'fsdp' shards over GPUs"):
        config(processes=2, strategy="fsdp")


def test_cpu_processes_run_ddp_over_gloo():
    plan = plan_distribution(config(processes=3), visible_gpus=0)
    assert (plan.processes, plan.device, plan.backend, plan.distributed) == (3, "cpu", "gloo", True)
    assert not plan_distribution(config(), 0).distributed and not plan_distribution(config(), 4).distributed
    assert runs_several_processes(config(processes=2)) and runs_several_processes(config(), placed_gpus=(0, 1))
    assert not runs_several_processes(config())


def test_the_accelerate_config_and_command():
    plan = plan_distribution(config(gpus=[2, 3], strategy="fsdp"), visible_gpus=4)
    generated = accelerate_config(plan, "bf16", main_port=29600)
    assert generated["distributed_type"] == "FSDP" and generated["num_processes"] == 2 and generated["gpu_ids"] == "2,3"
    assert generated["mixed_precision"] == "bf16" and generated["fsdp_config"]["fsdp_reshard_after_forward"] is True
    # CPU processes go through torchrun too: accelerate's MULTI_CPU launcher would need MPI
    assert accelerate_config(plan_distribution(config(processes=2), 0), "fp32")["distributed_type"] == "MULTI_GPU"
    argv = launch_argv(Path("/runs/r"), Path("/runs/r/accelerate.json"), plan, resume=True, main_port=29600)
    assert argv[1:3] == ["-m", "accelerate.commands.launch"] and argv[-4:] == ["-m", "sft_tui.trainer", "/runs/r", "--resume"]


def test_several_machines_one_command_each_and_a_slurm_script():
    launch = node_launch(Path("/shared/runs/r"), Path("/shared/runs/r/accelerate.json"), config(gpus=8, strategy="fsdp"), 2,
                         "node0", 29500, None, resume=False, python="/venv/bin/python")
    assert launch.plan.world_size == 16
    ranks = [(c[c.index("--machine_rank") + 1], c[c.index("--main_process_ip") + 1], c[c.index("--num_processes") + 1]) for c in launch.commands]
    assert ranks == [("0", "node0", "16"), ("1", "node0", "16")]
    script = slurm_script("r", launch, Path("/shared/runs/r/slurm-%j.log"), Path("/work"))
    assert "#SBATCH --nodes=2" in script and "#SBATCH --gpus-per-node=8" in script and "--machine_rank $SLURM_NODEID" in script
    with pytest.raises(UserError, match="--gpus-per-node"):
        node_launch(Path("/r"), Path("/r/a.json"), config(gpus="all"), 2, "h", 1, None, resume=False)


def test_eight_bit_optimizers_give_way_to_adamw_under_fsdp_only():
    from dataclasses import replace

    from sft_tui.core.runs.distributed import optimizer_under

    paged = config(strategy="fsdp")
    paged = replace(paged, training=replace(paged.training, optimizer="paged_adamw_8bit"))
    assert optimizer_under(paged, sharded=True)[0] == "adamw_torch" and "bitsandbytes" in optimizer_under(paged, True)[1]
    assert optimizer_under(paged, sharded=False) == ("paged_adamw_8bit", "")
    assert optimizer_under(config(), sharded=True) == ("adamw_torch", "")


def test_the_launcher_names_the_rank_that_died_first_not_the_one_that_saw_it_vanish(tmp_path):
    from types import SimpleNamespace

    from sft_tui.core.runs.rundir import RunDir
    from sft_tui.core.runs.schema import JobError, JobStatus, now_iso
    from sft_tui.trainer.launch import record_rank_failure

    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    stamp = now_iso()
    run.write_status(JobStatus("running", 1, stamp, stamp, step=7, gpus=(2, 3)))
    failures = {0: SimpleNamespace(exitcode=1, timestamp=10, message="lost a peer rank"),
                1: SimpleNamespace(exitcode=-9, timestamp=11, message="")}
    record_rank_failure(run, failures)
    status = run.read_status()
    assert status.state == "failed" and status.error.message == "rank 1 on GPU 3: trainer killed by signal 9 (SIGKILL)"
    # rank 0 failing with its own classified error (an OOM) keeps what it wrote
    run.write_status(JobStatus("failed", 1, stamp, stamp, error=JobError("oom", "CUDA out of memory at step 7", "lower it")))
    record_rank_failure(run, {0: SimpleNamespace(exitcode=1, timestamp=1, message="")})
    assert run.read_status().error.kind == "oom"
    # another rank's error, as its error file said it
    run.write_status(JobStatus("running", 1, stamp, stamp))
    record_rank_failure(run, {1: SimpleNamespace(exitcode=1, timestamp=1, message="OutOfMemoryError: CUDA out of memory")})
    assert run.read_status().error.kind == "oom" and "rank 1 exited with code 1" in run.read_status().error.message


def test_a_killed_rank_0_is_named_not_the_rank_torchrun_stopped_after_it(tmp_path):
    from types import SimpleNamespace

    from sft_tui.core.runs.rundir import RunDir
    from sft_tui.core.runs.schema import JobStatus, now_iso
    from sft_tui.trainer.launch import record_rank_failure

    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    stamp = now_iso()
    run.write_status(JobStatus("running", 1, stamp, stamp, step=3))
    record_rank_failure(run, {0: SimpleNamespace(exitcode=-9, timestamp=10, message=""),
                              1: SimpleNamespace(exitcode=-15, timestamp=10, message="")})
    assert run.read_status().error.message == "rank 0: trainer killed by signal 9 (SIGKILL)"


def test_a_second_stop_finds_the_other_ranks_beside_rank_0():
    import subprocess
    import sys
    import time

    import psutil

    from sft_tui.core.runs.jobs import _other_ranks

    # a stand-in launcher (its command line names sft_tui.trainer.launch) with two "ranks" under it
    child = "import time; time.sleep(60)"
    script = (f"import subprocess, sys, time; ps = [subprocess.Popen([sys.executable, '-c', {child!r}, 'sft_tui.trainer', 'RUN']) "
              "for _ in range(2)]; time.sleep(60)")
    launcher = subprocess.Popen([sys.executable, "-c", script, "sft_tui.trainer.launch"])
    try:
        deadline = time.monotonic() + 60
        while len(psutil.Process(launcher.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        rank0, rank1 = sorted(c.pid for c in psutil.Process(launcher.pid).children())
        assert _other_ranks(rank0) == [rank1]
        assert _other_ranks(launcher.pid) == []  # its parent is this test, no launcher
    finally:
        for process in psutil.Process(launcher.pid).children():
            process.kill()
        launcher.kill()
        launcher.wait()
