"""`sft-tui runs | watch | stop | resume`: the runs under $SFT_TUI_HOME and their jobs."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from sft_tui.cli.output import print_json, print_table, short_time

RUN_HELP = "Run id, a unique prefix of it, or 'latest'."


def runs(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list (each run with its eval/merge/chat jobs).")] = False,
    owner: Annotated[Optional[str], typer.Option("--owner", help="Only this user's runs.")] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Only my runs (--owner with my user name).")] = False,
) -> None:
    """List runs under $SFT_TUI_HOME (default ./sft-runs): state, model, progress, last loss, owner, and their jobs."""
    from sft_tui.core.runs.liveness import current_owner
    from sft_tui.core.runs.store import RunStore

    store = RunStore()
    overviews = store.list_runs(owner=current_owner()[0] if mine else owner)
    if as_json:
        print_json([o.to_json() for o in overviews])
        return
    if not overviews:
        who = current_owner()[0] if mine else owner
        print(f"no runs in {store.runs_dir}" + (f" owned by {who}" if who else ""))
        return
    rows, notes = [], []
    for o in overviews:
        progress = f"{o.step}/{o.max_steps}" if o.max_steps else str(o.step)
        if o.queue_position is not None:
            progress = f"queue #{o.queue_position}"
            notes.append(f"{o.id}: queued #{o.queue_position}: {o.waiting}")
        loss = f"{o.last_loss:.4f}" if o.last_loss is not None else "-"
        gpus = ",".join(map(str, o.gpus)) or "-"
        model = o.model.rstrip("/").rsplit("/", 1)[-1]  # a local folder's full path is in --json and `watch`
        rows.append([o.id, o.state, model, o.method, progress, loss, o.owner or "-", gpus, short_time(o.started_at), short_time(o.updated_at)])
        if o.reason:
            notes.append(f"{o.id}: unreadable: {o.reason}")
        elif o.error is not None and o.state not in ("queued", "running"):
            notes.append(f"{o.id}: {o.error.kind}: {o.error.message}")
        for job in o.jobs:
            rows.append([f"  {job.id}", job.state, "", job.kind, f"{job.step}/{job.max_steps}" if job.max_steps else "", "", job.owner or "-",
                         "", short_time(job.started_at), short_time(job.updated_at)])
            detail = job.phase if job.state in ("queued", "running", "unknown") else (f"{job.error.kind}: {job.error.message}" if job.error else job.result)
            if detail:
                notes.append(f"{o.id} {job.id}: {detail}")
    print_table(["id", "state", "model", "method", "step", "loss", "owner", "gpu", "started", "updated"], rows, title=str(store.runs_dir),
                drop=("updated", "started", "gpu", "method", "model"))
    if notes:
        print()
        print("\n".join(notes))


def watch(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    plain: Annotated[bool, typer.Option("--plain", help="Plain progress lines instead of the monitor (automatic without a terminal).")] = False,
) -> None:
    """Open the live monitor of a run; leaving it never stops the run."""
    from sft_tui.cli.follow import exit_code, follow
    from sft_tui.cli.ui import run_tui
    from sft_tui.core.runs.store import RunStore

    found = RunStore().find_run(run)
    if plain or not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise typer.Exit(exit_code(follow(found)))
    else:
        run_tui(open_run=found.id)


def stop(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    job: Annotated[Optional[str], typer.Option("--job", help="Stop one of the run's jobs (eval-1, merge-2, ...) instead of its training.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it has stopped.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait before killing it (SIGKILL).")] = 120.0,
    force: Annotated[bool, typer.Option("--force", help="Stop another user's run (the attempt is recorded in its events).")] = False,
) -> None:
    """Stop a run cleanly: it finishes the step and saves a checkpoint; a second stop kills it. A queued run leaves the queue."""
    from sft_tui.core.errors import UserError
    from sft_tui.core.runs import queue_edits
    from sft_tui.core.runs.jobs import request_stop, wait_until_inactive
    from sft_tui.core.runs.store import RunStore

    store = RunStore()
    found = store.find_run(run)
    target = found
    if job is None and queue_edits.is_waiting(found.status_or_reason()[0], found.read_placement()):
        print(queue_edits.cancel(store, found, force))
        return
    if job is not None:
        target = found.job(job)
        if not target.path.is_dir():
            names = ", ".join(j.name for j in found.jobs()) or "none"
            raise UserError(f"run {found.id} has no job {job!r} (its jobs: {names})", fix="`sft-tui runs` lists runs and their jobs")
    queue_edits.check_owner(target, "stop", force)
    result = request_stop(target)
    print(result.message)
    if not wait or result.escalated:
        return
    state = wait_until_inactive(target, timeout)
    if state is None:
        print(f"still running after {timeout:g} s: {request_stop(target).message}")
    else:
        print(f"{'run ' + found.id if job is None else job}: {state}")


def resume(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    follow: Annotated[bool, typer.Option("--follow", help="Stream progress lines; Ctrl-C stops following, not the run.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Resume another user's run (it then trains as you; recorded in its events).")] = False,
) -> None:
    """Resume a stopped, failed or crashed run from its last checkpoint, in the same run dir."""
    from sft_tui.cli.follow import exit_code
    from sft_tui.cli.follow import follow as follow_run
    from sft_tui.core.runs.queue_edits import resume as resume_run
    from sft_tui.core.runs.store import RunStore

    store = RunStore()
    found = store.find_run(run)
    said, pid = resume_run(store, found, force)
    print(f"{said} (supervisor pid {pid})")
    if follow:
        raise typer.Exit(exit_code(follow_run(found)))


def register(app: typer.Typer) -> None:
    """Add runs, watch, stop and resume to the main app."""
    app.command()(runs)
    app.command()(watch)
    app.command()(stop)
    app.command()(resume)
