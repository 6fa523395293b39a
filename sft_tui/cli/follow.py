"""Plain progress lines for a run (`watch --plain`, `train --follow`, the demo without a terminal)."""

from __future__ import annotations

import time

from sft_tui.core.runs.logtext import format_objective_metrics
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, EvalRow, EventRow, MetricsRow, SystemRow, TrainRow
from sft_tui.core.runs.watch import RunSnapshot, RunWatcher
from sft_tui.core.units import format_eta


def progress_line(row: MetricsRow, max_steps: int, eta_s: float | None) -> str:
    """One plain progress line for a metrics row."""
    if isinstance(row, EvalRow):
        loss = f"{row.eval_loss:.4f}" if row.eval_loss is not None else "nan"
        return f"step {row.step:>6}  eval_loss {loss}" + format_objective_metrics(row.objective_metrics)
    if isinstance(row, EventRow):
        what = f"{row.job} " if row.job else ""
        return f"step {row.step:>6}  {what}{row.event}" + (f": {row.message}" if row.message else "")
    assert isinstance(row, TrainRow)
    speed = f"{row.tokens_per_s:,.0f} tok/s" if row.tokens_per_s else "- tok/s"
    memory = f"{row.gpu_reserved_gib:.1f} GiB" if row.gpu_reserved_gib is not None else "cpu"
    loss = f"{row.loss:.4f}" if row.loss is not None else "nan"
    return (f"step {row.step:>6}/{max_steps or '?'}  loss {loss}{format_objective_metrics(row.objective_metrics)}  "
            f"lr {row.learning_rate or 0:.2e}  {speed}  {memory}  ETA {format_eta(eta_s)}")


def exit_code(state: str | None) -> int:
    """The command's exit code after following: 0 completed or stopped, 130 when only the following stopped, else 1."""
    if state is None:
        return 130
    return 0 if state in ("completed", "stopped") else 1


def end_line(snapshot: RunSnapshot) -> str:
    """How the run ended, in one line."""
    line = f"run {snapshot.run_id}: {snapshot.state}"
    status, summary = snapshot.status, snapshot.summary
    if status and status.error:
        line += f" ({status.error.kind}: {status.error.message}; {status.error.hint})"
    elif snapshot.reason:
        line += f" ({snapshot.reason})"
    if summary is not None and not summary.stale and summary.final_loss is not None and summary.first_loss is not None:
        line += f"; loss {summary.first_loss:.3f} -> {summary.final_loss:.3f}"
        if summary.output:
            line += f"; saved to {summary.output}"
    return line


def follow(run: RunDir, poll_s: float = 1.0) -> str | None:
    """Print progress until the run ends; Ctrl-C stops following (never the run). Returns the final state."""
    watcher = RunWatcher(run, log_lines=0)
    said = ""
    try:
        while True:
            snapshot = watcher.poll()
            status = snapshot.status
            if snapshot.waiting and snapshot.waiting != said:  # a queued run: say why it waits, once per change
                said = snapshot.waiting
                print(f"queued: {said}", flush=True)
            rows = snapshot.new_rows
            if snapshot.restarted:  # cut back for a resume: the rows up to the checkpoint were printed already
                resumed = [i for i, row in enumerate(rows) if isinstance(row, EventRow) and row.event == "resumed"]
                rows = rows[resumed[-1]:] if resumed else ()
            for row in rows:
                if isinstance(row, SystemRow) or (isinstance(row, EventRow) and row.event == "started"):
                    continue  # GPU/host samples every few seconds would drown the progress lines
                print(progress_line(row, status.max_steps if status else 0, status.eta_s if status else None), flush=True)
            if snapshot.state not in ACTIVE_STATES:
                print(end_line(snapshot), flush=True)
                return snapshot.state
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print(f"\nstopped following; the run goes on (sft-tui watch {run.id}, sft-tui stop {run.id})", flush=True)
        return None
