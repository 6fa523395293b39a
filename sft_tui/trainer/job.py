"""`python -m sft_tui.trainer.job JOB_DIR`: run one eval, merge or chat job of a finished run.

Started by core.runs.jobs under the supervisor, detached from the terminal. Reads the
job's request.json, keeps its status.json true (phase, progress, heartbeat), and ends it
completed (with a one-line result and what it wrote), stopped (SIGTERM) or failed with a
kind a person can act on. Each start and end is also an event row in the run's metrics.
"""

from __future__ import annotations

import signal
import sys
import time
import traceback
from pathlib import Path

from sft_tui.core.runs.codec import SchemaError
from sft_tui.core.runs.files import DiskReserve
from sft_tui.core.runs.reporter import StatusReporter
from sft_tui.core.runs.rundir import JobDir, RunDir
from sft_tui.core.runs.schema import EventRow, JobRequest


class JobStopped(Exception):
    """SIGTERM: end the job as stopped."""


def _raise_stopped(*_: object) -> None:
    raise JobStopped()


def run_eval(run: RunDir, request: JobRequest, reporter: StatusReporter) -> tuple[str, str]:
    """Base against tuned; the result line is the report's headline."""
    from sft_tui.core.evaluate.report import headline
    from sft_tui.trainer.evaluate import evaluate_run

    def progress(phase: str, done: int, total: int) -> None:
        reporter.set_progress(done, total)
        reporter.set_phase(phase)

    report = evaluate_run(run, Path(request.data) if request.data else None, request.n, progress=progress)
    return headline(report), str(run.eval_markdown_path)


def run_merge(run: RunDir, request: JobRequest, reporter: StatusReporter) -> tuple[str, str]:
    """Merge into request.output; each step of the merge is the phase."""
    from sft_tui.trainer.merge import merge_run

    output = merge_run(run, Path(request.output), request.dtype, request.force, say=reporter.set_phase)
    return f"merged into {output} ({request.dtype})", str(output)


def run_chat(run: RunDir, request: JobRequest, reporter: StatusReporter) -> tuple[str, str]:
    """Answer one client on a socket until it leaves."""
    from sft_tui.trainer.chat_server import serve_chat

    return serve_chat(run, reporter)


RUNNERS = {"eval": run_eval, "merge": run_merge, "chat": run_chat}


def _event(run: RunDir, job: JobDir, message: str) -> None:
    status, _ = run.status_or_reason()
    try:
        run.append_metric(EventRow(step=status.step if status else 0, event="job_ended", time=time.time(), job=job.name, message=message))
    except OSError:
        pass


def main(argv: list[str]) -> int:
    """Entry point; returns the exit code (0 completed or stopped, 1 failed, 2 unreadable request)."""
    from sft_tui.trainer.noise import quiet_known_noise

    quiet_known_noise()
    job = JobDir(Path(argv[0]).resolve())
    try:
        request = job.read_request()
    except (SchemaError, OSError) as exc:
        print(f"error: {job.request_path}: {exc}", file=sys.stderr, flush=True)
        return 2
    run = job.run
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from sft_tui.trainer.failures import classify_failure

    reserve = DiskReserve(job.reserve_path)  # room for the final status when the disk fills mid-job
    with job.lock():
        reserve.take()
        reporter = StatusReporter(job, request.kind, reserve)
        reporter.begin()
        print(f"[sft-tui] {request.kind} job {job.name} of run {run.id}, asked by {request.owner}@{request.host}", flush=True)
        try:
            result, output = RUNNERS[request.kind](run, request, reporter)
        except JobStopped:
            reporter.finish("stopped", result="stopped by request")
            _event(run, job, f"{request.kind} stopped by request")
            return 0
        except BaseException as exc:  # noqa: BLE001 - every failure must reach status.json
            where = Path(request.output) if request.kind == "merge" and request.output else None
            error = classify_failure(run, exc, reporter.step, request.kind, where)
            reserve.release()
            if error.kind == "crash":
                traceback.print_exc()
            else:
                print(f"[sft-tui] {type(exc).__name__}: {exc}", flush=True)
            reporter.finish("failed", error)
            _event(run, job, f"{request.kind} failed ({error.kind}): {error.message}")
            print(f"{request.kind} failed ({error.kind}: {error.message}; {error.hint})", flush=True)
            return 1
        reporter.finish("completed", result=result, output=output)
        _event(run, job, f"{request.kind} completed: {result}")
        print(f"[sft-tui] {request.kind} completed: {result}", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
