"""`python -m sft_tui.trainer RUN_DIR [--resume]`: train one run and keep its status true.

Owns the run directory (flock) while it trains. SIGTERM asks for a clean stop (the
step finishes, a checkpoint is saved, state `stopped`). Failures end as state `failed`
with a kind a person can act on: oom (with the estimator's nearest settings that fit),
data (file:line), config, crash (anything else; the traceback goes to train.log).
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from pathlib import Path

from sft_tui.core.data.formats import DataError
from sft_tui.core.errors import UserError
from sft_tui.core.runs import RunDir, RunError


def main(argv: list[str]) -> int:
    """Entry point; returns the process exit code (0: completed or stopped)."""
    run = RunDir(Path(argv[0]).resolve())
    resume = "--resume" in argv[1:]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from sft_tui.trainer.callbacks import StatusReporter

    with run.lock():
        reporter = StatusReporter(run)
        reporter.begin()
        try:
            from sft_tui.trainer.train import run_training

            summary = run_training(run, resume=resume, stop=stop, reporter=reporter)
        except DataError as exc:
            reporter.finish("failed", RunError("data", exc.line(), "fix that row (sft-tui data inspect FILE lists them all), then start again"))
            return 1
        except UserError as exc:
            reporter.finish("failed", RunError("config", exc.line(), "fix the config and start again"))
            return 1
        except BaseException as exc:  # noqa: BLE001 - every failure must reach status.json
            traceback.print_exc()
            from sft_tui.trainer.failures import classify_failure

            reporter.finish("failed", classify_failure(run, exc, reporter.step))
            return 1
        reporter.finish("stopped" if summary.get("stopped") else "completed")
        print(f"run {run.id}: {'stopped' if summary.get('stopped') else 'completed'} at step {summary.get('steps')}", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
