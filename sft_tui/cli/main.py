"""The `sft-tui` command line (Typer). Thin: it parses, calls core, prints.

Heavy libraries (torch, transformers, textual) are imported only inside the commands
that need them, so `sft-tui --help` answers at once (bench/cli_startup.py measures it).
A UserError from anywhere, and the disk and permission errors a user can fix, become one
line on stderr and exit code 2 (see main()).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sft_tui import __version__
from sft_tui.cli import after, calibrate, estimate, launch_command, runs, system, train, wizard
from sft_tui.cli.config import config_app
from sft_tui.cli.data import data_app
from sft_tui.cli.models import models_app
from sft_tui.cli.queue import queue_app
from sft_tui.core.errors import UserError

app = typer.Typer(
    name="sft-tui",
    help="A terminal cockpit for adapting open LLMs on one GPU box: decide, estimate, curate, train, monitor.",
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        print(f"sft-tui {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Run `sft-tui` alone to open the terminal UI (home screen)."""
    if ctx.invoked_subcommand is None:
        from sft_tui.cli.ui import run_tui

        run_tui()


# the order of `--help`: decide and estimate, launch, the runs, then what comes after training
train.register(app)  # demo, train
launch_command.register(app)  # launch-command: one run on several machines
wizard.register(app)
estimate.register(app)
runs.register(app)  # runs, watch, stop, resume
app.add_typer(queue_app, name="queue")
system.register(app)  # gpu
calibrate.register(app)  # calibrate
after.register(app)  # eval, merge, chat


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `sft-tui` console script."""
    try:
        app(args=argv, prog_name="sft-tui")
    except UserError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C: a run already started goes on; nothing half-made is left (start_run cleans up)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a read-only folder, a full disk, no permission: the user can fix these
        from sft_tui.core.runs.files import os_error_line

        line = os_error_line(exc)
        if line is None:
            raise
        print(f"error: {line.line()}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
