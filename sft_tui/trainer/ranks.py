"""Which process of a distributed run this is, and what only rank 0 may do.

torchrun (under accelerate launch) starts one trainer per GPU or CPU process and tells each
its place through RANK, LOCAL_RANK and WORLD_SIZE. Rank 0 owns the run folder: status,
metrics, log lines, summary, the saved adapter. The others train and write nothing there
(their share of a checkpoint excepted: transformers saves each rank's RNG state, and FSDP
each rank's shard).

A stop must happen at the same step on every rank, or the checkpoint's collectives hang:
`agreed_stop` takes the largest of the ranks' stop flags after every step, so a SIGTERM to
rank 0 (what `sft-tui stop` sends), to any rank, or to all of them, stops all at that step.
"""

from __future__ import annotations

import os

from sft_tui.core.runs.reporter import StatusReporter


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    """This process's rank on its machine: the index of its GPU among CUDA_VISIBLE_DEVICES."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def world_size() -> int:
    """Processes in the run over all machines (1 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def sharded(config) -> bool:
    """Whether this run shards the model with FSDP: several processes and strategy = fsdp (else DDP, or one process)."""
    return world_size() > 1 and config.distributed.strategy == "fsdp"


def writes_run_folder() -> bool:
    """Only rank 0 writes status, metrics, summary and outputs."""
    return rank() == 0


def agreed_stop(wanted: bool, device) -> bool:
    """True on every rank when any rank wants to stop (one all-reduce of one number; False everywhere otherwise)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return wanted
    flag = torch.tensor([1 if wanted else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


class FollowerReporter(StatusReporter):
    """A rank other than 0: tracks progress like rank 0's reporter, but writes no status (rank 0 owns status.json)."""

    def begin(self) -> None:
        """Nothing to start: no heartbeat from a follower."""

    def _write(self, status) -> None:  # noqa: D401 - overrides the one place StatusReporter writes
        return None


def leave_process_group() -> None:
    """Tear the process group down before the interpreter exits: otherwise gloo's threads can abort a rank at exit
    ("terminate called without an active exception", SIGABRT) after a run that completed."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - the run is over; nothing here may turn it into a failure
        pass


def peer_lost(exc: BaseException) -> bool:
    """Whether a distributed run's collective failed because another rank went away (gloo's and NCCL's words for it)."""
    if world_size() < 2:
        return False
    text = str(exc)
    return any(words in text for words in ("Connection closed by peer", "Connection reset by peer", "NCCL communicator was aborted",
                                           "remote process exited", "Broken pipe"))


def tell_the_launcher(message: str) -> None:
    """torchrun's agent reads a failed rank's error file (TORCHELASTIC_ERROR_FILE): the launcher then names the error."""
    import json
    import time
    from pathlib import Path

    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        try:
            Path(path).write_text(json.dumps({"message": message.splitlines()[0][:300] if message else "", "timestamp": int(time.time())}))
        except OSError:
            pass


def launcher_alive() -> bool:
    """Whether this rank's parent is still torchrun's agent (which reports a dead rank); False once it was killed."""
    from sft_tui.core.runs.jobs import launcher_of

    return launcher_of(os.getpid()) is not None
