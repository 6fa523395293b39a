"""Measure real peak GPU memory of training steps and hold the estimator to it.

Builds random-initialised models of real preset sizes (memory does not depend on the
weights' values) the way sft-tui's recipes load them: fp32 master weights for full
fine-tuning, a bf16 base with fp32 LoRA adapters for LoRA, bitsandbytes NF4 with double
quantisation plus peft's k-bit preparation for QLoRA. Runs a few steps (bf16 autocast,
padded batches with labels, fused or 8-bit AdamW, optional gradient checkpointing) and
records torch's peak reserved memory, the CUDA context as NVML sees the process, and
tokens/s. Every grid point runs in its own subprocess: a fresh CUDA context, clean peak
counters, and an out-of-memory that cannot take the harness down.

    python bench/memory_calibration.py --grid quick          GPU: appends to bench/results/memory_calibration.csv
    python bench/memory_calibration.py --report              estimator vs measurements (median / worst error)
    python bench/memory_calibration.py --dry-run             CPU: runs every code path on tiny models, no numbers

The measuring itself lives in sft_tui/trainer/calibrate.py, shared with `sft-tui calibrate`
(which stores its points as calibration records in $SFT_TUI_HOME rather than this CSV).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sft_tui.core.estimate.memory import TrainSettings, estimate_memory
from sft_tui.core.models.modelspec import spec_from_preset
from sft_tui.core.units import GIB
from sft_tui.trainer.calibrate import BENCH_MODELS, measure_point, settings_of, versions
from sft_tui.trainer.calibrate import grid as calibration_grid

CSV_PATH = ROOT / "bench" / "results" / "memory_calibration.csv"
FIELDS = ["gpu", "driver", "torch", "transformers", "peft", "bitsandbytes", "model", "method", "seq_len", "batch_size",
          "grad_accum", "gradient_checkpointing", "optimizer", "lora_r", "status", "peak_reserved_gib", "peak_allocated_gib",
          "cuda_context_gib", "measured_peak_gib", "estimate_gib", "tokens_per_s", "seconds"]
MODELS = list(BENCH_MODELS)


def grid(kind: str) -> list[dict]:
    """Settings to measure: 'quick' covers each model x method at three shapes; 'full' is the whole cross product."""
    return calibration_grid(kind)


def _settings(point: dict) -> TrainSettings:
    return settings_of(point)


def measure_one(point: dict, dry_run: bool) -> dict:
    """Build, train 3 steps, return the measured peaks (run inside a fresh subprocess): sft_tui.trainer.calibrate."""
    return measure_point(point, dry_run)


def _versions() -> dict:
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    name = pynvml.nvmlDeviceGetName(handle)
    driver = pynvml.nvmlSystemGetDriverVersion()
    out = {"gpu": name, "driver": driver, **versions()}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in out.items()}


def run_grid(kind: str, out: Path, dry_run: bool, max_minutes: float) -> None:
    """Measure every grid point not yet in `out`, each in a subprocess; skip points the estimator calls hopeless."""
    points = grid(kind)
    if dry_run:  # every recipe with checkpointing, and LoRA without it
        points = [p for p in points if p["model"] == "qwen2.5-0.5b" and (p["seq_len"] == 2048 or (p["seq_len"] == 512 and p["method"] == "lora"))]
    done = set()
    if out.exists() and not dry_run:
        with out.open() as handle:
            done = {tuple(str(row[k]) for k in ("model", "method", "seq_len", "batch_size", "gradient_checkpointing")) for row in csv.DictReader(handle)}
    versions = {} if dry_run else _versions()
    gpu_gib = 0.0 if dry_run else _gpu_total_gib()
    deadline = time.time() + max_minutes * 60
    for point in points:
        key = tuple(str(point[k]) for k in ("model", "method", "seq_len", "batch_size", "gradient_checkpointing"))
        if key in done:
            continue
        if time.time() > deadline:
            print(f"stopping: --max-minutes {max_minutes} reached; run again to continue")
            break
        estimate = estimate_memory(spec_from_preset(point["model"]), _settings(point)).peak_gib
        row = {**versions, **point, "estimate_gib": round(estimate, 3)}
        if not dry_run and estimate > 1.3 * gpu_gib:
            row["status"] = "skipped: estimate far above GPU memory"
        else:
            start = time.time()
            proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(point)] + (["--dry-run"] if dry_run else []),
                                  capture_output=True, text=True, timeout=900)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if lines:
                row.update(json.loads(lines[-1][7:]))
            else:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                row["status"] = "oom" if "out of memory" in (proc.stderr or "").lower() else f"error: {tail[0][:200]}"
            row["seconds"] = round(time.time() - start, 1)
        print(json.dumps({k: row.get(k) for k in ("model", "method", "seq_len", "batch_size", "gradient_checkpointing", "status", "measured_peak_gib", "estimate_gib")}), flush=True)
        if dry_run:
            if not str(row["status"]).startswith("dry-run ok"):
                raise SystemExit(f"dry run failed: {row['status']}")
            continue
        new = not out.exists()
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})


def _gpu_total_gib() -> float:
    import pynvml

    pynvml.nvmlInit()
    return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total / GIB


def report(path: Path) -> dict:
    """Estimator (as it is now) vs every measured row: per-row error, median and worst absolute error."""
    with path.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] == "ok"]
    errors = []
    for row in rows:
        estimate = estimate_memory(spec_from_preset(row["model"]), _settings(row)).peak_gib
        measured = float(row["measured_peak_gib"])
        error = (estimate - measured) / measured
        errors.append(abs(error))
        print(f"{row['model']:14} {row['method']:5} seq {row['seq_len']:>5} b {row['batch_size']} ckpt {row['gradient_checkpointing']:5} "
              f"measured {measured:7.2f} GiB  estimate {estimate:7.2f} GiB  error {error:+6.1%}")
    summary = {"rows": len(errors), "median_abs_error": statistics.median(errors) if errors else None, "worst_abs_error": max(errors) if errors else None}
    if errors:
        print(f"{len(errors)} measurements: median |error| {summary['median_abs_error']:.1%}, worst {summary['worst_abs_error']:.1%} "
              f"(targets: median <= 10%, worst <= 20%)")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", choices=("quick", "full"), default="quick")
    parser.add_argument("--out", type=Path, default=CSV_PATH)
    parser.add_argument("--report", action="store_true", help="compare the estimator with the measurements in --out")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny models: run every code path, record nothing")
    parser.add_argument("--max-minutes", type=float, default=25.0)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure_one(json.loads(args.one), args.dry_run)), flush=True)
    elif args.report:
        if not args.out.exists():
            raise SystemExit(f"no measurements at {args.out}: run this on a GPU machine first (see the docstring)")
        report(args.out)
    else:
        if not args.dry_run and "CUDA_VISIBLE_DEVICES" not in os.environ:
            import torch

            if not torch.cuda.is_available():
                raise SystemExit("no CUDA GPU: use --dry-run here, or run this on a GPU machine")
        run_grid(args.grid, args.out, args.dry_run, args.max_minutes)


if __name__ == "__main__":
    main()
