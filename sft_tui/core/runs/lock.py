"""An exclusive flock on a folder's .lock file: one process owns a run (or a job) at a time.

The kernel drops the lock when its holder dies, so a crashed trainer never leaves a stale
lock behind (unlike pid files).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TextIO

from sft_tui.core.errors import UserError


class FolderLock:
    """flock on <folder>/.lock; `blocking` waits for it instead of refusing."""

    def __init__(self, path: Path, what: str, blocking: bool = False):
        self.path = path
        self.what = what
        self.blocking = blocking
        self._handle: TextIO | None = None

    def acquire(self) -> "FolderLock":
        """Take the lock, or raise UserError naming the pid that holds it."""
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX if self.blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(f"{self.what} is owned by another process (pid {holder})", str(self.path.parent),
                            "stop that process first (sft-tui stop RUN), or wait for it to finish") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        """Let go of the lock (closing the file drops the flock)."""
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
