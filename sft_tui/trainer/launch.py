"""`python -m sft_tui.trainer.launch RUN_DIR [--resume]`: a run of several processes, started through accelerate launch.

The supervisor (core/runs/supervise.py) starts this in place of the trainer when the run
asks for more than one process. It writes the accelerate config the run uses (the run's
accelerate.json, readable by a person and by `accelerate launch --config_file`), then runs
accelerate's own launcher in this process: torchrun's agent starts one trainer per GPU (or
CPU process), each `python -m sft_tui.trainer RUN_DIR`, and watches them.

When a rank dies, torchrun stops the others and tells this process which rank ended how;
rank 0 could only say that a peer vanished, so this process writes the run's status:
which rank, killed by which signal (or its exit code and last error), on which GPU.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from sft_tui.core.config.load import config_from_toml_text
from sft_tui.core.runs.distributed import DistributedPlan, accelerate_config, free_port, launch_argv, plan_distribution, shell_line
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, EventRow, JobError, now_iso
from sft_tui.core.runs.supervise import describe_exit


def local_plan(config) -> DistributedPlan:
    """The run's processes on this machine: the GPUs the supervisor pinned (CUDA_VISIBLE_DEVICES), or CPU processes."""
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible and os.environ.get("CUDA_VISIBLE_DEVICES"):  # pinned to the placed GPUs: all of them, in order
        return DistributedPlan(visible, "cuda", config.distributed.strategy)
    return plan_distribution(config, visible)


def failure_line(rank: int, exitcode: int, message: object, gpus: tuple[int, ...]) -> tuple[str, str, str]:
    """(kind, message, hint) for a rank torchrun reports as failed."""
    on_gpu = f" on GPU {gpus[rank]}" if rank < len(gpus) else ""
    if isinstance(message, dict):  # torch's ErrorHandler format
        message = message.get("message", "")
    if exitcode < 0:
        text, hint = describe_exit(exitcode)
        return "crash", f"rank {rank}{on_gpu}: {text}", hint
    said = str(message or "").strip()
    said = "" if said.startswith("To enable traceback") else said
    kind = "oom" if "out of memory" in said.lower() else "crash"
    hint = ("lower micro_batch_size or max_seq_length (every rank holds its own micro-batch); `sft-tui resume RUN` continues "
            "from the last checkpoint" if kind == "oom" else "see train.log for that rank's traceback; `sft-tui resume RUN` continues from the last checkpoint")
    return kind, f"rank {rank}{on_gpu} exited with code {exitcode}" + (f": {said}" if said else ""), hint


def record_rank_failure(run: RunDir, failures: dict) -> None:
    """Write which rank failed and how, unless rank 0 already reported its own error (its status is then the better one)."""
    # the cause first: a signal other than SIGTERM (torchrun SIGTERMs the survivors after the first death), then any
    # signal, then the earliest; among equals another rank than 0 (rank 0 exits 1 when it only saw a peer vanish)
    ranked = sorted(failures.items(), key=lambda item: (item[1].exitcode == -signal.SIGTERM, item[1].exitcode >= 0,
                                                        item[1].timestamp, item[0] == 0))
    rank, failure = ranked[0]
    status, _ = run.status_or_reason()
    if status is None:
        return
    if rank == 0 and failure.exitcode > 0 and status.state == "failed":
        return  # rank 0 failed and said why itself
    if status.state == "completed":  # rank 0 saved the output and wrote the summary: only the exit of a rank went wrong
        print(f"[sft-tui] note: after the run completed, {failure_line(rank, failure.exitcode, failure.message, status.gpus)[1]}", flush=True)
        return
    kind, message, hint = failure_line(rank, failure.exitcode, failure.message, status.gpus)
    if run.stop_request_path.exists():
        state, event = "stopped", EventRow(step=status.step, event="stopped", time=time.time(), message=f"stopped by request: {message}")
        error = JobError("crash", f"stopped by request: {message}", "no checkpoint at this step; resume continues from the last one")
    else:
        state, event = "failed", EventRow(step=status.step, event="failed", time=time.time(), message=f"{kind}: {message}")
        error = JobError(kind, message, hint)
    if status.state in ACTIVE_STATES or status.state == "failed":
        run.write_status(replace(status, state=state, updated_at=now_iso(), eta_s=None, error=error))
        try:
            run.append_metric(event)
        except OSError:
            pass
    print(f"[sft-tui] {message}", flush=True)


def main(argv: list[str]) -> int:
    """Write accelerate.json, run accelerate launch here, and report a rank's death; returns the exit code."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from sft_tui.trainer.model_setup import resolve_precision

    run = RunDir(Path(argv[0]).resolve())
    resume = "--resume" in argv[1:]
    config = config_from_toml_text(run.read_config_text(), str(run.config_path))
    plan = local_plan(config)
    port = free_port()
    run.write_accelerate_config(json.dumps(accelerate_config(plan, resolve_precision(config.training.precision), port), indent=2) + "\n")
    argv = launch_argv(run.path, run.accelerate_config_path, plan, resume, main_port=port)
    print(f"[sft-tui] {plan.line()}", flush=True)
    print(f"[sft-tui] $ {shell_line(argv)}", flush=True)
    args = launch_command_parser().parse_args(argv[3:])  # after `python -m accelerate.commands.launch`
    try:
        launch_command(args)
    except ChildFailedError as error:
        record_rank_failure(run, error.failures)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
