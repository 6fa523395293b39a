"""`python -m sft_tui.trainer.supervise RUN_DIR [--resume]`: start the trainer, record how it ended.

Runs in the new session the launcher made. It imports only the standard library and
core (it must start fast and must not die of what kills the trainer). A trainer that
ends normally writes its own final status; one that dies without a word (SIGKILL from
the host's out-of-memory killer, a segfault, an exit from native code) leaves an active
status behind, and this process turns it into failed/crash with the signal or exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from sft_tui.core.runs import ACTIVE_STATES, RunDir, RunError, now_iso

_HINTS = {
    "SIGKILL": "SIGKILL often comes from the host's out-of-memory killer (see `dmesg`): lower micro_batch_size or "
               "max_seq_length, or free host RAM; `sft-tui resume RUN` continues from the last checkpoint",
    "SIGSEGV": "the trainer crashed in native code; see train.log, and try another torch/bitsandbytes build",
}


def describe_exit(code: int) -> tuple[str, str]:
    """(message, hint) for a child's return code (negative: killed by that signal)."""
    if code < 0:
        name = signal.Signals(-code).name
        return f"trainer killed by signal {-code} ({name})", _HINTS.get(name, "see train.log; `sft-tui resume RUN` continues from the last checkpoint")
    return f"trainer exited with code {code} without reporting an error", "see train.log"


def main(argv: list[str]) -> int:
    """Run the trainer to its end and make sure status.json says how it ended."""
    run = RunDir(Path(argv[0]).resolve())
    command = [sys.executable, "-m", "sft_tui.trainer", str(run.path)] + [a for a in argv[1:] if a == "--resume"]
    child = subprocess.Popen(command)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    code = child.wait()
    status = run.read_status()
    # Only a status this supervisor or its own trainer wrote is ours to close: a resumed run
    # may already have queued a new supervisor while this trainer was still exiting.
    ours = status is not None and status.pid in (child.pid, os.getpid())
    if ours and status.state in ACTIVE_STATES:
        message, hint = describe_exit(code)
        if run.stop_request_path.exists():
            run.write_status(replace(status, state="stopped", updated_at=now_iso(),
                                     error=RunError("crash", f"stopped by request: {message}", "no checkpoint at this step; resume continues from the last one")))
        else:
            run.write_status(replace(status, state="failed", updated_at=now_iso(), error=RunError("crash", message, hint)))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
