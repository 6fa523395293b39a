"""`sft-tui eval | merge | chat`: what comes after training (the torch work lives in sft_tui.trainer)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from sft_tui.cli_output import print_json, print_table

RUN_HELP = "Run id, a unique prefix of it, or 'latest'."


def eval_(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    data: Annotated[Optional[Path], typer.Option("--data", help="Held-out file (any format `data inspect` reads); default: the run's eval split.")] = None,
    n: Annotated[Optional[int], typer.Option("--n", min=1, help="Number of examples (default: eval.examples of the run config, 50).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Evaluate a run against its base model: answer loss, task checks, stopping, forgetting."""
    from sft_tui.core.eval_report import metric_rows
    from sft_tui.core.runs import RunStore

    found = RunStore().find_run(run)
    found.require_trained_output()  # before the seconds torch takes to import
    from sft_tui.trainer.evaluate import evaluate_run

    report = evaluate_run(found, data, n, progress=None if as_json else lambda line: print(f"[eval] {line}", file=sys.stderr, flush=True))
    if as_json:
        print_json(report)
        return
    print_table(["metric", "base", "tuned", ""], metric_rows(report),
                title=f"{found.id}: {report['examples']} examples from {report['data']} ({report['device']})")
    print(f"report: {found.eval_dir / 'report.md'} (answers side by side), {found.eval_report_path}; model card: {found.model_card_path}")


def merge(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the merged model (new or empty).")],
    dtype: Annotated[str, typer.Option(help="bf16, fp16 or fp32.")] = "bf16",
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder.")] = False,
) -> None:
    """Merge a LoRA/QLoRA adapter into its base (loaded in 16 bits) and save a standalone Hugging Face model."""
    from sft_tui.core.runs import RunStore
    from sft_tui.trainer.merge import merge_run  # checks the request before it imports torch

    merge_run(RunStore().find_run(run), output, dtype, force)


def chat(run: Annotated[str, typer.Argument(help=RUN_HELP)]) -> None:
    """Chat with the tuned model in the terminal UI; ctrl+b switches to the base model for the same prompt."""
    from sft_tui.cli import run_tui
    from sft_tui.core.runs import RunStore

    found = RunStore().find_run(run)
    found.require_trained_output()
    run_tui(chat_run=found.id)


def register(app: typer.Typer) -> None:
    """Add the three commands to the main app."""
    app.command(name="eval")(eval_)
    app.command()(merge)
    app.command()(chat)
