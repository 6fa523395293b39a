"""The queue's cost: one admission pass over a home of N runs, and a waiting run's process over time.

Admission: `queue.admit()` on homes of 10, 100 and 1,000 runs (mostly finished, 5 waiting for
a GPU, 3 placed on a faked 4-GPU box), median of 20 passes. Baseline in the same script:
`RunStore.list_runs()` on the same home, which the TUI already does every 2 s. Every waiting
run's own process runs one pass every 2 s, and so do the TUI and `sft-tui queue`.

Waiter: a real queued run's supervisor, waiting on this CPU box while another run holds the
CPU, for 20 s: its CPU time as a share of one core, and its resident memory. Baseline:
`python -c "import time; time.sleep(20)"` measured the same way.

    python bench/queue_admission.py      -> bench/results/queue_admission.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, median_seconds  # noqa: E402

from sft_tui.core.runs import queue, queue_edits  # noqa: E402
from sft_tui.core.runs.schema import JobStatus, Placement, TrainRow, now_iso  # noqa: E402
from sft_tui.core.runs.store import RunStore  # noqa: E402
from sft_tui.core.runs.sysmon import GpuSample, GpuSnapshot  # noqa: E402

GIB = 2**30


def fake_box() -> GpuSnapshot:
    gpus = tuple(GpuSample(i, "NVIDIA A100-SXM4-80GB", 20 * GIB, 80 * GIB, 50.0, 60.0, 300.0, 400.0, "8.0", True, ()) for i in range(4))
    return GpuSnapshot(True, "", "560.35.03", gpus, time.time())


def build_home(root: Path, n_runs: int) -> RunStore:
    store = RunStore(root)
    stamp = now_iso()
    for i in range(n_runs):
        run = store.create_run("# bench\n", "m", "lora", name=f"r{i}")
        if i < 5:  # waiting for a GPU (70 GiB: no GPU has that much room)
            run.write_placement(Placement(stamp, "cuda", 70.0, queued=True, order=float(i)))
            run.write_status(replace(run.read_status(), pid=os.getpid()))
        elif i < 8:  # placed and running (this process stands in for their trainers)
            run.write_placement(Placement(stamp, "cuda", 30.0, admitted_at=stamp, gpus=(i % 4,)))
            run.write_status(replace(run.read_status(), state="running", pid=os.getpid()))
        else:
            run.write_placement(Placement(stamp, "cuda", 12.0, admitted_at=stamp, gpus=(i % 4,)))
            run.write_status(JobStatus("completed", 1, stamp, stamp, step=100, max_steps=100))
            run.append_metric(TrainRow(step=100, loss=1.0))
    return store


def admission(n_runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = build_home(Path(tmp), n_runs)
        box = fake_box()
        plan = queue.admit(store, box, spawn=lambda run: 0)
        assert not plan.start, "the bench's waiting runs must keep waiting"
        admit_s = median_seconds(lambda: queue.admit(store, box, spawn=lambda run: 0), repeat=20)
        list_s = median_seconds(store.list_runs, repeat=20)
    return {"runs": n_runs, "admit_ms": round(admit_s * 1000, 2), "list_runs_ms": round(list_s * 1000, 2),
            "admit_over_list_runs": round(admit_s / list_s, 2)}


def _cpu_and_rss(pid: int, seconds: float) -> tuple[float, float]:
    import psutil

    process = psutil.Process(pid)
    before = sum(process.cpu_times()[:2])
    time.sleep(seconds)
    after = sum(process.cpu_times()[:2])
    return (after - before) / seconds * 100, process.memory_info().rss / 2**20


def waiter(seconds: float = 20.0) -> dict:
    from sft_tui.core.runs.jobs import launch

    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp))
        holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        busy = store.create_run("# holds the CPU\n", "m", "lora", name="busy")
        busy.write_placement(Placement(now_iso(), "cpu", admitted_at=now_iso()))
        busy.write_status(replace(busy.read_status(), state="running", pid=holder.pid))
        waiting = store.create_run("# waits\n", "m", "lora", name="waits")
        waiting.write_placement(Placement(now_iso(), "cpu", queued=True, order=time.time()))
        pid = launch(waiting)
        time.sleep(3.0)  # its imports and first pass are start-up, not waiting
        cpu, rss = _cpu_and_rss(pid, seconds)
        assert waiting.read_status().state == "queued"
        queue_edits.cancel(store, waiting, force=True)
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        time.sleep(3.0)
        base_cpu, base_rss = _cpu_and_rss(sleeper.pid, seconds)
        for process in (holder, sleeper):
            process.kill()
            process.wait()
    return {"seconds": seconds, "waiter_cpu_pct_of_one_core": round(cpu, 3), "waiter_rss_mib": round(rss, 1),
            "idle_python_cpu_pct": round(base_cpu, 3), "idle_python_rss_mib": round(base_rss, 1)}


def main() -> None:
    result = {"machine": machine_facts("psutil"), "admission": [admission(n) for n in (10, 100, 1000)], "waiter": waiter()}
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    out = Path(__file__).resolve().parent / "results" / "queue_admission.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
