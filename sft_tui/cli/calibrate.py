"""`sft-tui calibrate`: measure this box's GPU on a short grid so the estimator corrects itself here.

Each grid point is a random-initialised model of a real preset's shape trained a few
steps in its own process (`python -m sft_tui.trainer.calibrate`): a fresh CUDA context
and clean peak counters each time, and an out-of-memory that only fails that point. The
measurements are stored as calibration records in `$SFT_TUI_HOME/calibration/`, where
`sft-tui estimate` (and every estimate on this GPU model) reads them.

It runs in the foreground and prints each point as it is measured: it takes minutes,
the GPU should be otherwise idle for clean numbers, and every point is stored as soon as
it is measured, so Ctrl-C or a hang-up loses only the point in progress (running it
again measures the grid again; the newest measurement of a point is the one used).
This process never imports torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from sft_tui.core.errors import UserError

POINTS_PER_METHOD = 3  # MIN_RECORDS: enough for a correction per method
MARGIN = 0.9  # measure a point only when its estimate is under 90% of the GPU's free memory
POINT_TIMEOUT_S = 900


@dataclass(frozen=True)
class CalibrationGpu:
    """The GPU being calibrated, as NVML sees it."""

    index: int
    name: str
    total_gib: float
    free_gib: float
    driver: str = ""


Measure = Callable[[dict, CalibrationGpu], dict]


def measure_in_subprocess(point: dict, gpu: CalibrationGpu) -> dict:
    """Run one grid point in `python -m sft_tui.trainer.calibrate`, pinned to `gpu`; its RESULT object."""
    env = {**os.environ, "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": str(gpu.index)}
    try:
        proc = subprocess.run([sys.executable, "-m", "sft_tui.trainer.calibrate", json.dumps(point), "--nvml-index", str(gpu.index)],
                              capture_output=True, text=True, timeout=POINT_TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"status": f"error: no result in {POINT_TIMEOUT_S} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if lines:
        return json.loads(lines[-1][len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}, no output"]
    return {"status": "oom" if "out of memory" in (proc.stderr or "").lower() else f"error: {tail[0][:200]}"}


def pick_gpu(snapshot, index: int | None, store) -> CalibrationGpu:
    """The GPU to calibrate: `index`, else the one with the most free memory; refused while sft-tui runs train on it."""
    from sft_tui.core.runs.placement import gpu_rooms
    from sft_tui.core.runs.queue import scan
    from sft_tui.core.units import GIB

    if not snapshot.available:
        raise UserError(f"{snapshot.reason}: sft-tui calibrate measures training peaks on a CUDA GPU",
                        fix="run it on the GPU machine; here `sft-tui estimate --gpu NAME` estimates for a GPU you name")
    rooms = {r.index: r for r in gpu_rooms(snapshot.gpus, scan(store).claims)}
    gpus = {g.index: g for g in snapshot.gpus}
    if index is not None and index not in gpus:
        raise UserError(f"this machine has no GPU {index} (it has {', '.join(map(str, gpus))})", "--gpu", "`sft-tui gpu` lists them")
    chosen = gpus[index] if index is not None else max(snapshot.gpus, key=lambda g: (g.memory_total_bytes - g.memory_used_bytes, -g.index))
    room = rooms[chosen.index]
    if room.runs:
        raise UserError(f"GPU{chosen.index} is in use by sft-tui run{'s' if len(room.runs) > 1 else ''} {', '.join(room.runs)}",
                        "--gpu", "calibrate an idle GPU: wait for the run (sft-tui runs), or name another with --gpu N")
    return CalibrationGpu(chosen.index, chosen.name, chosen.memory_total_bytes / GIB,
                          (chosen.memory_total_bytes - chosen.memory_used_bytes) / GIB, snapshot.driver_version)


def plan_points(kind: str, free_gib: float) -> tuple[list[tuple[dict, float]], list[tuple[dict, float]]]:
    """(points to measure with their estimates, points left out because they would not fit `free_gib`).

    The short grid lists candidates per method in order of preference; the first
    POINTS_PER_METHOD that fit are measured (a 24 GiB GPU gets small models for full fine-tuning).
    """
    from sft_tui.core.estimate.memory import estimate_memory
    from sft_tui.core.models.modelspec import spec_from_preset
    from sft_tui.trainer.calibrate import grid, settings_of

    chosen, left_out = [], []
    per_method: dict[str, int] = {}
    for point in grid(kind):
        estimate = estimate_memory(spec_from_preset(point["model"]), settings_of(point)).peak_gib
        if kind == "short" and per_method.get(point["method"], 0) >= POINTS_PER_METHOD:
            continue
        if estimate > MARGIN * free_gib:
            left_out.append((point, estimate))
            continue
        per_method[point["method"]] = per_method.get(point["method"], 0) + 1
        chosen.append((point, estimate))
    return chosen, left_out


def run_calibration(gpu: CalibrationGpu, points: list[tuple[dict, float]], home: Path, measure: Measure = measure_in_subprocess,
                    say: Callable[[str], None] = print, deadline: float = float("inf")) -> list[dict]:
    """Measure each point, store each measurement as it comes, say one line per point; the per-point outcomes."""
    from sft_tui.core.estimate.calibration import CalibrationRecord, append_record
    from sft_tui.core.runs.schema import now_iso
    from sft_tui.trainer.calibrate import point_label, settings_of

    outcomes = []
    for number, (point, estimate) in enumerate(points, 1):
        label = point_label(point)
        if time.time() > deadline:
            say(f"stopping: --max-minutes reached after {number - 1} of {len(points)} points; run it again to measure the rest")
            break
        started = time.time()
        result = measure(point, gpu)
        seconds = time.time() - started
        status = str(result.get("status", "error: no status"))
        prefix = f"[{number}/{len(points)}] {label}:"
        if status != "ok":
            say(f"{prefix} {status} ({seconds:.0f} s)")
            outcomes.append({"point": label, "status": status, "estimate_gib": round(estimate, 3)})
            if "cannot use the GPU" in status:  # every other point would fail the same way
                break
            continue
        record = CalibrationRecord(
            "calibrate", label, gpu.name, point["model"], settings_of(point), float(result["peak_reserved_gib"]),
            result.get("peak_allocated_gib"), result.get("cuda_context_gib"), round(gpu.total_gib, 2), now_iso(),
            result.get("tokens_per_s"), {"driver": gpu.driver, **(result.get("versions") or {})})
        path = append_record(home, record)
        measured = record.measured_reserved_gib + (record.cuda_context_gib or 0.0)
        say(f"{prefix} {record.measured_reserved_gib:.2f} GiB reserved + {record.cuda_context_gib or 0:.2f} context = "
            f"{measured:.2f} GiB; estimate {estimate:.2f} ({100 * (estimate - measured) / measured:+.0f}%) · {seconds:.0f} s")
        outcomes.append({"point": label, "status": "ok", "measured_gib": round(measured, 3), "estimate_gib": round(estimate, 3),
                         "file": str(path)})
    return outcomes


def calibrate(
    grid: Annotated[str, typer.Option(help="short: 3 points per method, minutes; quick: the bench's 36 points (an hour or more).")] = "short",
    gpu: Annotated[int | None, typer.Option("--gpu", help="The GPU's index (`sft-tui gpu`); default: the one with the most free memory.")] = None,
    max_minutes: Annotated[float, typer.Option("--max-minutes", help="Stop starting new points after this long.")] = 20.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end (progress still goes to stderr).")] = False,
) -> None:
    """Measure this GPU's real training peaks (random-initialised models of real shapes, a few steps each) so estimates here are calibrated."""
    from sft_tui.cli.output import print_json
    from sft_tui.core.estimate.calibration import calibration_for, records_file
    from sft_tui.core.runs.store import RunStore
    from sft_tui.core.runs.sysmon import SystemSampler

    if grid not in ("short", "quick"):
        raise UserError(f"--grid must be short or quick, got {grid!r}", "--grid")
    store = RunStore()
    sampler = SystemSampler()
    try:
        chosen = pick_gpu(sampler.sample_gpus(), gpu, store)
    finally:
        sampler.close()
    points, left_out = plan_points(grid, chosen.free_gib)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if as_json else (lambda line: print(line, flush=True))
    if not points:
        raise UserError(f"no grid point fits GPU{chosen.index}'s {chosen.free_gib:.1f} GiB free", "--gpu", "free the GPU's memory and run it again")
    say(f"calibrating GPU{chosen.index} {chosen.name} ({chosen.free_gib:.1f} of {chosen.total_gib:.1f} GiB free): {len(points)} points, "
        f"each a random-initialised model trained 3 steps in its own process; stored in {records_file(store.home, chosen.name, chosen.total_gib)}")
    if left_out:
        say(f"left out (estimated above {MARGIN:.0%} of the free memory): {', '.join(_label(p) for p, _ in left_out[:4])}"
            + (f" and {len(left_out) - 4} more" if len(left_out) > 4 else ""))
    outcomes = run_calibration(chosen, points, store.home, say=say, deadline=time.time() + 60 * max_minutes)
    if not any(o["status"] == "ok" for o in outcomes):
        first = outcomes[0]["status"] if outcomes else "nothing measured"
        raise UserError(f"no point could be measured on GPU{chosen.index} (first: {first})", fix="see `python -m sft_tui.trainer.calibrate --help` "
                        "and check that torch sees the GPU (python -c 'import torch; print(torch.cuda.is_available())')")
    results = {}
    for method in dict.fromkeys(p["method"] for p, _ in points):
        result = calibration_for(store.home, chosen.name, _table_gpu(chosen), method)
        results[method] = result
        for line in result.lines(here=True):
            say(line)
    if as_json:
        print_json({"gpu": {"index": chosen.index, "name": chosen.name, "total_gib": round(chosen.total_gib, 3)},
                    "file": str(records_file(store.home, chosen.name, chosen.total_gib)), "points": outcomes,
                    "calibration": {method: r.to_json() for method, r in results.items()}})


def _label(point: dict) -> str:
    from sft_tui.trainer.calibrate import point_label

    return point_label(point)


def _table_gpu(gpu: CalibrationGpu):
    from sft_tui.core.models.gpus import gpu_from_nvml_name

    return gpu_from_nvml_name(gpu.name, gpu.total_gib)


def register(app: typer.Typer) -> None:
    """Add calibrate to the main app."""
    app.command()(calibrate)
