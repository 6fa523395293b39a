"""All runs under one home folder: create, list (one bad run never hides the others), find by id."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from sft_tui.core.errors import UserError
from sft_tui.core.runs.liveness import current_owner, effective_state
from sft_tui.core.runs.placement import is_waiting
from sft_tui.core.runs.rundir import JobDir, RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, UNKNOWN, JobOverview, JobStatus, RunOverview, parse_iso

_SLUG = re.compile(r"[^a-z0-9.]+")


def runs_home() -> Path:
    """Where runs live: $SFT_TUI_HOME, else ./sft-runs under the current directory."""
    return Path(os.environ.get("SFT_TUI_HOME") or "sft-runs").expanduser().resolve()


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower().rsplit("/", 1)[-1]).strip("-.")[:40] or "run"


def _age_s(status: JobStatus, now: datetime) -> float | None:
    try:
        return round((now - parse_iso(status.updated_at)).total_seconds(), 1)
    except ValueError:
        return None


def job_overview(job: JobDir, now: datetime | None = None) -> JobOverview:
    """One job as listed; an unreadable status makes it `unknown` with the reason as its phase."""
    now = now or datetime.now(timezone.utc)
    status, reason = job.status_or_reason()
    if status is None:
        return JobOverview(job.name, job.kind, UNKNOWN, phase=reason)
    return JobOverview(job.name, status.kind, effective_state(status, now), status.phase, status.step, status.max_steps,
                       status.result, status.output, status.error, status.owner, status.started_at, status.updated_at)


def run_overview(run: RunDir, now: datetime | None = None) -> RunOverview:
    """The overview of one run. Never raises for a broken run: it is listed as `unknown` with the reason."""
    now = now or datetime.now(timezone.utc)
    model, method = run.config_identity()
    try:
        jobs = tuple(job_overview(job, now) for job in run.jobs())
    except OSError:
        jobs = ()
    status, reason = run.status_or_reason()
    if status is None:
        return RunOverview(run.id, UNKNOWN, model, method, 0, 0, None, "", "", None, None, str(run.path), reason=reason, jobs=jobs)
    placement = run.read_placement()
    waiting = is_waiting(status, placement)
    # a queued run is in the queue whether or not its waiter lives (after a reboot the next sft-tui starts a new one)
    state = "queued" if waiting else effective_state(status, now)
    try:
        last = run.last_train_row()
    except OSError:
        last = None
    return RunOverview(
        id=run.id, state=state, model=model, method=method, step=status.step, max_steps=status.max_steps,
        last_loss=last.loss if last else None, started_at=status.started_at, updated_at=status.updated_at,
        heartbeat_age_s=_age_s(status, now), error=status.error, path=str(run.path),
        eta_s=status.eta_s if status.state in ACTIVE_STATES else None,
        tokens_per_s=last.tokens_per_s if last else None, owner=status.owner, host=status.host, jobs=jobs,
        gpus=(placement.gpus if placement else ()) or status.gpus, priority=placement.priority if placement else 0,
        waiting=(placement.waiting or "its turn") if waiting else "", estimate_gib=placement.estimate_gib if placement else None,
        device=placement.device if placement else "",
        queue_position=0 if waiting else None,  # numbered by list_runs, which sees the whole queue
    )


def number_queue(overviews: list[RunOverview], orders: dict[str, float]) -> list[RunOverview]:
    """Give each waiting run its queue position (1 = next): priority first, then submission order."""
    waiting = sorted((o for o in overviews if o.queue_position is not None), key=lambda o: (-o.priority, orders.get(o.id, 0.0), o.id))
    position = {o.id: n for n, o in enumerate(waiting, start=1)}
    return [replace(o, queue_position=position[o.id]) if o.id in position else o for o in overviews]


class RunStore:
    """All runs under one home folder ($SFT_TUI_HOME by default)."""

    def __init__(self, home: Path | None = None):
        self.home = (home or runs_home()).resolve()
        self.runs_dir = self.home / "runs"

    @property
    def events_path(self) -> Path:
        """The home's own log: things that happened to runs that can no longer say so themselves."""
        return self.home / "events.log"

    def log_event(self, line: str) -> None:
        """Append one timestamped line to events.log (best effort: it never fails the caller)."""
        from sft_tui.core.runs.schema import now_iso

        try:
            with self.events_path.open("a", encoding="utf-8") as handle:
                handle.write(f"{now_iso()} {line}\n")
        except OSError:
            pass

    def create_run(self, config_text: str, model: str, method: str, name: str = "", now: datetime | None = None,
                   gpus: tuple[int, ...] = ()) -> RunDir:
        """Make a new run dir with a readable unique id, its config.toml and a queued status."""
        now = now or datetime.now(timezone.utc)
        if not self.runs_dir.is_dir():
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            self._share_with_group(self.runs_dir)
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
        self._share_with_group(run.path)
        run.config_path.write_text(config_text, encoding="utf-8")
        stamp = now.isoformat(timespec="milliseconds")
        owner, host = current_owner()
        run.write_status(JobStatus(state="queued", pid=0, started_at=stamp, updated_at=stamp, owner=owner, host=host, gpus=gpus))
        return run

    def _share_with_group(self, folder: Path) -> None:
        """In a team's home (a setgid folder) every folder the queue writes is group-writable, whatever the umask.

        A teammate admitting or cancelling a run rewrites its placement.json and status.json
        by atomic rename, which needs write access to the run's folder only; under a 0022
        umask the folder alone would lock them out (and `runs/` would lock out new runs).
        """
        import stat

        try:
            if self.home.stat().st_mode & stat.S_ISGID:
                folder.chmod(folder.stat().st_mode | stat.S_IRWXG)
        except OSError:
            pass  # not ours to change: the umask's mode stands

    def run_dirs(self) -> list[RunDir]:
        """Every run directory, newest id first."""
        try:
            entries = sorted(self.runs_dir.iterdir(), reverse=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [RunDir(p) for p in entries if p.is_dir() and not p.name.startswith(".")]

    def list_runs(self, now: datetime | None = None, owner: str | None = None) -> list[RunOverview]:
        """An overview of every run, newest first (queued ones numbered); a broken run is listed as `unknown`, never hides the others.

        owner: only that user's runs (positions still count everyone's).
        """
        runs = self.run_dirs()
        overviews = [run_overview(run, now) for run in runs]
        orders = {}
        for run, overview in zip(runs, overviews):
            if overview.queue_position is not None:
                placement = run.read_placement()
                orders[run.id] = placement.order if placement else 0.0
        overviews = number_queue(overviews, orders)
        return [o for o in overviews if owner is None or o.owner == owner]

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

