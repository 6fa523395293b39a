"""The run directory: the one contract between the trainer process and everything that watches it.

This module is the only code that knows the file layout (ARCHITECTURE.md, "Where runs
live"). The trainer writes through it; the CLI and the TUI read through it.

    <home>/runs/<run-id>/
        config.toml  status.json  metrics.jsonl  train.log  summary.json
        checkpoints/ adapter/ (or model/)  .lock

Writers: status.json and summary.json are replaced atomically (temp file + rename), so a
reader never sees half a file; metrics.jsonl is appended a line at a time and flushed.
Readers: metrics are read from a byte offset and an unfinished last line is left for
the next read. A run whose status says queued/running but whose process is gone and
whose heartbeat is stale is reported as crashed.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

from sft_tui.core.errors import UserError
from sft_tui.core.tomlfile import TOMLDecodeError, tomllib

STATES = ("queued", "running", "completed", "failed", "stopped")
CRASHED = "crashed"  # derived by readers, never written
ACTIVE_STATES = ("queued", "running")
ERROR_KINDS = ("oom", "data", "config", "crash")
# The trainer beats every <= 5 s; six missed beats with a dead pid means it is gone.
HEARTBEAT_STALE_S = 30.0
_TAIL_BYTES = 64 * 1024


def runs_home() -> Path:
    """Where runs live: $SFT_TUI_HOME, else ./sft-runs under the current directory."""
    return Path(os.environ.get("SFT_TUI_HOME") or "sft-runs").expanduser().resolve()


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string with offset, as status.json stores it."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def format_eta(seconds: float | None) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour up; '-' when unknown."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def parse_iso(text: str) -> datetime:
    """Parse a status.json timestamp (naive values are taken as UTC)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class RunError:
    """Why a run failed: kind is oom|data|config|crash; hint says what to do."""

    kind: str
    message: str
    hint: str = ""


@dataclass(frozen=True)
class RunStatus:
    """The contents of status.json."""

    state: str
    pid: int
    started_at: str
    updated_at: str
    step: int = 0
    max_steps: int = 0
    error: RunError | None = None
    eta_s: float | None = None  # optional extension: seconds to the end, when known

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to status.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunStatus":
        """Read a status.json object; unknown keys are ignored (newer writers may add some)."""
        error = data.get("error")
        return cls(
            state=str(data["state"]),
            pid=int(data.get("pid") or 0),
            started_at=str(data["started_at"]),
            updated_at=str(data.get("updated_at") or data["started_at"]),
            step=int(data.get("step") or 0),
            max_steps=int(data.get("max_steps") or 0),
            error=RunError(str(error.get("kind", "crash")), str(error.get("message", "")), str(error.get("hint", ""))) if isinstance(error, dict) else None,
            eta_s=float(data["eta_s"]) if data.get("eta_s") is not None else None,
        )


@dataclass(frozen=True)
class MetricsChunk:
    """Rows read since an offset, the offset to continue from, and what was odd."""

    rows: tuple[dict[str, Any], ...]
    offset: int
    skipped_lines: int = 0  # complete lines that were not JSON objects
    restarted: bool = False  # the file shrank (replaced): rows are from the start again


@dataclass(frozen=True)
class RunSummary:
    """One line of `sft-tui runs`: what a person wants to see about a run at a glance."""

    id: str
    state: str
    model: str
    method: str
    step: int
    max_steps: int
    last_loss: float | None
    started_at: str
    updated_at: str
    heartbeat_age_s: float | None
    error: RunError | None
    path: str
    eta_s: float | None = None
    tokens_per_s: float | None = None  # from the same newest row as last_loss

    def to_json(self) -> dict[str, Any]:
        """The JSON object `sft-tui runs --json` prints for this run."""
        return asdict(self)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite(value: Any) -> Any:
    """NaN/inf become null: strict JSON readers (jq, browsers) reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_new_metrics(path: Path, offset: int = 0) -> MetricsChunk:
    """Rows appended to a metrics.jsonl since `offset`; a torn last line waits for the next call."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return MetricsChunk((), 0)
    restarted = size < offset
    if restarted:
        offset = 0
    if size == offset:
        return MetricsChunk((), offset, restarted=restarted)
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(size - offset)
    end = data.rfind(b"\n")
    if end < 0:
        return MetricsChunk((), offset, restarted=restarted)
    rows: list[dict[str, Any]] = []
    skipped = 0
    for line in data[: end + 1].splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            skipped += 1
    return MetricsChunk(tuple(rows), offset + end + 1, skipped, restarted)


def last_metrics_row(path: Path, key: str = "loss") -> dict[str, Any] | None:
    """The newest complete row holding `key`, reading only the file's tail."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            data = handle.read()
    except FileNotFoundError:
        return None
    for line in reversed(data.splitlines()[1:] if size > _TAIL_BYTES else data.splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get(key) is not None:
            return row
    return None


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


def effective_state(status: RunStatus, now: datetime | None = None,
                    alive: Callable[[int, datetime | None], bool] = pid_is_alive) -> str:
    """The state to show: status.state, or 'crashed' for an active run whose process is gone
    (or a run its supervisor saw die: state failed, error kind crash)."""
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


class RunLock:
    """An exclusive flock on <run>/.lock: one process owns a run dir at a time.

    The kernel drops the lock when its holder dies, so a crashed trainer never leaves a
    stale lock behind (unlike pid files).
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self._handle: TextIO | None = None

    def acquire(self) -> "RunLock":
        """Take the lock or raise UserError naming the pid that holds it."""
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(f"run {self.path.parent.name} is owned by another process (pid {holder})", str(self.path.parent),
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

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class MetricsWriter:
    """Appends one JSON object per line to metrics.jsonl and flushes it at once."""

    def __init__(self, path: Path):
        self._handle = path.open("a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        """Write one row; non-finite floats become null."""
        clean = {key: _finite(value) for key, value in row.items()}
        self._handle.write(json.dumps(clean, separators=(",", ":")) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class RunDir:
    """Paths and reads/writes of one run directory."""

    path: Path
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", self.path.name)

    config_path = property(lambda self: self.path / "config.toml")
    status_path = property(lambda self: self.path / "status.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    log_path = property(lambda self: self.path / "train.log")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    adapter_dir = property(lambda self: self.path / "adapter")
    model_dir = property(lambda self: self.path / "model")
    eval_dir = property(lambda self: self.path / "eval")
    eval_report_path = property(lambda self: self.path / "eval" / "report.json")
    model_card_path = property(lambda self: self.path / "README.md")

    def write_status(self, status: RunStatus) -> None:
        """Replace status.json atomically."""
        if status.state not in STATES:
            raise ValueError(f"unknown run state {status.state!r}")
        write_json_atomic(self.status_path, status.to_json())

    def read_status(self) -> RunStatus | None:
        """The current status, or None when status.json is missing or unreadable."""
        try:
            return RunStatus.from_json(json.loads(self.status_path.read_text(encoding="utf-8")))
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def metrics_writer(self) -> MetricsWriter:
        """A writer appending to this run's metrics.jsonl."""
        return MetricsWriter(self.metrics_path)

    def read_new_metrics(self, offset: int = 0) -> MetricsChunk:
        """Metrics rows appended since `offset` (see read_new_metrics)."""
        return read_new_metrics(self.metrics_path, offset)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Replace summary.json atomically."""
        write_json_atomic(self.summary_path, {k: _finite(v) for k, v in summary.items()})

    def read_summary(self) -> dict[str, Any] | None:
        """summary.json, or None before the run ends."""
        try:
            return json.loads(self.summary_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def read_eval_report(self) -> dict[str, Any] | None:
        """eval/report.json as written by `sft-tui eval`, or None before any evaluation."""
        try:
            return json.loads(self.eval_report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def trained_output(self) -> Path | None:
        """The adapter (LoRA/QLoRA) or model (full) folder a finished run saved, or None."""
        for folder in (self.adapter_dir, self.model_dir):
            if (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
                return folder
        return None

    def require_trained_output(self) -> Path:
        """trained_output(), or a UserError naming the run's state and why it has no model."""
        output = self.trained_output()
        if output is not None:
            return output
        status = self.read_status()
        reason = f" ({status.error.kind}: {status.error.message})" if status and status.error else ""
        raise UserError(f"run {self.id} has no trained model to use: it is {self.summarize().state}{reason}", str(self.path),
                        "evaluate, chat with or merge a completed run (`sft-tui runs` lists them); resume this one first")

    @property
    def stop_request_path(self) -> Path:
        """Written by `sft-tui stop`; a second request escalates to SIGKILL."""
        return self.path / ".stop_requested"

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (checkpoints/checkpoint-N with its trainer state), if any."""
        found = []
        for folder in self.checkpoints_dir.glob("checkpoint-*"):
            suffix = folder.name.rsplit("-", 1)[-1]
            if suffix.isdigit() and (folder / "trainer_state.json").is_file():
                found.append((int(suffix), folder))
        return max(found)[1] if found else None

    def truncate_metrics_after(self, step: int) -> int:
        """Drop metrics rows past `step` (resuming from an older checkpoint repeats those steps); returns rows dropped."""
        chunk = read_new_metrics(self.metrics_path, 0)
        kept = [row for row in chunk.rows if int(row.get("step", 0)) <= step]
        dropped = len(chunk.rows) - len(kept)
        if dropped:
            fd, tmp = tempfile.mkstemp(prefix=".metrics.", dir=self.path)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in kept)
            os.replace(tmp, self.metrics_path)
        return dropped

    def lock(self) -> RunLock:
        """The ownership lock of this run (use as a context manager)."""
        return RunLock(self.path)

    def config_identity(self) -> tuple[str, str]:
        """(model, method) from config.toml, read without validation; '?' when unreadable."""
        try:
            data = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, TOMLDecodeError, UnicodeDecodeError):
            return "?", "?"
        model = data.get("model", {}).get("name", "?") if isinstance(data.get("model"), dict) else "?"
        method = data.get("method", {}).get("name", "?") if isinstance(data.get("method"), dict) else "?"
        return str(model), str(method)

    def summarize(self, now: datetime | None = None) -> RunSummary:
        """The RunSummary of this run, with crash detection applied."""
        now = now or datetime.now(timezone.utc)
        status = self.read_status()
        model, method = self.config_identity()
        last = last_metrics_row(self.metrics_path)
        if status is None:
            return RunSummary(self.id, "unknown", model, method, 0, 0, None, "", "", None, None, str(self.path))
        age = (now - parse_iso(status.updated_at)).total_seconds()
        return RunSummary(
            id=self.id, state=effective_state(status, now), model=model, method=method,
            step=status.step, max_steps=status.max_steps,
            last_loss=float(last["loss"]) if last else None,
            started_at=status.started_at, updated_at=status.updated_at,
            heartbeat_age_s=round(age, 1), error=status.error, path=str(self.path),
            eta_s=status.eta_s if status.state in ACTIVE_STATES else None,
            tokens_per_s=float(last["tokens_per_s"]) if last and last.get("tokens_per_s") else None,
        )


_SLUG = re.compile(r"[^a-z0-9.]+")


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower().rsplit("/", 1)[-1]).strip("-.")[:40] or "run"


class RunStore:
    """All runs under one home folder ($SFT_TUI_HOME by default)."""

    def __init__(self, home: Path | None = None):
        self.home = (home or runs_home()).resolve()
        self.runs_dir = self.home / "runs"

    def create_run(self, config_text: str, model: str, method: str, name: str = "", now: datetime | None = None) -> RunDir:
        """Make a new run dir with a readable unique id, its config.toml and a queued status."""
        now = now or datetime.now(timezone.utc)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        base = f"{now.strftime('%Y%m%d-%H%M%S')}-{_slug(name or f'{model}-{method}')}"
        for attempt in range(1, 1000):
            run_id = base if attempt == 1 else f"{base}-{attempt}"
            try:
                (self.runs_dir / run_id).mkdir()  # atomic: two launchers never share an id
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - a thousand runs in one second
            raise RuntimeError("could not find a free run id")
        run = RunDir(self.runs_dir / run_id)
        run.config_path.write_text(config_text, encoding="utf-8")
        stamp = now.isoformat(timespec="milliseconds")
        run.write_status(RunStatus(state="queued", pid=0, started_at=stamp, updated_at=stamp))
        return run

    def run_dirs(self) -> list[RunDir]:
        """Every run directory, newest id first."""
        if not self.runs_dir.is_dir():
            return []
        return [RunDir(p) for p in sorted(self.runs_dir.iterdir(), reverse=True) if p.is_dir() and not p.name.startswith(".")]

    def list_runs(self, now: datetime | None = None) -> list[RunSummary]:
        """A summary of every run, newest first."""
        return [run.summarize(now) for run in self.run_dirs()]

    def find_run(self, ref: str) -> RunDir:
        """A run by id, unique id prefix, or 'latest'; a UserError says what matched."""
        runs = self.run_dirs()
        if not runs:
            raise UserError(f"no runs in {self.runs_dir}", fix="start one with `sft-tui train CONFIG.toml`, or set SFT_TUI_HOME")
        if ref in ("latest", "last"):
            return runs[0]
        exact = [r for r in runs if r.id == ref]
        if exact:
            return exact[0]
        matches = [r for r in runs if r.id.startswith(ref)] or [r for r in runs if ref in r.id]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UserError(f"{ref!r} matches {len(matches)} runs ({', '.join(r.id for r in matches[:3])}...)", fix="give more of the run id")
        raise UserError(f"no run {ref!r} in {self.runs_dir}", fix="`sft-tui runs` lists the runs")
