"""The `sft-tui` command line (Typer). Thin: it parses, calls core, prints.

Heavy libraries (torch, transformers, textual) are imported only inside the commands
that need them, so `sft-tui --help` answers at once (bench/cli_startup.py measures it).
A UserError from anywhere becomes one line on stderr and exit code 2 (see main()).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sft_tui import __version__
from sft_tui.cli_after import register as register_after_commands
from sft_tui.cli_data import data_app
from sft_tui.cli_groups import config_app, models_app
from sft_tui.cli_output import print_json, print_table, short_time
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


def run_tui(open_run: str | None = None, chat_run: str | None = None) -> None:
    """Open the terminal UI (home, a run's monitor, or a chat); a non-terminal gets one clear line instead."""
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise UserError("the terminal UI needs an interactive terminal", fix="use `sft-tui runs` or `sft-tui watch RUN --plain` in scripts")
    from sft_tui.tui.app import make_app

    make_app(open_run=open_run, chat_run=chat_run).run()


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
        run_tui()


@app.command()
def demo(no_tui: Annotated[bool, typer.Option("--no-tui", help="Plain progress lines in the foreground; exit when the run ends.")] = False) -> None:
    """Train an offline tiny model on sample data (under a minute on a CPU) and follow it."""
    from sft_tui.cli_train import run_demo

    raise typer.Exit(run_demo(no_tui))


@app.command()
def wizard(
    answers: Annotated[Optional[Path], typer.Option("--answers", help="TOML file with answers; without it the questions are asked.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the recommendation as JSON.")] = False,
    record: Annotated[Optional[Path], typer.Option("--record", help="Write a Markdown decision record the team can commit.")] = None,
    config_out: Annotated[Optional[Path], typer.Option("--config-out", help="Write a starter run config when fine-tuning is recommended.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --record / --config-out files.")] = False,
) -> None:
    """Decide between prompting/ICL, RAG, LoRA/QLoRA and full fine-tuning, with reasons."""
    from sft_tui.cli_wizard import run_wizard

    run_wizard(answers, as_json, record, config_out, force)


@app.command()
def estimate(
    model: Annotated[Optional[str], typer.Argument(help="Preset name, config.json / model folder, or repo id in the local HF cache (default: the --config's model).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Take every setting from a run config TOML; options below override it.")] = None,
    method: Annotated[Optional[str], typer.Option(help="full, lora or qlora. [default: lora]")] = None,
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="Sequence length in tokens. [default: 2048]")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Micro-batch size. [default: 1]")] = None,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help="Gradient accumulation steps. [default: 1]")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations. [default: on]")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adamw_torch, adamw_8bit, paged_adamw_8bit, sgd or adafactor. [default: adamw_torch]")] = None,
    precision: Annotated[Optional[str], typer.Option(help="bf16, fp16 or fp32. [default: bf16]")] = None,
    attention: Annotated[Optional[str], typer.Option(help="sdpa, flash_attention_2 or eager. [default: sdpa]")] = None,
    lora_r: Annotated[Optional[int], typer.Option("--lora-r", help="LoRA rank. [default: 16]")] = None,
    lora_targets: Annotated[Optional[str], typer.Option("--lora-targets", help='"all-linear" or comma-separated layers (q,v or q_proj,v_proj). [default: all-linear]')] = None,
    lora_dropout: Annotated[Optional[float], typer.Option("--lora-dropout", help="LoRA dropout (it costs a mask per adapted layer). [default: 0.05]")] = None,
    quant_type: Annotated[Optional[str], typer.Option("--quant-type", help="QLoRA 4-bit type: nf4 or fp4. [default: nf4]")] = None,
    double_quant: Annotated[Optional[bool], typer.Option("--double-quant/--no-double-quant", help="QLoRA double quantisation. [default: on]")] = None,
    packing: Annotated[Optional[bool], typer.Option("--packing/--no-packing", help="Packed sequences (no padding mask). [default: off]")] = None,
    gpu_gib: Annotated[Optional[float], typer.Option("--gpu-gib", help="GPU memory in GiB instead of the detected GPU.")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help="GPU by name (A100-80GB, H100, 4090, L4, T4, ...) instead of the detected one.")] = None,
    tokens: Annotated[Optional[float], typer.Option("--tokens", help="Training tokens (dataset tokens x epochs) for an ETA.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Peak GPU memory and time of a run from the model's config alone, against your GPU."""
    from sft_tui.cli_estimate import run_estimate

    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets is not None else None
    overrides = dict(method=method, seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum,
                     gradient_checkpointing=gradient_checkpointing, optimizer=optimizer, precision=precision, attention=attention,
                     lora_r=lora_r, lora_targets=targets, lora_dropout=lora_dropout, quant_type=quant_type, double_quant=double_quant,
                     padded=None if packing is None else not packing)
    run_estimate(model, config, overrides, gpu, gpu_gib, tokens, as_json)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Run config TOML.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: section.key=value (repeatable).")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Stream progress lines; Ctrl-C stops following, not the run.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Launch even if the estimate says it does not fit.")] = False,
) -> None:
    """Validate a run config, then launch a detached training run that survives SSH hang-ups."""
    from sft_tui.cli_train import _note
    from sft_tui.cli_train import follow as follow_run
    from sft_tui.core.preflight import preflight, start_run

    run = start_run(preflight(config, set_ or [], force, note=_note), str(config), out=print)
    if follow:
        follow_run(run)


@app.command()
def runs(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """List runs under $SFT_TUI_HOME (default ./sft-runs): state, model, progress, last loss."""
    from sft_tui.core.runs import RunStore

    store = RunStore()
    summaries = store.list_runs()
    if as_json:
        print_json([s.to_json() for s in summaries])
        return
    if not summaries:
        print(f"no runs in {store.runs_dir}")
        return
    rows = []
    for s in summaries:
        progress = f"{s.step}/{s.max_steps}" if s.max_steps else str(s.step)
        loss = f"{s.last_loss:.4f}" if s.last_loss is not None else "-"
        rows.append([s.id, s.state, s.model, s.method, progress, loss, short_time(s.started_at), short_time(s.updated_at)])
    print_table(["id", "state", "model", "method", "step", "loss", "started", "updated"], rows, title=str(store.runs_dir))


@app.command()
def watch(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix of it, or 'latest'.")],
    plain: Annotated[bool, typer.Option("--plain", help="Plain progress lines instead of the monitor (automatic without a terminal).")] = False,
) -> None:
    """Open the live monitor of a run; leaving it never stops the run."""
    from sft_tui.cli_train import follow as follow_run
    from sft_tui.core.runs import RunStore

    found = RunStore().find_run(run)
    if plain or not (sys.stdout.isatty() and sys.stdin.isatty()):
        follow_run(found)
    else:
        run_tui(open_run=found.id)


@app.command()
def stop(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix of it, or 'latest'.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it has stopped.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait before killing it (SIGKILL).")] = 120.0,
) -> None:
    """Stop a run cleanly: it finishes the step and saves a checkpoint; a second stop kills it."""
    from sft_tui.core.launcher import request_stop, wait_until_inactive
    from sft_tui.core.runs import RunStore

    found = RunStore().find_run(run)
    result = request_stop(found)
    print(result.message)
    if not wait or result.escalated:
        return
    state = wait_until_inactive(found, timeout)
    if state is None:
        print(f"still running after {timeout:g} s: {request_stop(found).message}")
    else:
        print(f"run {found.id}: {state}")


@app.command()
def resume(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix of it, or 'latest'.")],
    follow: Annotated[bool, typer.Option("--follow", help="Stream progress lines; Ctrl-C stops following, not the run.")] = False,
) -> None:
    """Resume a stopped, failed or crashed run from its last checkpoint, in the same run dir."""
    from sft_tui.cli_train import follow as follow_run
    from sft_tui.core.launcher import check_resumable, launch
    from sft_tui.core.runs import RunStore

    found = RunStore().find_run(run)
    check_resumable(found)
    checkpoint = found.latest_checkpoint()
    pid = launch(found, resume=True)
    print(f"resuming run {found.id} from {checkpoint.name} (supervisor pid {pid})")
    if follow:
        follow_run(found)


@app.command()
def gpu(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Show the GPUs (memory, utilisation, temperature, power, processes) and the host."""
    from sft_tui.cli_output import gib
    from sft_tui.core.sysmon import SystemSampler

    sampler = SystemSampler()
    snapshot, host = sampler.sample_gpus(), sampler.sample_host()
    sampler.close()
    if as_json:
        print_json({"gpu": snapshot.to_json(), "host": host.to_json()})
        return
    print(f"host: {host.cpu_count} CPUs, RAM {gib(host.ram_used_bytes)} / {gib(host.ram_total_bytes)} GiB")
    if not snapshot.available:
        print(snapshot.reason)
        return
    rows: list[list[Any]] = []
    for g in snapshot.gpus:
        rows.append([g.index, g.name, f"{gib(g.memory_used_bytes)} / {gib(g.memory_total_bytes)}",
                     _maybe(g.utilization_pct, "%"), _maybe(g.temperature_c, " C"), _maybe(g.power_w, " W"),
                     g.compute_capability, "yes" if g.bf16_supported else "no", len(g.processes)])
    print_table(["#", "name", "memory GiB", "util", "temp", "power", "cc", "bf16", "procs"], rows, title=f"driver {snapshot.driver_version}")


def _maybe(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


# eval, merge and chat live in cli_after; registered here so `--help` lists them after the run commands
register_after_commands(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `sft-tui` console script."""
    try:
        app(args=argv, prog_name="sft-tui")
    except UserError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
