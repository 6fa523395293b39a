"""GPU samples through NVML (pynvml, from nvidia-ml-py) and host samples through psutil.

A machine without an NVIDIA GPU or driver is a normal state here, not an error: the
sampler returns a snapshot with `available=False` and a reason a person can read.
Every NVML field is read on its own, because consumer GPUs and MIG slices answer
"not supported" for some (power, utilisation) and that must not hide the rest.
The NVML module can be injected, so tests drive the GPU path with a fake.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

NO_GPU = "no NVIDIA GPU found"


@dataclass(frozen=True)
class GpuProcess:
    """A process using a GPU and the memory NVML attributes to it (None where hidden)."""

    pid: int
    used_bytes: int | None


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment."""

    index: int
    name: str
    memory_used_bytes: int
    memory_total_bytes: int
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None
    compute_capability: str
    bf16_supported: bool
    processes: tuple[GpuProcess, ...] = ()


@dataclass(frozen=True)
class GpuSnapshot:
    """All GPUs at one moment, or why there are none."""

    available: bool
    reason: str
    driver_version: str
    gpus: tuple[GpuSample, ...]
    time: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (used by `sft-tui gpu --json`)."""
        return asdict(self)


@dataclass(frozen=True)
class HostSample:
    """CPU and RAM of the host, and optionally of one process (the trainer)."""

    cpu_percent: float
    cpu_count: int
    ram_used_bytes: int
    ram_total_bytes: int
    process_rss_bytes: int | None
    process_cpu_percent: float | None
    time: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_snapshot(sampler: "SystemSampler | None" = None) -> GpuSnapshot:
    """One GPU sample: from `sampler` (left open), or from a sampler made and closed for it. Never raises."""
    own = sampler is None
    sampler = sampler or SystemSampler()
    try:
        return sampler.sample_gpus()
    finally:
        if own:
            sampler.close()


class SystemSampler:
    """Samples GPUs and the host; NVML is initialised once and shut down by close()."""

    # a failed NVML start is retried no more often than this (a driver may load later)
    RETRY_INIT_S = 30.0

    def __init__(self, nvml: Any = None, clock: Callable[[], float] = time.time):
        self._nvml = nvml
        self._clock = clock
        self._ready = False
        self._failure = ""
        self._failed_at = -1e18
        self._processes: dict[int, Any] = {}

    def _start(self) -> bool:
        if self._ready:
            return True
        if self._clock() - self._failed_at < self.RETRY_INIT_S:
            return False
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            self._nvml.nvmlInit()
            self._ready = True
            return True
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError, ...
            self._failure = f"{NO_GPU} (NVML: {_text(exc) or type(exc).__name__})"
            self._failed_at = self._clock()
            return False

    def _field(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except Exception:  # NVMLError_NotSupported and friends: leave the field empty
            return None

    def _one_gpu(self, index: int) -> GpuSample:
        nv = self._nvml
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        memory = nv.nvmlDeviceGetMemoryInfo(handle)
        util = self._field(lambda: nv.nvmlDeviceGetUtilizationRates(handle).gpu)
        temp = self._field(lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU))
        power = self._field(lambda: nv.nvmlDeviceGetPowerUsage(handle))
        limit = self._field(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(handle))
        capability = self._field(lambda: nv.nvmlDeviceGetCudaComputeCapability(handle))
        procs = self._field(lambda: nv.nvmlDeviceGetComputeRunningProcesses(handle)) or []
        major, minor = capability if capability else (0, 0)
        return GpuSample(
            index=index,
            name=_text(nv.nvmlDeviceGetName(handle)),
            memory_used_bytes=int(memory.used),
            memory_total_bytes=int(memory.total),
            utilization_pct=float(util) if util is not None else None,
            temperature_c=float(temp) if temp is not None else None,
            power_w=power / 1000.0 if power is not None else None,
            power_limit_w=limit / 1000.0 if limit is not None else None,
            compute_capability=f"{major}.{minor}" if capability else "unknown",
            bf16_supported=major >= 8,  # Ampere (8.0) and newer
            processes=tuple(GpuProcess(int(p.pid), int(p.usedGpuMemory) if p.usedGpuMemory is not None else None) for p in procs),
        )

    def sample_gpus(self) -> GpuSnapshot:
        """Every GPU's memory, utilisation, temperature, power and processes; never raises."""
        now = self._clock()
        if not self._start():
            return GpuSnapshot(False, self._failure, "", (), now)
        try:
            count = self._nvml.nvmlDeviceGetCount()
            driver = _text(self._field(self._nvml.nvmlSystemGetDriverVersion) or "")
            gpus = tuple(self._one_gpu(i) for i in range(count))
        except Exception as exc:  # the driver went away under us
            return GpuSnapshot(False, f"{NO_GPU} (NVML: {_text(exc)})", "", (), now)
        if not gpus:
            return GpuSnapshot(False, f"{NO_GPU} (NVML reports 0 devices)", driver, (), now)
        return GpuSnapshot(True, "", driver, gpus, now)

    def sample_host(self, pid: int | None = None) -> HostSample:
        """Host CPU/RAM, and RSS/CPU of `pid` when given and alive; never blocks."""
        import psutil

        rss = proc_cpu = None
        if pid:
            try:
                process = self._processes.get(pid) or psutil.Process(pid)
                self._processes[pid] = process  # cpu_percent needs the same object between calls
                rss = process.memory_info().rss
                proc_cpu = process.cpu_percent(interval=None)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                self._processes.pop(pid, None)
        memory = psutil.virtual_memory()
        return HostSample(
            cpu_percent=psutil.cpu_percent(interval=None),
            cpu_count=psutil.cpu_count() or 1,
            ram_used_bytes=int(memory.total - memory.available),
            ram_total_bytes=int(memory.total),
            process_rss_bytes=rss,
            process_cpu_percent=proc_cpu,
            time=self._clock(),
        )

    def close(self) -> None:
        """Shut NVML down if it was started."""
        if self._ready:
            self._field(self._nvml.nvmlShutdown)
            self._ready = False
