"""`python -m sft_tui.core.runs.supervise TARGET [--resume]`: start a job's process, record how it ended.

TARGET is a run dir (the train job: `python -m sft_tui.trainer RUN`) or a job dir holding
request.json (eval, merge, chat: `python -m sft_tui.trainer.job JOB`). The launcher starts
this process in a new session, so a closed terminal or SSH hang-up reaches neither it nor
the job. It imports only the standard library and core: it must start fast and must not
die of what kills the job. A job that ends normally writes its own final status; one that
dies without a word (SIGKILL from the host's out-of-memory killer, a segfault, an exit from
native code) leaves an active status behind, and this process turns it into failed/crash
with the signal or exit code, and adds an event row to the run's metrics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from sft_tui.core.runs.rundir import JobDir, RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, EventRow, JobError, now_iso

_HINTS = {
    "SIGKILL": "SIGKILL often comes from the host's out-of-memory killer (see `dmesg`): lower micro_batch_size or "
               "max_seq_length, or free host RAM; `sft-tui resume RUN` continues from the last checkpoint",
    "SIGSEGV": "the process crashed in native code; see the log, and try another torch/bitsandbytes build",
}


def describe_exit(code: int, what: str = "trainer") -> tuple[str, str]:
    """(message, hint) for a child's return code (negative: killed by that signal). Only training has checkpoints to resume."""
    if code < 0:
        name = signal.Signals(-code).name
        message = f"{what} killed by signal {-code} ({name})"
        if what != "trainer":
            cause = "often the host's out-of-memory killer (see `dmesg`); " if name == "SIGKILL" else ""
            return message, f"{cause}see the job's log, then start the {what.split()[0]} again"
        return message, _HINTS.get(name, "see the log; `sft-tui resume RUN` continues from the last checkpoint")
    return f"{what} exited with code {code} without reporting an error", "see the log"


def child_command(target: Path, resume: bool) -> tuple[list[str], RunDir | JobDir]:
    """The job process to start for TARGET, and the folder whose status it keeps.

    A run of several processes (GPUs or CPU processes, [distributed]) starts through
    trainer.launch, which runs accelerate launch; any other run starts the trainer itself.
    """
    if (target / "request.json").is_file():
        return [sys.executable, "-m", "sft_tui.trainer.job", str(target)], JobDir(target)
    run = RunDir(target)
    module = "sft_tui.trainer.launch" if _several_processes(run) else "sft_tui.trainer"
    return [sys.executable, "-m", module, str(target)] + (["--resume"] if resume else []), run


def _several_processes(run: RunDir) -> bool:
    from sft_tui.core.config.load import config_from_toml_text
    from sft_tui.core.errors import UserError
    from sft_tui.core.runs.distributed import runs_several_processes

    try:
        config = config_from_toml_text(run.read_config_text(), str(run.config_path))
    except (OSError, UnicodeDecodeError, UserError):
        return False  # the trainer itself reports a missing or broken config, in one line
    placement = run.read_placement()
    return runs_several_processes(config, placement.gpus if placement is not None else ())


def record_death(folder: RunDir | JobDir, child_pid: int, code: int) -> None:
    """Close an active status the dead child left behind (only one this supervisor or its child wrote)."""
    status, _ = folder.status_or_reason()
    # a resumed run may already have a new supervisor while this child was still exiting: not ours to close
    if status is None or status.pid not in (child_pid, os.getpid()) or status.state not in ACTIVE_STATES:
        return
    what = "trainer" if isinstance(folder, RunDir) else f"{folder.kind} job"
    message, hint = describe_exit(code, what)
    run = folder if isinstance(folder, RunDir) else folder.run
    if isinstance(folder, RunDir) and folder.stop_request_path.exists():
        folder.write_status(replace(status, state="stopped", updated_at=now_iso(), eta_s=None,
                                    error=JobError("crash", f"stopped by request: {message}", "no checkpoint at this step; resume continues from the last one")))
        event = EventRow(step=status.step, event="stopped", time=time.time(), message=message)
    else:
        folder.write_status(replace(status, state="failed", updated_at=now_iso(), eta_s=None, error=JobError("crash", message, hint)))
        if isinstance(folder, RunDir):
            event = EventRow(step=status.step, event="failed", time=time.time(), message=f"crash: {message}")
        else:
            event = EventRow(step=0, event="job_ended", time=time.time(), job=folder.name, message=f"{folder.kind} crashed: {message}")
    try:
        run.append_metric(event)
    except OSError:
        pass


def _wait_recording(run: RunDir, child: subprocess.Popen) -> int:
    """Wait for the trainer, appending GPU/host samples to the run's metrics meanwhile (core.runs.system_samples)."""
    from sft_tui.core.runs.system_samples import SystemRecorder, record_while

    def alive(timeout: float) -> bool:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return True
        return False

    recorder = SystemRecorder(run, child.pid)
    try:
        record_while(alive, recorder)
    finally:
        recorder.close()
    return child.wait()


def _job_gpu(job: JobDir) -> dict[str, str]:
    """An eval, merge or chat job goes to the GPU with the most room now (not always GPU 0), recorded in its status."""
    from sft_tui.core.runs.placement import roomiest
    from sft_tui.core.runs.queue import rooms_now
    from sft_tui.core.runs.store import RunStore

    best = roomiest(rooms_now(RunStore(job.run.path.parent.parent)))
    if best is None:  # no GPU here
        return {}
    status, _ = job.status_or_reason()
    if status is not None:
        job.write_status(replace(status, gpus=(best.index,), updated_at=now_iso()))
    print(f"[sft-tui] {best.describe()}: the most room on this box", flush=True)
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": str(best.index)}


def _left_queue(run: RunDir) -> None:
    """The waiter ends without starting the run: cancelled (the status says so already), or told to end (SIGTERM).

    A SIGTERM is what every process gets when the machine shuts down or its user logs out:
    the run stays queued, and the owner's next sft-tui starts a new waiter for it
    (`sft-tui queue cancel` is how a person takes a run out of the queue).
    """
    status, _ = run.status_or_reason()
    if status is not None and status.state == "queued":
        print("[sft-tui] the waiting process was told to end; the run stays queued (the next sft-tui starts a new waiter)", flush=True)
    else:
        print("[sft-tui] left the queue before starting", flush=True)


def _admit_next(run: RunDir) -> None:
    """A finished run leaves room: start the queued runs that fit now (their own waiters would, within seconds)."""
    from sft_tui.core.runs.queue import admit_with_sampler
    from sft_tui.core.runs.store import RunStore

    try:
        admit_with_sampler(RunStore(run.path.parent.parent))
    except Exception as exc:  # noqa: BLE001 - the run has ended; the waiters keep the queue moving anyway
        print(f"[sft-tui] queue: could not start the next run: {exc}", flush=True)


def main(argv: list[str]) -> int:
    """Wait for a GPU if the run is queued, run the job to its end, and make sure its status says how it ended."""
    import threading

    from sft_tui.core.runs.queue import placement_env, wait_for_admission

    target = Path(argv[0]).resolve()
    command, folder = child_command(target, "--resume" in argv[1:])
    child: subprocess.Popen | None = None
    ended = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        if child is None:
            ended.set()  # still waiting in the queue: stop waiting
        else:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    env = None
    if isinstance(folder, RunDir):
        placement = folder.read_placement()
        if placement is not None and placement.queued and not placement.admitted_at:
            placement = wait_for_admission(folder, ended.wait)
            if placement is None:
                _left_queue(folder)
                return 0
        pinned = placement_env(placement)
    else:
        pinned = _job_gpu(folder)
    if pinned:
        print(f"[sft-tui] pinned to GPU {pinned['CUDA_VISIBLE_DEVICES']} (CUDA_VISIBLE_DEVICES)", flush=True)
        env = {**os.environ, **pinned}
    child = subprocess.Popen(command, env=env)
    if isinstance(folder, RunDir):
        code = _wait_recording(folder, child)
    else:
        code = child.wait()
    if folder.path.is_dir():
        try:
            record_death(folder, child.pid, code)
        except OSError as exc:  # a full or read-only disk: say so in the log, the only place left
            print(f"[sft-tui] supervisor could not record the end of pid {child.pid} (code {code}): {exc}", flush=True)
        if isinstance(folder, RunDir):
            _admit_next(folder)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
