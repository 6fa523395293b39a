"""`sft-tui train / demo / watch / stop / resume`: pre-flight, launch, follow, stop, resume.

Nothing here imports torch except `demo`, which builds the tiny model once (cached).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sft_tui.core.preflight import preflight, start_run
from sft_tui.core.runs import ACTIVE_STATES, RunDir, RunStore, effective_state, format_eta


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def progress_line(row: dict, max_steps: int, eta_s: float | None) -> str:
    """One plain progress line for a metrics row."""
    if "eval_loss" in row:
        return f"step {row['step']:>6}  eval_loss {row['eval_loss']:.4f}"
    speed = f"{row['tokens_per_s']:,.0f} tok/s" if row.get("tokens_per_s") else "- tok/s"
    memory = f"{row['gpu_reserved_gib']:.1f} GiB" if row.get("gpu_reserved_gib") is not None else "cpu"
    loss = f"{row['loss']:.4f}" if row.get("loss") is not None else "nan"
    return f"step {row['step']:>6}/{max_steps or '?'}  loss {loss}  lr {row.get('learning_rate') or 0:.2e}  {speed}  {memory}  ETA {format_eta(eta_s)}"


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
    """The demo: tiny model, sample data, a run of under a minute on the CPU, followed to its end."""
    home = RunStore().home
    config_path, overrides = demo_config_overrides(home)
    resolved = preflight(config_path, overrides, force=False, note=_note)
    run = start_run(resolved, str(config_path), out=print)
    if not no_tui and sys.stdout.isatty() and sys.stdin.isatty():
        from sft_tui.tui.app import make_app

        make_app(open_run=run.id).run()  # quitting leaves the run going; `sft-tui` finds it again
        print(f"left the monitor; run {run.id} goes on (sft-tui watch {run.id})")
        return 0
    state = follow(run)
    return 0 if state == "completed" else 1
