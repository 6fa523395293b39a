"""TUI cost: time to the first frame, and CPU while watching a live run.

First frame: a fresh interpreter imports the app, mounts it headless (Textual's
run_test) on a home with one run, and reports when the home screen has drawn; baseline
is `python -c pass` in the same script. Big file: the same, opening the monitor of a run
with 100,000 metrics rows, until all of them are in the chart (drawn downsampled). Idle CPU: the monitor watches a run whose
metrics file gains a row every 0.5 s (as a real trainer's would) and a GPU sample every 5 s
(as its supervisor's would), for 20 s, with the app listing the runs for notifications; the app
process's CPU time over that span, as a share of one core.

    python bench/tui_startup.py      -> bench/results/tui_startup.json
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts  # noqa: E402

FIRST_FRAME = r'''
import time, sys
start = time.perf_counter()
import asyncio
from pathlib import Path
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from sft_tui.tui.app import SftApp
async def main():
    app = SftApp(RunStore(Path(sys.argv[1])), SystemSampler())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0)
        print(time.perf_counter() - start)
asyncio.run(main())
'''

MONITOR_BIG = r'''
import time, sys
start = time.perf_counter()
import asyncio
from pathlib import Path
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from sft_tui.tui.app import SftApp
from sft_tui.tui.widgets.loss_chart import LossChart
async def main():
    store = RunStore(Path(sys.argv[1]))
    app = SftApp(store, SystemSampler(), open_run=store.run_dirs()[0].id)
    async with app.run_test(size=(80, 24)) as pilot:
        mounted = time.perf_counter()
        while True:
            await pilot.pause(0.01)
            chart = app.screen.query(LossChart)
            if chart and len(chart.first()._train) >= int(sys.argv[2]):
                done = time.perf_counter()
                print(done - start, done - mounted)
                return
asyncio.run(main())
'''

WATCH = r'''
import asyncio, json, sys, threading, time, resource
from pathlib import Path
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from sft_tui.tui.app import SftApp
store = RunStore(Path(sys.argv[1])); run = store.run_dirs()[0]; seconds = float(sys.argv[2])
from sft_tui.core.runs.schema import SystemRow, TrainRow
def trainer():  # a row every 0.5 s, and a GPU/host sample every 5 s as the supervisor writes them
    for step in range(int(seconds * 2) + 10):
        run.append_metric(TrainRow(step=1000 + step, loss=1.0, tokens_per_s=900.0, time=time.time()))
        if step % 10 == 0:
            run.append_metric(SystemRow(step=1000 + step, time=time.time(), gpu_count=1, gpu_mem_used_gib=17.0, gpu_mem_total_gib=80.0,
                                        gpu_util_pct=97.0, gpu_temp_c=61.0, gpu_power_w=300.0, gpu_power_limit_w=400.0, process_rss_gib=3.0))
        time.sleep(0.5)
threading.Thread(target=trainer, daemon=True).start()
async def main():
    app = SftApp(store, SystemSampler(), open_run=run.id)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(2.0)  # past start-up
        usage = resource.getrusage(resource.RUSAGE_SELF); cpu0 = usage.ru_utime + usage.ru_stime; t0 = time.perf_counter()
        await pilot.pause(seconds)
        usage = resource.getrusage(resource.RUSAGE_SELF); cpu1 = usage.ru_utime + usage.ru_stime
        print((cpu1 - cpu0) / (time.perf_counter() - t0))
asyncio.run(main())
'''


def _home(rows: int) -> Path:
    from sft_tui.core.runs.schema import JobStatus, TrainRow, now_iso
    from sft_tui.core.runs.store import RunStore

    home = Path(tempfile.mkdtemp())
    run = RunStore(home).create_run('[model]\nname = "qwen2.5-0.5b"\n[method]\nname = "lora"\n', "qwen2.5-0.5b", "lora", name="bench")
    run.write_status(JobStatus("running", 1, now_iso(), now_iso(), step=rows, max_steps=rows * 2))
    with run.metrics_path.open("w") as handle:  # written in one go: 100,000 appends one open each would take a minute
        for step in range(1, rows + 1):
            row = TrainRow(step=step, loss=2.0 / step ** 0.3, learning_rate=2e-4, grad_norm=1.0, tokens_per_s=900.0)
            handle.write(json.dumps(row.to_json(), separators=(",", ":")) + "\n")
    return home


def main() -> None:
    home = _home(1000)
    baseline = statistics.median(_timed([sys.executable, "-c", "pass"]) for _ in range(5))
    first = [float(subprocess.run([sys.executable, "-c", FIRST_FRAME, str(home)], capture_output=True, text=True, check=True).stdout.strip()) for _ in range(5)]
    big = _home(100_000)
    big_runs = [subprocess.run([sys.executable, "-c", MONITOR_BIG, str(big), "100000"], capture_output=True, text=True, check=True).stdout.split() for _ in range(3)]
    first_big = [float(r[0]) for r in big_runs]
    open_big = [float(r[1]) for r in big_runs]
    idle = float(subprocess.run([sys.executable, "-c", WATCH, str(home), "20"], capture_output=True, text=True, check=True).stdout.strip())
    result = {"benchmark": "tui_startup", "python_start_s": round(baseline, 3),
              "first_frame_s_median": round(statistics.median(first), 3), "monitor_with_100k_rows_drawn_s": round(statistics.median(first_big), 3),
              "monitor_100k_rows_after_app_start_s": round(statistics.median(open_big), 3),
              "watching_cpu_share_of_one_core": round(idle, 4), "targets": {"first_frame_s": 1.0, "watching_cpu": 0.05},
              "machine": machine_facts("textual", "textual-plotext")}
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    out = Path(__file__).resolve().parent / "results" / "tui_startup.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
