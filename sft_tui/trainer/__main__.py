"""`python -m sft_tui.trainer RUN_DIR [--resume]`: the train job. Trains one run and keeps its status true.

Owns the run directory (flock) while it trains. SIGTERM asks for a clean stop (the
step finishes, a checkpoint is saved, state `stopped`). Failures end as state `failed`
with a kind a person can act on: oom (with the estimator's nearest settings that fit),
data (file:line), config, disk (what is full, how much a checkpoint takes), crash
(anything else; the traceback goes to train.log). A run folder removed mid-run stops the
trainer without re-creating it, and the home's events.log says why.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from sft_tui.core.runs.files import DiskReserve, os_error_line
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import EventRow
from sft_tui.core.runs.store import RunStore

EXIT_REMOVED = 3


def _removed(run: RunDir, pid_note: str) -> int:
    line = f"run {run.id}: its folder {run.path} was removed while it trained; the trainer stopped without saving ({pid_note})"
    print(f"[sft-tui] {line}", file=sys.stderr, flush=True)
    RunStore(run.path.parent.parent).log_event(line)
    return EXIT_REMOVED


STOP_FILE_POLL_S = 2.0


def _watch_stop_file(run: RunDir, stop: threading.Event) -> None:
    """A teammate's `sft-tui stop --force` cannot signal this process (it runs as another user): it writes the run's stop
    file instead, which this thread turns into the same clean stop as SIGTERM."""

    def watch() -> None:
        while not stop.wait(STOP_FILE_POLL_S):
            if run.stop_request_path.exists():
                print("[sft-tui] stop requested through the run's stop file", flush=True)
                stop.set()

    threading.Thread(target=watch, name="stop-file", daemon=True).start()


def _follow(run: RunDir, resume: bool, stop: threading.Event, rank: int) -> int:
    """A rank other than 0 of a distributed run: train, write nothing in the run folder, say what failed in the log."""
    from sft_tui.trainer.ranks import FollowerReporter, tell_the_launcher
    from sft_tui.trainer.train import run_training

    from sft_tui.trainer.ranks import leave_process_group

    try:
        run_training(run, resume=resume, stop=stop, reporter=FollowerReporter(run, "train"))
        leave_process_group()
    except BaseException as exc:  # noqa: BLE001 - the launcher reports this rank's exit; the log says why
        print(f"[sft-tui] rank {rank}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        traceback.print_exc()
        tell_the_launcher(f"{type(exc).__name__}: {exc}")
        return 1
    return 0


def main(argv: list[str]) -> int:
    """Entry point; returns the process exit code (0: completed or stopped)."""
    import os

    from sft_tui.trainer.noise import quiet_known_noise
    from sft_tui.trainer.ranks import launcher_alive, peer_lost, rank, tell_the_launcher

    quiet_known_noise()

    run = RunDir(Path(argv[0]).resolve())
    resume = "--resume" in argv[1:]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if rank() != 0:
        return _follow(run, resume, stop, rank())
    from sft_tui.core.runs.reporter import StatusReporter
    from sft_tui.trainer.failures import RunDirRemoved, classify_failure

    _watch_stop_file(run, stop)
    reserve = DiskReserve(run.reserve_path)
    try:
        lock = run.lock().acquire()
    except OSError as exc:  # a read-only or vanished run dir: nothing can be recorded there
        line = os_error_line(exc, str(run.path))
        print(f"error: {line.line() if line else exc}", file=sys.stderr, flush=True)
        return 2
    try:
        if not reserve.take():
            print("[sft-tui] note: not even a small reserve fits on this disk; a full disk may leave a stale status", flush=True)
        reporter = StatusReporter(run, "train", reserve)
        reporter.begin()
        try:
            from sft_tui.trainer.train import run_training

            summary = run_training(run, resume=resume, stop=stop, reporter=reporter)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach status.json
            if isinstance(exc, RunDirRemoved) or reporter.folder_removed():
                return _removed(run, f"pid {os.getpid()}")
            if peer_lost(exc) and launcher_alive():  # another rank died first: the launcher names it (rank, signal)
                reporter.stop_beating()
                print(f"[sft-tui] rank 0: lost a peer rank ({type(exc).__name__}); the launcher reports which and why", flush=True)
                tell_the_launcher(f"lost a peer rank: {exc}")
                return 1
            error = classify_failure(run, exc, reporter.step)
            if error.kind == "disk":
                reserve.release()  # room for the status, the event and these last log lines
            reporter.finish("failed", error)
            try:
                run.append_metric(EventRow(step=reporter.step, event="failed", time=time.time(), message=f"{error.kind}: {error.message}"))
            except OSError:
                pass
            if error.kind == "crash":
                traceback.print_exc()
            else:
                print(f"[sft-tui] {type(exc).__name__}: {exc}", flush=True)
            print(f"run {run.id}: failed ({error.kind}: {error.message}; {error.hint})", flush=True)
            return 1
        from sft_tui.trainer.train import loss_line

        reporter.finish(summary.state, result=loss_line(summary), output=summary.output)
        from sft_tui.trainer.ranks import leave_process_group

        leave_process_group()
        print(f"run {run.id}: {summary.state} at step {summary.steps}", flush=True)
        return 0
    finally:
        reserve.release()
        lock.release()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
