"""`sft-tui launch-command RUN --nodes N [--slurm]`: the commands that start one run on several machines.

Nothing home-made does the distribution: each machine runs `accelerate launch` (torchrun
underneath) with the run's generated accelerate config, its machine rank, and the
rendezvous address of machine 0, which holds rank 0 and so writes the run folder. Every
machine must see the run folder at the same path (a shared filesystem) and the model in
its own Hugging Face cache or at the same folder path.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from sft_tui.cli.train import note


def _run_for(target: str, overrides: list[str], nodes: int):
    """The run to start on the machines: an existing run (not active), or a new one made from a config file."""
    from dataclasses import replace

    from sft_tui.core.errors import UserError
    from sft_tui.core.runs.liveness import effective_state
    from sft_tui.core.runs.schema import ACTIVE_STATES, now_iso
    from sft_tui.core.runs.store import RunStore

    store = RunStore()
    path = Path(target)
    if path.suffix == ".toml" and path.is_file():
        from sft_tui.core.config.load import dump_run_config
        from sft_tui.core.runs.preflight import check_home_writable, preflight

        check_home_writable(store.home)
        resolved = preflight(path, overrides, force=True, note=note, here=False)  # the machines that train judge GPUs and fit
        config = resolved.config
        text = dump_run_config(config, resolved.origins, header=f"Resolved by sft-tui from {path}; this is what the run used.")
        run = store.create_run(text, config.model.name, config.method.name, name=config.output.name)
        status = run.read_status()
        # not started here: "stopped" until rank 0 starts on machine 0 and writes "running" (a queued status with no process
        # would read as crashed within seconds)
        run.write_status(replace(status, state="stopped", updated_at=now_iso(),
                                 result=f"prepared for {nodes} machines: start it with the commands of `sft-tui launch-command {run.id} --nodes {nodes}`"))
        return run, config, False
    if overrides:
        raise UserError("--set changes a config file; an existing run keeps the config it was made with", "--set",
                        "give the config file instead of the run id")
    run = store.find_run(target)
    from sft_tui.core.config.load import config_from_toml_text

    config = config_from_toml_text(run.read_config_text(), str(run.config_path))
    status, _ = run.status_or_reason()
    if status is not None and effective_state(status) in ACTIVE_STATES:
        raise UserError(f"run {run.id} is {effective_state(status)}", fix=f"stop it first (sft-tui stop {run.id}), or give a config file for a new run")
    if status is not None and status.state == "completed":
        raise UserError(f"run {run.id} has completed", fix="give the config file to start a new run")
    return run, config, run.latest_checkpoint() is not None


def _processes_before(run) -> int:
    """How many processes a run trained in: its last accelerate.json (every multi-process start writes one), else 1."""
    try:
        return int(json.loads(run.accelerate_config_path.read_text()).get("num_processes", 1))
    except (OSError, ValueError, AttributeError):
        return 1


def launch_command(
    target: Annotated[str, typer.Argument(help="A run config TOML (makes a new run), or a run id (starts it again; resumes from its last checkpoint).")],
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Machines the run trains on.")] = 2,
    address: Annotated[Optional[str], typer.Option("--address", help="Machine 0's address the others reach (default: this machine's name).")] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Rendezvous port on machine 0.")] = 29500,
    gpus_per_node: Annotated[Optional[int], typer.Option("--gpus-per-node", min=1, help="GPUs on each machine (default: [distributed] gpus; CPU processes when it has none).")] = None,
    slurm: Annotated[bool, typer.Option("--slurm", help="Write an sbatch script for Slurm (RUN/slurm.sbatch) instead of one command per machine.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field of the config file: section.key=value (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the commands as JSON (one argv per machine).")] = False,
) -> None:
    """Print the command each machine runs to train one run across several machines (accelerate launch), or write a Slurm script."""
    import socket

    from sft_tui.core.runs.distributed import accelerate_config, node_launch, shell_line, slurm_script

    run, config, resume = _run_for(target, set_ or [], nodes)
    host = address or socket.getfqdn()
    launch = node_launch(run.path, run.accelerate_config_path, config, nodes, host, port, gpus_per_node, resume)
    world = launch.plan.world_size
    per_step = config.training.micro_batch_size * config.training.gradient_accumulation_steps
    if resume:
        before = _processes_before(run)
        if before != world:  # the checkpoint's schedule counts steps of the old global batch
            from sft_tui.core.errors import UserError

            raise UserError(f"run {run.id} trained in {before} process{'es' if before > 1 else ''} (global batch {per_step * before}); "
                            f"{nodes} machines x {launch.plan.processes} would make it {per_step * world} and change its steps mid-run",
                            "--nodes", f"give --nodes/--gpus-per-node that make {before} processes in all, or start a new run from its config")
    run.stop_request_path.unlink(missing_ok=True)  # a stop asked of its last session must not stop the next one at once
    precision = config.training.precision if config.training.precision != "auto" else ("bf16" if launch.plan.device == "cuda" else "fp32")
    run.write_accelerate_config(json.dumps(accelerate_config(launch.plan, precision, port), indent=2) + "\n")
    if slurm:
        run.slurm_script_path.write_text(slurm_script(run.id, launch, run.path / "slurm-%j.log", Path.cwd()))
        print(f"wrote {run.slurm_script_path} ({nodes} nodes x {launch.plan.processes} processes, {launch.plan.strategy})")
        print(f"  submit: sbatch {run.slurm_script_path}")
        print(f"  watch:  sft-tui watch {run.id}   (rank 0's log: {run.path}/slurm-<job id>.log)")
        return
    lines = []
    for rank, argv in enumerate(launch.commands):
        log = run.machine_log_path(rank)
        lines.append(f"setsid nohup env PYTHONUNBUFFERED=1 TQDM_DISABLE=1 {shell_line(list(argv))} >> {shell_line([str(log)])} 2>&1 < /dev/null &")
    if as_json:
        print(json.dumps({"run": run.id, "address": host, "port": port, "processes_per_machine": launch.plan.processes,
                          "commands": [list(c) for c in launch.commands],
                          "logs": [str(run.machine_log_path(r)) for r in range(nodes)]}, indent=2))
        return
    what = "GPU" if launch.plan.device == "cuda" else "CPU process"
    print(f"run {run.id}: {nodes} machines x {launch.plan.processes} {what}{'es' if what.endswith('s') and launch.plan.processes > 1 else 's' if launch.plan.processes > 1 else ''}, "
          f"{launch.plan.strategy.upper()}; machine 0 ({host}:{port}) holds rank 0 and writes the run folder"
          + ("; resumes from its last checkpoint" if resume else ""))
    print(f"global batch: micro-batch {config.training.micro_batch_size} x accumulation {config.training.gradient_accumulation_steps} "
          f"x {world} processes = {per_step * world} examples per step")
    print("every machine needs the run folder at the same path (a shared filesystem), this sft-tui, and the model")
    for rank, line in enumerate(lines):
        print(f"\n# on machine {rank}{' (first)' if rank == 0 else ''}:\n{line}")
    print(f"\nthen: sft-tui watch {run.id}   stop: sft-tui stop {run.id} (on machine 0)")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add launch-command to the main app."""
    app.command("launch-command")(launch_command)
