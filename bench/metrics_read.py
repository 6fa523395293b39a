"""Reading a long metrics.jsonl through the run store, against a plain json.loads loop.

The monitor opens a run's whole metrics file once, then reads only what was appended.
This writes a 100,000-row file shaped like the trainer's rows and times:
  - baseline: `[json.loads(line) for line in open(path)]`
  - read_new_rows(0): the whole file through the run store, as typed rows (torn-line safe, validated)
  - read_new_rows(offset) after appending 1 row: the per-tick cost while watching
  - last_train_row: what `sft-tui runs` reads per run
Each is the median of several repetitions, in the same process.

    python bench/metrics_read.py [--rows 100000]   -> bench/results/metrics_read.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, median_seconds  # noqa: E402

from sft_tui.core.runs.metrics import last_train_row, read_new_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "metrics_read.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.jsonl"
        with path.open("w") as handle:
            for step in range(1, args.rows + 1):
                row = {"step": step, "loss": 2.0 * math.exp(-step / 20000) + 0.3, "time": 1795316870.5 + step, "epoch": step / 1000,
                       "learning_rate": 2e-4, "grad_norm": 0.8, "tokens_per_s": 5120.5, "tokens": 4096.0 * step, "wall_s": 0.5 * step,
                       "gpu_mem_gib": 14.2, "gpu_reserved_gib": 15.1, "kind": "train"}
                handle.write(json.dumps(row, separators=(",", ":")) + "\n")
        size_mb = path.stat().st_size / 1e6
        baseline = median_seconds(lambda: [json.loads(line) for line in path.open()], args.repeat)
        full = median_seconds(lambda: read_new_rows(path, 0), args.repeat)
        assert len(read_new_rows(path, 0).rows) == args.rows
        offset = read_new_rows(path, 0).offset
        with path.open("a") as handle:
            handle.write(json.dumps({"step": args.rows + 1, "loss": 0.3, "kind": "train"}) + "\n")
        tick = median_seconds(lambda: read_new_rows(path, offset), args.repeat * 20)
        tail = median_seconds(lambda: last_train_row(path), args.repeat * 20)
    rows = [
        {"what": "baseline: json.loads per line, whole file", "median_s": round(baseline, 4), "x_baseline": 1.0},
        {"what": "read_new_rows(0), whole file, typed", "median_s": round(full, 4), "x_baseline": round(full / baseline, 2)},
        {"what": "read_new_rows(offset), 1 new row", "median_s": round(tick, 6), "x_baseline": round(tick / baseline, 5)},
        {"what": "last_train_row (64 KiB tail)", "median_s": round(tail, 6), "x_baseline": round(tail / baseline, 5)},
    ]
    for row in rows:
        print(f"{row['what']:<44} {row['median_s'] * 1000:9.3f} ms  ({row['x_baseline']} x baseline)")
    result = {"benchmark": "metrics_read", "rows": args.rows, "file_mb": round(size_mb, 1), "repeat": args.repeat,
              "machine": machine_facts(), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
