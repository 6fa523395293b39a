"""How fast does `sft-tui --help` answer? Measured against a bare Python start.

Each command runs N times in a fresh interpreter, interleaved round-robin so machine
noise hits all of them alike; the median wall time is reported, and the ratio to
`python -c pass` run in the same loop is what to compare between machines.

    python bench/cli_startup.py [--runs 15]      -> bench/results/cli_startup.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts  # noqa: E402

COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "sft-tui --help": [sys.executable, "-m", "sft_tui.cli.main", "--help"],
    "sft-tui runs --json": [sys.executable, "-m", "sft_tui.cli.main", "runs", "--json"],
    "sft-tui models list": [sys.executable, "-m", "sft_tui.cli.main", "models", "list"],
    "python -c 'import torch' (what --help avoids)": [sys.executable, "-c", "import torch"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "cli_startup.json")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            times[name].append(time.perf_counter() - start)
    baseline = statistics.median(times["python -c pass (baseline)"])
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        rows.append({"command": name, "median_s": round(median, 4), "min_s": round(min(samples), 4),
                     "max_s": round(max(samples), 4), "x_baseline": round(median / baseline, 1)})
        print(f"{name:<48} median {median * 1000:7.1f} ms  ({median / baseline:5.1f} x baseline)")
    result = {"benchmark": "cli_startup", "runs": args.runs, "machine": machine_facts("typer", "torch"), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
