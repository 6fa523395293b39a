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


def newest_demo_adapter(store) -> str | None:
    """The newest completed SFT demo run with an adapter (what `demo --dpo` starts from), or None."""
    import tomllib

    for run in store.run_dirs():  # newest first
        status = run.read_status()
        if status is None or status.state != "completed" or not (run.adapter_dir / "adapter_config.json").is_file():
            continue
        try:
            config = tomllib.loads(run.read_config_text())
        except (OSError, ValueError):
            continue
        if config.get("output", {}).get("name") == "demo" and config.get("method", {}).get("objective", "sft") == "sft":
            return run.id
    return None


def run_demo(no_tui: bool, dpo: bool = False) -> int:
    """The demo: tiny model, sample data, a run of under a minute on the CPU, followed to its end.

    dpo: the preference demo (assets/demo/demo_dpo.toml) on top of the newest SFT demo run, or the base when there is none.
    """
    from sft_tui.core.runs.preflight import check_home_writable, preflight, start_run
    from sft_tui.core.runs.store import RunStore

    store = RunStore()
    home = store.home
    check_home_writable(home)
    config_path, overrides = demo_config_overrides(home)
    if dpo:
        config_path = config_path.parent / "demo_dpo.toml"
        start = newest_demo_adapter(store)
        if start:
            overrides.append(f"model.adapter={start}")
            note(f"DPO on top of the SFT demo run {start} (its adapter is the start and the reference)")
        else:
            note("no completed `sft-tui demo` run here: DPO starts from the base model (the usual order is `sft-tui demo` first)")
    resolved = preflight(config_path, overrides, force=False, note=note)
    run = start_run(resolved, str(config_path), out=print)
    if not no_tui and sys.stdout.isatty() and sys.stdin.isatty():
        from sft_tui.tui.app import make_app

        make_app(open_run=run.id).run()  # quitting leaves the run going; `sft-tui` finds it again
        status, _ = run.status_or_reason()
        if status is not None and status.state in ("queued", "running"):
            print(f"left the monitor; run {run.id} goes on (sft-tui watch {run.id})")
        else:
            print(f"left the monitor; run {run.id} is {status.state if status else 'unknown'} (its folder: {run.path})")
        return 0
    state = follow_run(run)
    return 0 if state == "completed" else 1


def demo(no_tui: Annotated[bool, typer.Option("--no-tui", help="Plain progress lines in the foreground; exit when the run ends.")] = False,
         dpo: Annotated[bool, typer.Option("--dpo", help="Preference tuning (DPO) on right vs flawed answers, on top of the newest demo run.")] = False) -> None:
    """Train an offline tiny model on sample data (under a minute on a CPU) and follow it."""
    raise typer.Exit(run_demo(no_tui, dpo))


def train(
    config: Annotated[Path, typer.Argument(help="Run config TOML.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: section.key=value (repeatable).")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Stream progress lines; Ctrl-C stops following, not the run.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Launch even if the estimate says it does not fit (or no GPU has room now).")] = False,
    queue: Annotated[bool, typer.Option("--queue", help="Wait in the box's queue until a GPU has room for the run's estimated peak, then start.")] = False,
    priority: Annotated[int, typer.Option("--priority", help="Queue priority: higher starts first; equal priorities start in submission order.")] = 0,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="The GPUs this run may use, e.g. 2 or 2,3 (it gets one of them); default: any.")] = None,
    max_parallel: Annotated[int, typer.Option("--max-parallel", min=1, help="Without a GPU: start only while fewer than N runs use the CPU.")] = 1,
) -> None:
    """Validate a run config, then launch a detached training run that survives SSH hang-ups.

    It goes to the GPU with the most free memory that fits its estimate (--gpus limits the choice); with --queue it waits, holding no GPU memory, until a GPU has room.
    """
    from sft_tui.core.runs.preflight import PlacementRequest, preflight, start_run

    if (priority or max_parallel != 1) and not queue:
        note("note: --priority and --max-parallel only matter with --queue")
    request = PlacementRequest(queue=queue, priority=priority, gpus=parse_gpu_ids(gpus), max_parallel=max_parallel)
    if request.gpus:  # before the pre-flight's notes: an impossible --gpus is the one line to read
        from sft_tui.core.runs.preflight import check_gpu_ids
        from sft_tui.core.runs.sysmon import gpu_snapshot

        check_gpu_ids(request, gpu_snapshot())
    run = start_run(preflight(config, set_ or [], force, note=note), str(config), out=print, request=request, force=force)
    if follow:
        raise typer.Exit(exit_code(follow_run(run)))


def parse_gpu_ids(text: str | None) -> tuple[int, ...]:
    """`--gpus 2,3` as (2, 3); one line naming the bad part otherwise."""
    from sft_tui.core.errors import UserError

    if text is None:
        return ()
    if not text.strip():
        raise UserError("--gpus is empty", fix="give GPU indices as `sft-tui gpu` lists them, e.g. --gpus 0 or --gpus 2,3; leave it out for any GPU")
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise UserError(f"--gpus {text}: {part!r} is not a GPU index", fix="give indices as `sft-tui gpu` lists them, e.g. --gpus 0 or --gpus 2,3")
        ids.append(int(part))
    return tuple(dict.fromkeys(ids))


def register(app: typer.Typer) -> None:
    """Add demo and train to the main app."""
    app.command()(demo)
    app.command()(train)
