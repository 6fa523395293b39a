"""`sft-tui config check | show | init`: validate, explain and start run configs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from sft_tui.core.errors import UserError

config_app = typer.Typer(help="Create, check and show run configs.", no_args_is_help=True)


@config_app.command("check")
def config_check(
    path: Annotated[Path, typer.Argument(help="Run config TOML.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: section.key=value (repeatable).")] = None,
) -> None:
    """Validate a run config (with its recipe and overrides); exit 2 with the first problem."""
    from sft_tui.core.runs.preflight import load_and_check_config

    cfg = load_and_check_config(path, set_ or [], note=lambda line: print(line, file=sys.stderr)).config
    print(f"{path}: valid ({cfg.method.name} on {cfg.model.name}, recipe {cfg.recipe or 'none'})")


@config_app.command("show")
def config_show(
    path: Annotated[Path, typer.Argument(help="Run config TOML.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: section.key=value (repeatable).")] = None,
    origins: Annotated[bool, typer.Option("--origins/--no-origins", help="Say where each value came from.")] = True,
) -> None:
    """Print the fully resolved config: every field, and where its value came from."""
    from sft_tui.core.config.load import dump_run_config, load_run_config

    resolved = load_run_config(path, set_ or [])
    sys.stdout.write(dump_run_config(resolved.config, resolved.origins if origins else None))


@config_app.command("init")
def config_init(
    path: Annotated[Path, typer.Argument(help="Where to write the new run config.")],
    model: Annotated[str, typer.Option(help="Preset name, model folder, or repo id in the local HF cache.")] = "smollm2-135m",
    recipe: Annotated[str, typer.Option(help="Recipe preset: lora, qlora or full.")] = "lora",
    data: Annotated[str, typer.Option(help="Training data file (relative to the config file).")] = "train.jsonl",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter run config: recipe, model, data, and every other field commented out."""
    from sft_tui.core.config.starter import starter_config_text
    from sft_tui.core.models.modelspec import resolve_model

    if path.exists() and not force:
        raise UserError("file exists; not overwriting it", str(path), "choose another path or pass --force")
    resolve_model(model)  # fail now on an unknown model, not at launch
    text = starter_config_text(model=model, recipe=recipe, data=data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}; check it with: sft-tui config check {path}")
