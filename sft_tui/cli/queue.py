"""`sft-tui queue [list|move|cancel]`: the runs waiting for a GPU on this box, and what their owners can do about it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sft_tui.cli.output import print_json, print_table

queue_app = typer.Typer(help="Runs waiting for room on a GPU (sft-tui train CONFIG --queue): list, reorder, cancel.",
                        no_args_is_help=False, invoke_without_command=True)

RUN_HELP = "Run id, a unique prefix of it, or 'latest'."
FORCE_HELP = "Act on another user's run (the attempt is recorded in its events)."


def _moved_on(store) -> None:
    """Anyone looking at the queue also keeps it moving: start what fits now, and waiters lost to a reboot."""
    from sft_tui.core.runs.queue import admit_with_sampler

    admit_with_sampler(store)


@queue_app.callback()
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list: position, id, owner, estimate, what it waits for.")] = False,
    owner: Annotated[Optional[str], typer.Option("--owner", help="Only this user's runs (positions still count everyone's).")] = None,
) -> None:
    """List the queued runs in the order they will start: position, owner, estimate, the GPU each waits for."""
    if ctx.invoked_subcommand is not None:
        return
    from sft_tui.core.runs.placement import MAX_PASSES
    from sft_tui.core.runs.queue_edits import queued_runs
    from sft_tui.core.runs.store import RunStore

    store = RunStore()
    _moved_on(store)
    entries = [q for q in queued_runs(store) if owner is None or q.owner == owner]
    if as_json:
        print_json([q.to_json() for q in entries])
        return
    if not entries:
        print(f"no queued runs in {store.runs_dir}" + (f" owned by {owner}" if owner else ""))
        return
    pinned = any(q.gpus for q in entries)  # the "may use" column only when some run was limited with --gpus
    rows = [[q.position, q.id, q.owner, q.priority, q.needs(),
             *([",".join(map(str, q.gpus)) or "any"] if pinned else []),
             f"GPU{q.waiting_gpu}" if q.waiting_gpu is not None else q.device, q.submitted_at[11:16]] for q in entries]
    print_table(["#", "run", "owner", "prio", "needs", *(["may use"] if pinned else []), "waits for", "queued"], rows,
                title=str(store.runs_dir), drop=("queued", "waits for", "prio"))
    print()
    for q in entries:
        passed = f" (passed by {q.passed} later run{'s' if q.passed != 1 else ''}; after {MAX_PASSES} it goes first)" if q.passed else ""
        print(f"#{q.position} waits{passed}: {q.waiting}")


@queue_app.command()
def move(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    to: Annotated[Optional[int], typer.Option("--to", min=1, help="The new position (1 = next to start).")] = None,
    priority: Annotated[Optional[int], typer.Option("--priority", help="A new priority instead (higher starts first).")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
) -> None:
    """Move a queued run to a position (it takes the priority of the runs around it), or give it a new priority."""
    from sft_tui.core.errors import UserError
    from sft_tui.core.runs import queue_edits
    from sft_tui.core.runs.store import RunStore

    if (to is None) == (priority is None):
        given = "both --to and --priority" if to is not None else "neither --to nor --priority"
        raise UserError(f"queue move takes one of --to N or --priority P, got {given}", fix=f"e.g. sft-tui queue move {run} --to 1")
    store = RunStore()
    found = store.find_run(run)
    before = found.read_placement()
    position = queue_edits.move(store, found, to, force) if to is not None else queue_edits.reprioritise(store, found, priority, force)
    after = found.read_placement()
    changed = f" (priority {before.priority} -> {after.priority}, as the runs around it)" if before and after and before.priority != after.priority and to is not None else ""
    print(f"run {found.id} is now at position {position}{changed}")
    _moved_on(store)


@queue_app.command()
def cancel(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
) -> None:
    """Take a run out of the queue before it starts (it ends as stopped; nothing was trained)."""
    from sft_tui.core.runs import queue_edits
    from sft_tui.core.runs.store import RunStore

    store = RunStore()
    print(queue_edits.cancel(store, store.find_run(run), force))
