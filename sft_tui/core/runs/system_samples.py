"""GPU and host samples of a running train job, appended to its metrics.jsonl as system rows.

The job's supervisor (core.runs.supervise) records them, not the trainer: it lives as long
as the trainer, imports no torch, and keeps sampling while the trainer is stuck in a long
step or a data-loading stall, which is when a person wants to see the GPU. The rows go to
the run dir, so a monitor opened hours later, or after the run ended, draws the whole
history; the monitor's own live sampler only adds the current reading.
"""

from __future__ import annotations

import time
from typing import Callable

from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import SystemRow
from sft_tui.core.runs.sysmon import GpuSample, GpuSnapshot, HostSample, SystemSampler
from sft_tui.core.units import GIB

SAMPLE_EVERY_S = 5.0  # 720 rows an hour, ~200 bytes each: a day-long run adds ~3.5 MB


def run_gpus(gpu: GpuSnapshot, pids: set[int], placed: tuple[int, ...] = ()) -> tuple[GpuSample, ...]:
    """The GPUs a process in `pids` is using; else those the run was placed on; all of them when neither is known
    (containers often hide other pids, and runs from before placement have none)."""
    if not gpu.available:
        return ()
    mine = tuple(g for g in gpu.gpus if any(p.pid in pids for p in g.processes))
    return mine or tuple(g for g in gpu.gpus if g.index in placed) or gpu.gpus


def system_row(step: int, gpu: GpuSnapshot, host: HostSample, pids: set[int], placed: tuple[int, ...] = ()) -> SystemRow:
    """One system row: the run's GPUs (memory it holds, mean utilisation, hottest, total power) and its process."""
    gpus = run_gpus(gpu, pids, placed)
    held = [p.used_bytes for g in gpus for p in g.processes if p.pid in pids and p.used_bytes is not None]
    used = sum(held) if held else sum(g.memory_used_bytes for g in gpus)

    def values(read: Callable[[GpuSample], float | None]) -> list[float]:
        return [v for v in (read(g) for g in gpus) if v is not None]

    utils, temps, powers, limits = (values(lambda g: g.utilization_pct), values(lambda g: g.temperature_c),
                                    values(lambda g: g.power_w), values(lambda g: g.power_limit_w))
    return SystemRow(
        step=step, time=host.time, gpu_count=len(gpus),
        gpu_mem_used_gib=round(used / GIB, 3) if gpus else None,
        gpu_mem_total_gib=round(sum(g.memory_total_bytes for g in gpus) / GIB, 3) if gpus else None,
        gpu_util_pct=round(sum(utils) / len(utils), 1) if utils else None,
        gpu_temp_c=max(temps) if temps else None,
        gpu_power_w=round(sum(powers), 1) if powers else None,
        gpu_power_limit_w=round(sum(limits), 1) if limits else None,
        host_cpu_pct=host.cpu_percent,
        process_rss_gib=round(host.process_rss_bytes / GIB, 3) if host.process_rss_bytes is not None else None,
        process_cpu_pct=host.process_cpu_percent,
    )


class SystemRecorder:
    """Appends a system row for a run's trainer each time `record()` is called (the supervisor calls it every few seconds).

    Never raises: sampling is a nicety, the job is not. The first failure to write (a full
    disk, a removed run) is printed once to the job's log and recording stops.
    """

    def __init__(self, run: RunDir, pid: int, sampler: SystemSampler | None = None):
        self.run = run
        self.pid = pid
        self.sampler = sampler or SystemSampler()
        self.stopped = ""
        self.written = 0

    def _pids(self) -> set[int]:
        import psutil

        try:
            return {self.pid} | {c.pid for c in psutil.Process(self.pid).children(recursive=True)}  # dataloader workers too
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return {self.pid}

    def record(self) -> None:
        """Sample now and append one row."""
        if self.stopped:
            return
        try:
            status, _ = self.run.status_or_reason()  # a status being rewritten this instant is no reason to stop
            row = system_row(status.step if status else 0, self.sampler.sample_gpus(), self.sampler.sample_host(self.pid), self._pids(),
                             status.gpus if status else ())
            self.run.append_metric(row)
            self.written += 1
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self.stopped = f"{type(exc).__name__}: {exc}"
            print(f"[sft-tui] GPU/host samples stopped: {self.stopped}", flush=True)

    def close(self) -> None:
        """Release NVML."""
        self.sampler.close()


def record_while(alive: Callable[[float], bool], recorder: SystemRecorder, every_s: float = SAMPLE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
    """Record a sample, then every `every_s`, while `alive(timeout)` (which waits up to timeout) says the job still runs."""
    next_at = clock()
    while True:
        wait = max(0.0, next_at - clock())
        if not alive(wait):
            return
        recorder.record()
        next_at += every_s
