"""System sampler: a fake NVML drives the GPU path; the real machine must never raise."""

from __future__ import annotations

import os
from types import SimpleNamespace

from sft_tui.core.runs.sysmon import NO_GPU, SystemSampler


class NVMLError(Exception):
    pass


class FakeNvml:
    """Two GPUs: an A100 that answers everything, a T4 whose power reading is 'not supported'."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, fail_init: str = ""):
        self.fail_init = fail_init
        self.init_calls = 0
        self.shutdown_calls = 0
        self.gpus = [
            dict(name="NVIDIA A100-SXM4-80GB", used=10 * 2**30, total=80 * 2**30, util=97, temp=61, power=301_000,
                 limit=400_000, cc=(8, 0), procs=[SimpleNamespace(pid=4242, usedGpuMemory=9 * 2**30)]),
            dict(name=b"Tesla T4", used=0, total=15 * 2**30, util=0, temp=35, power=None, limit=70_000, cc=(7, 5), procs=[]),
        ]

    def nvmlInit(self):
        self.init_calls += 1
        if self.fail_init:
            raise NVMLError(self.fail_init)

    def nvmlShutdown(self):
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self):
        return "560.35.03"

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.gpus[i]

    def nvmlDeviceGetName(self, h):
        return h["name"]

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=h["used"], total=h["total"], free=h["total"] - h["used"])

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=h["util"], memory=0)

    def nvmlDeviceGetTemperature(self, h, sensor):
        return h["temp"]

    def nvmlDeviceGetPowerUsage(self, h):
        if h["power"] is None:
            raise NVMLError("Not Supported")
        return h["power"]

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return h["limit"]

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return h["cc"]

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return h["procs"]


def test_gpus_are_sampled_field_by_field():
    nvml = FakeNvml()
    sampler = SystemSampler(nvml)
    snap = sampler.sample_gpus()
    assert snap.available and snap.driver_version == "560.35.03"
    a100, t4 = snap.gpus
    assert a100.name == "NVIDIA A100-SXM4-80GB" and a100.memory_total_bytes == 80 * 2**30
    assert a100.utilization_pct == 97.0 and a100.temperature_c == 61.0 and a100.power_w == 301.0
    assert a100.bf16_supported and a100.compute_capability == "8.0"
    assert a100.processes[0].pid == 4242 and a100.processes[0].used_bytes == 9 * 2**30
    assert t4.name == "Tesla T4"  # bytes from old NVML bindings decoded
    assert t4.power_w is None and t4.power_limit_w == 70.0  # one unsupported field leaves the rest
    assert not t4.bf16_supported
    sampler.sample_gpus()
    assert nvml.init_calls == 1  # NVML started once
    sampler.close()
    assert nvml.shutdown_calls == 1
    assert snap.to_json()["gpus"][0]["name"] == "NVIDIA A100-SXM4-80GB"


def test_no_driver_is_a_state_not_an_exception():
    clock = [1000.0]
    nvml = FakeNvml(fail_init="Driver Not Loaded")
    sampler = SystemSampler(nvml, clock=lambda: clock[0])
    snap = sampler.sample_gpus()
    assert not snap.available and snap.gpus == ()
    assert snap.reason == f"{NO_GPU} (NVML: Driver Not Loaded)"
    sampler.sample_gpus()
    assert nvml.init_calls == 1  # not retried on every tick
    clock[0] += SystemSampler.RETRY_INIT_S + 1
    nvml.fail_init = ""
    assert sampler.sample_gpus().available  # a driver loaded later is picked up


def test_zero_devices_and_a_driver_that_vanishes():
    nvml = FakeNvml()
    nvml.gpus = []
    assert "0 devices" in SystemSampler(nvml).sample_gpus().reason
    nvml = FakeNvml()

    def boom():
        raise NVMLError("GPU is lost")

    nvml.nvmlDeviceGetCount = boom
    snap = SystemSampler(nvml).sample_gpus()
    assert not snap.available and "GPU is lost" in snap.reason


def test_this_machine_never_raises():
    sampler = SystemSampler()
    snap = sampler.sample_gpus()
    assert snap.available or snap.reason.startswith(NO_GPU)
    host = sampler.sample_host(os.getpid())
    assert host.ram_total_bytes > host.ram_used_bytes > 0
    assert host.process_rss_bytes and host.process_rss_bytes > 0
    assert sampler.sample_host(999_999_999).process_rss_bytes is None
    sampler.close()
