"""Is a job still alive? The state to show for a status: written state, or crashed when its process is gone."""

from __future__ import annotations

import getpass
import socket
from datetime import datetime, timezone
from typing import Callable

from sft_tui.core.runs.schema import ACTIVE_STATES, CRASHED, JobStatus, parse_iso

# Jobs beat every <= 5 s; six missed beats with a dead pid means it is gone.
HEARTBEAT_STALE_S = 30.0


def pid_is_alive(pid: int, not_after: datetime | None = None) -> bool:
    """True if `pid` runs and is not a zombie; with `not_after`, a process started later is a reused pid."""
    import psutil

    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if not_after is not None and process.create_time() > not_after.timestamp() + 1.0:
            return False
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


def effective_state(status: JobStatus, now: datetime | None = None,
                    alive: Callable[[int, datetime | None], bool] = pid_is_alive) -> str:
    """The state to show: status.state, or 'crashed' for an active job whose process is gone
    (or one its supervisor saw die: state failed, error kind crash)."""
    if status.state == "failed" and status.error is not None and status.error.kind == "crash":
        return CRASHED
    if status.state not in ACTIVE_STATES:
        return status.state
    now = now or datetime.now(timezone.utc)
    updated = parse_iso(status.updated_at)
    stale = (now - updated).total_seconds() > HEARTBEAT_STALE_S
    if stale and not alive(status.pid, updated):
        return CRASHED
    return status.state


def current_owner() -> tuple[str, str]:
    """(user, host) recorded on every run and job this process starts."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        import os

        user = str(os.getuid())
    return user, socket.gethostname()
