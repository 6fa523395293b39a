"""Writing run files safely: atomic JSON, the process umask, a disk reserve, and one-line disk errors.

A team shares one $SFT_TUI_HOME, so every file and folder is created with the process
umask (group-readable under the usual 002 or 022), never the 0600 that temp files get.
A full disk must still leave a status that says so: the run keeps a small reserve file
that is given back right before the status is written on ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from sft_tui.core.errors import UserError
from sft_tui.core.units import GIB

RESERVE_BYTES = 256 * 1024  # enough for status.json, a summary and the last lines of the log
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@lru_cache(maxsize=1)
def process_umask() -> int:
    """The umask this process runs under (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new file under the umask: 0644 under 022, 0664 under 002."""
    return 0o666 & ~process_umask()


def dir_mode() -> int:
    """Mode of a new folder under the umask."""
    return 0o777 & ~process_umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, fsync, give it the umask's mode, rename it over `path`: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())  # mkstemp makes 0600: a teammate could not read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """write_text_atomic for JSON."""
    write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False))


def share_tree(folder: Path) -> None:
    """Give files and folders under `folder` the umask's modes (libraries that save through temp files leave 0600)."""
    if not folder.exists():
        return
    os.chmod(folder, dir_mode())
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), dir_mode())
        for name in files:
            os.chmod(os.path.join(root, name), file_mode())


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC / EDQUOT anywhere in the exception's chain (libraries wrap them)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return False


def free_bytes(path: Path) -> int | None:
    """Free bytes on the file system holding `path` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def os_error_line(exc: OSError, fallback_path: str = "") -> UserError | None:
    """A UserError for the disk and permission errors a user can fix; None for anything else (a bug keeps its traceback)."""
    where = exc.filename or fallback_path or None
    where = str(where) if where else None
    if exc.errno in DISK_ERRNOS:
        free = free_bytes(Path(where)) if where else None
        left = f" ({free / GIB:.2f} GiB free)" if free is not None else ""
        return UserError(f"no space left on the device{left}", where,
                         "free disk space (old checkpoints: training.save_total_limit) or set SFT_TUI_HOME to a larger disk")
    if exc.errno == errno.EROFS:
        return UserError("read-only file system: cannot write here", where, "set SFT_TUI_HOME (or the output path) to a writable folder")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return UserError("permission denied", where, "ask the folder's owner for write access (a team shares SFT_TUI_HOME as a setgid group folder), or use another folder")
    return None


class DiskReserve:
    """A small file kept in a run dir while a job runs, freed on ENOSPC so the final status can still be written."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES):
        self.path = path
        self.size = size

    def take(self) -> bool:
        """Allocate the reserve; False when even that does not fit (the job then fails early, with a clear status)."""
        try:
            with self.path.open("wb") as handle:
                handle.write(b"\0" * self.size)  # written, not sparse: the blocks are really held
                handle.flush()
                os.fsync(handle.fileno())
            return True
        except OSError:
            self.path.unlink(missing_ok=True)
            return False

    def release(self) -> None:
        """Give the space back."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
