"""`sft-tui train` and `sft-tui demo`: pre-flight, launch a detached run, optionally follow it.

Nothing here imports torch except `demo`, which builds the tiny model once (cached).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from sft_tui.cli.follow import exit_code
from sft_tui.cli.follow import follow as follow_run


def note(message: str) -> None:
    """A progress line on stderr (stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)


def demo_config_overrides(home: Path) -> tuple[Path, list[str]]:
    """Build (once) the tiny model under home/cache; returns the demo config and its model override."""
    from sft_tui.core.models.presets import assets_dir

    demo = assets_dir() / "demo"
    folder = home / "cache" / "tiny-demo-model"
    if not (folder / "config.json").is_file():
        note(f"building the tiny demo model in {folder} (first time only, about 10 s)...")
        from sft_tui.trainer.tiny import build_tiny_model

        build_tiny_model(folder, [demo / "train.jsonl"])
    return demo / "demo.toml", [f"model.name={folder}"]


def run_demo(no_tui: bool) -> int:
    """The demo: tiny model, sample data, a run of under a minute on the CPU, followed to its end."""
    from sft_tui.core.runs.preflight import check_home_writable, preflight, start_run
    from sft_tui.core.runs.store import RunStore

    home = RunStore().home
    check_home_writable(home)
    config_path, overrides = demo_config_overrides(home)
    resolved = preflight(config_path, overrides, force=False, note=note)
    run = start_run(resolved, str(config_path), out=print)
    if not no_tui and sys.stdout.isatty() and sys.stdin.isatty():
        from sft_tui.tui.app import make_app

        make_app(open_run=run.id).run()  # quitting leaves the run going; `sft-tui` finds it again
        print(f"left the monitor; run {run.id} goes on (sft-tui watch {run.id})")
        return 0
    state = follow_run(run)
    return 0 if state == "completed" else 1


def demo(no_tui: Annotated[bool, typer.Option("--no-tui", help="Plain progress lines in the foreground; exit when the run ends.")] = False) -> None:
    """Train an offline tiny model on sample data (under a minute on a CPU) and follow it."""
    raise typer.Exit(run_demo(no_tui))


def train(
    config: Annotated[Path, typer.Argument(help="Run config TOML.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: section.key=value (repeatable).")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Stream progress lines; Ctrl-C stops following, not the run.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Launch even if the estimate says it does not fit.")] = False,
) -> None:
    """Validate a run config, then launch a detached training run that survives SSH hang-ups."""
    from sft_tui.core.runs.preflight import preflight, start_run

    run = start_run(preflight(config, set_ or [], force, note=note), str(config), out=print)
    if follow:
        raise typer.Exit(exit_code(follow_run(run)))


def register(app: typer.Typer) -> None:
    """Add demo and train to the main app."""
    app.command()(demo)
    app.command()(train)
