"""How a run spreads over processes: one per GPU (DDP or FSDP), several CPU processes (gloo), several machines.

Nothing here starts anything: accelerate launch (torchrun underneath) does the distribution.
This module decides the topology from the run's `[distributed]` section and the machine,
refuses what cannot work in one line naming the field, and writes what accelerate reads:

- `accelerate_config(...)`: the generated accelerate config (JSON, which `accelerate launch
  --config_file` reads as well as YAML), kept in the run folder so a person can read what ran;
- `launch_argv(...)`: the `accelerate launch` command for one machine (node) of the run.

Rank 0 writes the run folder; the other ranks only train (trainer/__main__.py).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from sft_tui.core.config.gpus import ALL, gpu_count, gpu_ids
from sft_tui.core.config.schema import RunConfig
from sft_tui.core.errors import UserError

DEFAULT_PORT = 29500  # torchrun's default rendezvous port
# QLoRA under FSDP shards the 4-bit weights, which needs them stored in the compute dtype (bnb_4bit_quant_storage):
# bitsandbytes 0.43 added it (Answer.AI's FSDP+QLoRA work), peft and transformers pass it through.
QLORA_FSDP_MIN_BNB = (0, 43)


@dataclass(frozen=True)
class DistributedPlan:
    """The processes of one run on one machine, and how they share the model."""

    processes: int  # per machine: one per GPU, or the CPU processes
    device: str  # cuda | cpu
    strategy: str  # ddp | fsdp (fsdp only matters with processes > 1)
    gpu_ids: tuple[int, ...] = ()  # the GPUs asked for by index ([distributed] gpus = [0, 2]); () = any
    machines: int = 1

    @property
    def world_size(self) -> int:
        """Processes over all machines: the global batch is micro-batch x accumulation x this."""
        return self.processes * self.machines

    @property
    def distributed(self) -> bool:
        """More than one process: the run starts through accelerate launch."""
        return self.world_size > 1

    @property
    def backend(self) -> str:
        """torch.distributed's backend for this device (what accelerate picks too)."""
        return "nccl" if self.device == "cuda" else "gloo"

    def line(self) -> str:
        """One line for preflight and train.log (short: the Launch screen shows it in an 80-column pane)."""
        if not self.distributed:
            return "processes: 1 (no distribution)"
        where = f"{self.processes} GPUs" if self.device == "cuda" else f"{self.processes} CPU processes"
        nodes = f" on each of {self.machines} machines ({self.world_size})" if self.machines > 1 else ""
        how = "FSDP full shard" if self.strategy == "fsdp" else "DDP"
        return f"processes: {where}{nodes}, {how} over {self.backend} (accelerate launch)"


def bnb_version() -> tuple[int, ...] | None:
    """bitsandbytes' version as numbers, or None when it is not installed (read without importing it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("bitsandbytes")
    except PackageNotFoundError:
        return None
    return tuple(int(p) for p in text.split("+")[0].split(".")[:3] if p.isdigit())


def plan_distribution(config: RunConfig, visible_gpus: int) -> DistributedPlan:
    """The run's topology on a machine with `visible_gpus` CUDA GPUs (0: the CPU); UserError naming the field otherwise."""
    section = config.distributed
    if visible_gpus == 0:
        if section.gpus not in ("1", ALL):
            raise UserError(f"distributed.gpus = {section.gpus} but this machine has no GPU", "distributed.gpus",
                            "remove distributed.gpus, or set distributed.processes = N to train in N CPU processes (gloo)")
        processes = max(1, section.processes)  # fsdp with processes is refused when the config loads (core/config/load.py)
        if config.method.name == "qlora" and processes > 1:
            raise UserError("QLoRA's 4-bit kernels need a CUDA GPU; several CPU processes cannot train it", "method.name",
                            "use method.name = 'lora' on the CPU")
        return DistributedPlan(processes, "cpu", section.strategy)
    if section.processes > 1:
        raise UserError(f"distributed.processes = {section.processes} is for machines without a GPU; this one has {visible_gpus}",
                        "distributed.processes", "remove it and set distributed.gpus = N (one process per GPU)")
    ids = gpu_ids(section.gpus)
    count = gpu_count(section.gpus, visible_gpus)
    if count > visible_gpus:
        raise UserError(f"distributed.gpus = {section.gpus} asks for {count} GPUs; this machine has {visible_gpus}", "distributed.gpus",
                        f"set distributed.gpus to at most {visible_gpus} (or \"all\")")
    missing = [i for i in ids if i >= visible_gpus]
    if missing:
        raise UserError(f"distributed.gpus = {section.gpus}: this machine has no GPU {','.join(map(str, missing))} "
                        f"(it has 0-{visible_gpus - 1})", "distributed.gpus", "`sft-tui gpu` lists them")
    plan = DistributedPlan(count, "cuda", section.strategy, ids)
    if plan.distributed and plan.strategy == "fsdp" and config.method.name == "qlora":
        found = bnb_version()
        if found is None or found < QLORA_FSDP_MIN_BNB:
            have = ".".join(map(str, found)) if found else "not installed"
            raise UserError(f"QLoRA with FSDP needs bitsandbytes >= 0.43 (4-bit weights stored in the compute dtype); it is {have}",
                            "distributed.strategy", "pip install -U 'bitsandbytes>=0.43', or use strategy = 'ddp'")
    return plan


def mixed_precision(precision: str) -> str:
    """accelerate's mixed_precision for our resolved precision (bf16, fp16, fp32)."""
    return {"bf16": "bf16", "fp16": "fp16"}.get(precision, "no")


def accelerate_config(plan: DistributedPlan, precision: str, main_port: int = DEFAULT_PORT) -> dict:
    """The accelerate config for `plan`: what `accelerate launch --config_file` reads.

    The FSDP settings themselves go to the trainer's TrainingArguments too (fsdp_config):
    the config file names the topology and the strategy, the trainer the details.
    """
    config = {
        "compute_environment": "LOCAL_MACHINE",
        # MULTI_GPU for CPU processes too: accelerate starts them through torchrun only then (its MULTI_CPU launcher
        # needs MPI), and the trainer's use_cpu makes them CPU processes over gloo
        "distributed_type": "FSDP" if plan.strategy == "fsdp" and plan.device == "cuda" else "MULTI_GPU",
        "num_machines": plan.machines,
        "num_processes": plan.world_size,  # accelerate counts processes over all machines
        "machine_rank": 0,
        "main_process_port": main_port,
        "mixed_precision": mixed_precision(precision),
        "gpu_ids": ",".join(map(str, plan.gpu_ids)) if plan.gpu_ids else "all",
        "rdzv_backend": "static",
        "same_network": True,
        "dynamo_config": {},
        "debug": False,
    }
    if plan.strategy == "fsdp" and plan.device == "cuda":
        config["fsdp_config"] = fsdp_settings(gradient_checkpointing=False, prefixed=True)
    return config


def fsdp_settings(gradient_checkpointing: bool, prefixed: bool = False) -> dict:
    """FSDP2 full shard, wrapped per decoder layer (the model's _no_split_modules), full state dict saved at the end.

    `prefixed`: the accelerate config file's spelling (fsdp_ keys); TrainingArguments takes either.
    """
    settings = {
        "version": 2,
        "reshard_after_forward": True,  # FULL_SHARD: a layer's weights are freed after its forward
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "state_dict_type": "SHARDED_STATE_DICT",  # checkpoints: each rank writes its shard (fast, resumable)
        "cpu_ram_efficient_loading": True,  # rank 0 loads the weights, the others receive their shards
        "activation_checkpointing": gradient_checkpointing,  # FSDP's own: no redundant all-gather in backward
        "offload_params": False,
    }
    return {f"fsdp_{k}": v for k, v in settings.items()} if prefixed else settings


def launch_argv(run_path: Path, config_file: Path, plan: DistributedPlan, resume: bool, machine_rank: int = 0,
                main_address: str = "127.0.0.1", main_port: int = DEFAULT_PORT, python: str | None = None) -> list[str]:
    """`accelerate launch ... -m sft_tui.trainer RUN [--resume]` for one machine of the run."""
    argv = [python or sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
            "--num_processes", str(plan.world_size), "--num_machines", str(plan.machines),
            "--machine_rank", str(machine_rank), "--main_process_ip", main_address, "--main_process_port", str(main_port),
            "--monitor_interval", "1", "-m", "sft_tui.trainer", str(run_path)]
    return argv + (["--resume"] if resume else [])


def free_port(host: str = "") -> int:
    """A TCP port free now: two runs on one box must not both rendezvous on torchrun's default 29500."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def runs_several_processes(config: RunConfig, placed_gpus: tuple[int, ...] = ()) -> bool:
    """Whether the run starts through accelerate launch: several GPUs placed or asked for, or several CPU processes."""
    spec = config.distributed.gpus
    return len(placed_gpus) > 1 or config.distributed.processes > 1 or spec == ALL or gpu_count(spec) > 1


def shell_line(argv: list[str]) -> str:
    """A command as a person would paste it."""
    return " ".join(shlex.quote(a) for a in argv)


def processes_per_machine(config: RunConfig, gpus_per_machine: int | None) -> int:
    """Processes each machine of a multi-machine run starts: its GPUs, or the CPU processes."""
    if gpus_per_machine:
        return gpus_per_machine
    if config.distributed.processes > 0:
        return config.distributed.processes
    if config.distributed.gpus == ALL:
        raise UserError('distributed.gpus = "all" cannot say how many GPUs the other machines have', "distributed.gpus",
                        "pass --gpus-per-node N (or set distributed.gpus = N)")
    return gpu_count(config.distributed.gpus)


@dataclass(frozen=True)
class NodeLaunch:
    """What each machine of a run runs: one `accelerate launch` per machine, the same config file for all."""

    plan: DistributedPlan
    commands: tuple[tuple[str, ...], ...]  # machine rank -> argv


def node_launch(run_path: Path, config_file: Path, config: RunConfig, machines: int, address: str, port: int,
                gpus_per_machine: int | None, resume: bool, python: str | None = None) -> NodeLaunch:
    """The commands for `machines` machines; machine 0 hosts the rendezvous at address:port and holds rank 0."""
    per = processes_per_machine(config, gpus_per_machine)
    device = "cuda" if gpus_per_machine or config.distributed.processes == 0 else "cpu"
    if device == "cpu" and config.distributed.strategy == "fsdp":
        raise UserError("distributed.strategy = 'fsdp' needs GPUs: accelerate shards with FSDP on GPUs only", "distributed.strategy",
                        "use strategy = 'ddp' for CPU processes, or pass --gpus-per-node N")
    plan = DistributedPlan(per, device, config.distributed.strategy, (), machines)
    commands = tuple(tuple(launch_argv(run_path, config_file, plan, resume, rank, address, port, python)) for rank in range(machines))
    return NodeLaunch(plan, commands)


def slurm_script(run_id: str, launch: NodeLaunch, log_path: Path, workdir: Path) -> str:
    """An sbatch script: one task per node, each running accelerate launch with Slurm's node rank; node 0 is the rendezvous."""
    argv = list(launch.commands[0])
    for flag, value in (("--machine_rank", "$SLURM_NODEID"), ("--main_process_ip", "$MAIN_ADDR"), ("--num_machines", "$SLURM_NNODES")):
        argv[argv.index(flag) + 1] = value
    line = " ".join(a if a.startswith("$") else shlex.quote(a) for a in argv)
    gpus = f"#SBATCH --gpus-per-node={launch.plan.processes}\n" if launch.plan.device == "cuda" else ""
    return (f"#!/bin/bash\n"
            f"# sft-tui run {run_id}: {launch.plan.machines} machines x {launch.plan.processes} processes ({launch.plan.strategy}),\n"
            f"# started by accelerate launch on each node. Submit with: sbatch {log_path.parent / 'slurm.sbatch'}\n"
            f"#SBATCH --job-name=sft-{run_id[:40]}\n"
            f"#SBATCH --nodes={launch.plan.machines}\n"
            f"#SBATCH --ntasks-per-node=1\n"
            f"{gpus}"
            f"#SBATCH --output={log_path}\n"
            f"set -euo pipefail\n"
            f"cd {shlex.quote(str(workdir))}\n"
            f"export MAIN_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\n"
            f"# every node must see the run folder at the same path (a shared filesystem) and the model in its HF cache\n"
            f"srun --kill-on-bad-exit=1 bash -c '{line}'\n")


def optimizer_under(config: RunConfig, sharded: bool) -> tuple[str, str]:
    """(the optimizer that runs, a note or ""): under FSDP the 8-bit ones give way to AdamW (core.estimate.sharding.runs_as)."""
    from sft_tui.core.estimate.sharding import runs_as

    name = config.training.optimizer
    runs = runs_as(name, sharded)
    if runs != name:
        return runs, (f"note: training.optimizer = {name!r} runs as {runs} under FSDP: bitsandbytes' 8-bit "
                      "optimizers cannot step sharded parameters (its state is sharded over the GPUs instead)")
    return name, ""
