"""`sft-tui eval | merge | chat`: what comes after training. The work runs as a detached job; these commands wait and print.

Waiting is only watching: Ctrl-C, a closed terminal or an SSH hang-up leave the job going,
and `sft-tui runs` shows it and its result.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import typer

from sft_tui.cli.output import print_json, print_table

RUN_HELP = "Run id, a unique prefix of it, or 'latest'."
DETACH_HELP = "Start the job and return at once (`sft-tui runs` shows it and its result)."
USER_FIXABLE = ("config", "data", "disk")  # a failed job of these kinds exits 2, like any error a user can fix


def wait_for_job(job, quiet: bool):
    """Print the job's phases on stderr until it ends; returns (final status, why it is unreadable). Ctrl-C exits; the job goes on."""
    from sft_tui.core.runs.jobs import wait_until_inactive

    seen: list[str] = []

    def on_status(status) -> None:
        if not quiet and status.phase and (not seen or seen[-1] != status.phase):
            seen.append(status.phase)
            print(f"[{job.kind}] {status.phase}", file=sys.stderr, flush=True)

    try:
        wait_until_inactive(job, timeout_s=float("inf"), poll_s=0.3, on_status=on_status)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; {job.name} goes on (`sft-tui runs` shows it; `sft-tui stop {job.run.id} --job {job.name}` stops it)",
              file=sys.stderr, flush=True)
        raise typer.Exit(130) from None
    status, reason = job.status_or_reason()
    return status, reason


def _end_or_exit(job, status, reason: str) -> None:
    """Return when the job completed; otherwise print its error in one line and exit (2 for errors a user can fix)."""
    if status is not None and status.state == "completed":
        return
    if status is not None and status.error is not None:
        error = status.error
        print(f"error: {job.kind} failed ({error.kind}): {error.message}; {error.hint} (log: {job.log_path})", file=sys.stderr)
        raise typer.Exit(2 if error.kind in USER_FIXABLE else 1)
    state = status.state if status else f"unknown ({reason})"
    print(f"error: {job.kind} ended {state}; see {job.log_path}", file=sys.stderr)
    raise typer.Exit(1)


def eval_(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    data: Annotated[Path | None, typer.Option("--data", help="Held-out file (any format `data inspect` reads); default: the run's eval split.")] = None,
    n: Annotated[int | None, typer.Option("--n", min=1, help="Number of examples (default: eval.examples of the run config, 50).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help=DETACH_HELP)] = False,
) -> None:
    """Evaluate a run against its base model: answer loss, preference accuracy, task and tool-call checks, stopping, forgetting."""
    from sft_tui.core.evaluate.report import metric_rows, preference_lines
    from sft_tui.core.runs.jobs import check_run_config, job_request, start_job
    from sft_tui.core.runs.store import RunStore

    found = RunStore().find_run(run)
    found.require_trained_output()  # at once, not from a job a second later
    check_run_config(found)
    if data is not None:
        from sft_tui.core.data.formats import load_examples

        load_examples(data, "auto")  # a missing file or a bad row: one line now, not after the models load
    job = start_job(found, job_request("eval", data=str(data.resolve()) if data else "", n=n))
    print(f"started {job.name} of run {found.id} (log: {job.log_path})", file=sys.stderr, flush=True)
    if detach:
        return
    status, reason = wait_for_job(job, quiet=as_json)
    _end_or_exit(job, status, reason)
    report = found.read_eval_report() or {}
    if as_json:
        print_json(report)
        return
    print_table(["metric", "base", "tuned", "change"], metric_rows(report),
                title=f"{found.id}: {report.get('examples')} examples from {report.get('data')} ({report.get('device')})")
    notes = ([f"base: {report.get('base_model')}"] if report.get("base_adapter") else []) + preference_lines(report)
    notes.append(f"report: {found.eval_markdown_path} (answers side by side), {found.eval_report_path}; model card: {found.model_card_path}")
    width = max(40, shutil.get_terminal_size().columns - 1) if sys.stdout.isatty() else 10_000  # piped: one line each, for grep
    for line in notes:  # wrapped between words (a terminal wraps mid-word), paths kept whole
        print(textwrap.fill(line, width=width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False))


def merge(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the merged model (new or empty).")],
    dtype: Annotated[str, typer.Option(help="bf16, fp16 or fp32.")] = "bf16",
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help=DETACH_HELP)] = False,
) -> None:
    """Merge a LoRA/QLoRA adapter into its base (loaded in 16 bits) and save a standalone Hugging Face model."""
    from sft_tui.core.evaluate.merge_check import check_merge_request
    from sft_tui.core.runs.jobs import check_run_config, job_request, start_job
    from sft_tui.core.runs.store import RunStore

    found = RunStore().find_run(run)
    output = output.resolve()
    check_merge_request(found, output, dtype, force)
    check_run_config(found)  # refused here, in one line, before any torch loads
    job = start_job(found, job_request("merge", output=str(output), dtype=dtype, force=force))
    print(f"started {job.name} of run {found.id} (log: {job.log_path})", file=sys.stderr, flush=True)
    if detach:
        return
    status, reason = wait_for_job(job, quiet=False)
    _end_or_exit(job, status, reason)
    print(f"wrote a standalone model to {status.output}: AutoModelForCausalLM.from_pretrained({status.output!r})")


def chat(run: Annotated[str, typer.Argument(help=RUN_HELP)]) -> None:
    """Chat with the tuned model in the terminal UI; ctrl+t switches to the base model for the same prompt."""
    from sft_tui.cli.ui import run_tui
    from sft_tui.core.runs.jobs import check_run_config
    from sft_tui.core.runs.store import RunStore

    found = RunStore().find_run(run)
    found.require_trained_output()
    check_run_config(found)
    run_tui(chat_run=found.id)


def register(app: typer.Typer) -> None:
    """Add eval, merge and chat to the main app."""
    app.command(name="eval")(eval_)
    app.command()(merge)
    app.command()(chat)
