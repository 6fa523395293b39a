"""`sft-tui train / demo / watch / stop / resume`: pre-flight, launch, follow, stop, resume.

Nothing here imports torch except `demo`, which builds the tiny model once (cached).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from sft_tui.core.errors import UserError
from sft_tui.core.runs import ACTIVE_STATES, RunDir, RunStore, effective_state

GIB = 1024**3


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def preflight(config_path: Path, overrides: list[str], force: bool, note=_note):
    """Every check that can fail before a run starts, in seconds; returns the resolved config.

    `note` receives the progress lines (stderr for the CLI, the Launch screen in the TUI).
    """
    from sft_tui.cli_estimate import resolve_gpu
    from sft_tui.core.estimate_report import render_estimate
    from sft_tui.cli_groups import load_and_check_config
    from sft_tui.core.data.formats import load_examples
    from sft_tui.core.estimate_fit import build_estimate
    from sft_tui.core.estimator import settings_from_run_config
    from sft_tui.core.model_files import find_model_files
    from sft_tui.core.modelspec import resolve_model

    resolved = load_and_check_config(config_path, overrides)
    config = resolved.config
    train = load_examples(Path(config.data.train), config.data.format)
    rows = len(train.examples)
    line = f"data: {train.format}, {rows} training rows"
    if train.skipped:
        line += f", {len(train.skipped)} skipped (first: {train.skipped[0][0]}: {train.skipped[0][1]})"
    if config.data.eval:
        line += f", {len(load_examples(Path(config.data.eval), config.data.format).examples)} eval rows"
    note(line)
    files = find_model_files(config.model.name)
    if not files.has_tokenizer:
        raise UserError("no tokenizer files next to the weights", str(files.folder), "use a complete model folder (tokenizer.json or tokenizer.model)")
    note(f"model: {files.folder}" + ("" if files.has_chat_template or config.model.chat_template else " (no chat template: a default one is set and saved with the output)"))
    target = resolve_gpu(None, None)
    spec = resolve_model(str(files.folder))
    if target is None:
        from sft_tui.core.estimator import estimate_memory

        peak = estimate_memory(spec, settings_from_run_config(config)).peak_gib
        note(f"GPU: none found; training runs on the CPU (fine for tiny models, very slow for real ones); on a GPU this run would peak near {peak:.1f} GiB")
    else:
        settings = settings_from_run_config(config, target.info.bf16_supported if target.info else None)
        estimate = build_estimate(spec, settings, target)
        note(f"estimate: {estimate.memory.peak_gib:.1f} GiB peak on {target.name} ({target.memory_gib:.1f} GiB)")
        if not estimate.fits and not force:
            note(render_estimate(estimate))
            raise UserError(f"the estimate ({estimate.memory.peak_gib:.1f} GiB) does not fit {target.name} ({target.memory_gib:.1f} GiB)",
                            str(config_path), "apply a suggestion above (e.g. --set training.micro_batch_size=1) or pass --force to try anyway")
    trainable = spec.count_parameters().total if config.method.name == "full" else spec.count_parameters().total // 100
    need = trainable * 12 * (config.training.save_total_limit + 1)  # weights/adapter + optimizer state per checkpoint
    home = RunStore().home
    home.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(home).free
    if free < need:
        raise UserError(f"{free / GIB:.1f} GiB free where runs live, checkpoints need about {need / GIB:.1f} GiB", str(home),
                        "free disk space, lower training.save_total_limit, or set SFT_TUI_HOME elsewhere")
    return resolved


def start_run(resolved, source: str, launch_fn=None, out=print, store: RunStore | None = None) -> RunDir:
    """Create the run dir with the resolved config and launch its detached trainer (launch_fn: tests pass a fake)."""
    from sft_tui.core.config import dump_run_config
    from sft_tui.core.launcher import launch

    config = resolved.config
    text = dump_run_config(config, resolved.origins, header=f"Resolved by sft-tui from {source}; this is what the run used.")
    run = (store or RunStore()).create_run(text, config.model.name, config.method.name, name=config.output.name)
    pid = (launch_fn or launch)(run)
    out(f"started run {run.id} (supervisor pid {pid}); it keeps going if this terminal closes")
    out(f"  watch:  sft-tui watch {run.id}\n  stop:   sft-tui stop {run.id}\n  folder: {run.path}")
    return run


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def progress_line(row: dict, max_steps: int, eta_s: float | None) -> str:
    """One plain progress line for a metrics row."""
    if "eval_loss" in row:
        return f"step {row['step']:>6}  eval_loss {row['eval_loss']:.4f}"
    speed = f"{row['tokens_per_s']:,.0f} tok/s" if row.get("tokens_per_s") else "- tok/s"
    memory = f"{row['gpu_reserved_gib']:.1f} GiB" if row.get("gpu_reserved_gib") is not None else "cpu"
    loss = f"{row['loss']:.4f}" if row.get("loss") is not None else "nan"
    return f"step {row['step']:>6}/{max_steps or '?'}  loss {loss}  lr {row.get('learning_rate') or 0:.2e}  {speed}  {memory}  ETA {_clock(eta_s)}"


def follow(run: RunDir, poll_s: float = 1.0) -> str | None:
    """Print progress until the run ends; Ctrl-C stops following (never the run). Returns the final state."""
    offset = 0
    try:
        while True:
            chunk = run.read_new_metrics(offset)
            offset = chunk.offset
            status = run.read_status()
            for row in chunk.rows:
                print(progress_line(row, status.max_steps if status else 0, status.eta_s if status else None), flush=True)
            state = effective_state(status) if status else "unknown"
            if state not in ACTIVE_STATES:
                summary = run.read_summary() or {}
                line = f"run {run.id}: {state}"
                if status and status.error:
                    line += f" ({status.error.kind}: {status.error.message}; {status.error.hint})"
                if summary.get("final_loss") is not None:
                    line += f"; loss {summary.get('first_loss'):.3f} -> {summary['final_loss']:.3f}"
                    if summary.get("output"):
                        line += f"; saved to {summary['output']}"
                print(line, flush=True)
                return state
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print(f"\nstopped following; the run goes on (sft-tui watch {run.id}, sft-tui stop {run.id})", flush=True)
        return None


def demo_config_overrides(home: Path) -> tuple[Path, list[str]]:
    """Build (once) the tiny model under home/cache; returns the demo config and its model override."""
    from sft_tui.core.presets import assets_dir

    demo = assets_dir() / "demo"
    folder = home / "cache" / "tiny-demo-model"
    if not (folder / "config.json").is_file():
        _note(f"building the tiny demo model in {folder} (first time only, about 10 s)...")
        from sft_tui.trainer.tiny import build_tiny_model

        build_tiny_model(folder, [demo / "train.jsonl"])
    return demo / "demo.toml", [f"model.name={folder}"]


def run_demo(no_tui: bool) -> int:
    """The demo: tiny model, sample data, a run of about a minute on the CPU, followed to its end."""
    home = RunStore().home
    config_path, overrides = demo_config_overrides(home)
    resolved = preflight(config_path, overrides, force=False)
    run = start_run(resolved, str(config_path))
    if not no_tui and sys.stdout.isatty() and sys.stdin.isatty():
        from sft_tui.tui.app import make_app

        make_app(open_run=run.id).run()  # quitting leaves the run going; `sft-tui` finds it again
        print(f"left the monitor; run {run.id} goes on (sft-tui watch {run.id})")
        return 0
    state = follow(run)
    return 0 if state == "completed" else 1
