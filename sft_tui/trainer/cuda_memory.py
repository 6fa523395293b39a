"""The GPU memory a run really used, by phase of the training step, beside what the estimator said.

`CudaMemory` is the small interface the trainer reads (torch.cuda's allocator counters, the
GPU's name, and NVML's view of this process); `TorchCudaMemory` is the real one and tests
inject a fake. `PeakTracker` reads and resets the peak counters at the boundaries of a
step's phases, so each peak is known with the phase it happened in:

  forward    from the step's start (the batch moving to the GPU) to the end of the model's
             forward: the loss's logits included; a DPO/KTO reference forward counts here too
  backward   from the end of a forward to the next forward (gradient accumulation) or to the
             optimizer: the backward pass and gradient clipping
  optimizer  optimizer.step() (its state is created at the first one), the scheduler and zero_grad
  eval       an evaluation on the eval split (the model in eval mode: its forwards are not "forward")
  save       writing a checkpoint
  ""         between steps (logging) or a step whose phases cannot be told apart (no forward hooks)

The counters are the caching allocator's host-side bookkeeping: reading or resetting them
never waits for the GPU (no synchronize), so a read at each boundary costs microseconds,
and since memory is reserved when the CPU issues the work, a peak belongs to the phase
whose code asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sft_tui.core.units import GIB

PHASES = ("forward", "backward", "optimizer", "eval", "save")


class CudaMemory(Protocol):
    """What the trainer reads about its GPU's memory (torch.cuda's names, in bytes)."""

    def max_memory_allocated(self) -> int:
        """Peak bytes held by tensors since the last reset."""

    def max_memory_reserved(self) -> int:
        """Peak bytes the caching allocator held from the driver since the last reset."""

    def memory_reserved(self) -> int:
        """Bytes the caching allocator holds now."""

    def reset_peak_memory_stats(self) -> None:
        """Start both peaks again from what is held now."""

    def device_name(self) -> str:
        """The GPU's model name ("NVIDIA GeForce RTX 4090")."""

    def process_used_bytes(self) -> int | None:
        """What NVML says this process holds on the GPU (allocator + CUDA context); None when NVML cannot say."""


class TorchCudaMemory:
    """torch.cuda on the current device, and NVML (through the device's UUID) for the process's whole footprint."""

    def __init__(self) -> None:
        import torch

        self._cuda = torch.cuda
        self._device = torch.cuda.current_device()
        self._nvml: Any = None
        self._nvml_failed = False

    def max_memory_allocated(self) -> int:
        """Peak bytes held by tensors since the last reset."""
        return int(self._cuda.max_memory_allocated(self._device))

    def max_memory_reserved(self) -> int:
        """Peak bytes reserved by the caching allocator since the last reset."""
        return int(self._cuda.max_memory_reserved(self._device))

    def memory_reserved(self) -> int:
        """Bytes reserved now."""
        return int(self._cuda.memory_reserved(self._device))

    def reset_peak_memory_stats(self) -> None:
        """Peaks start again from the current values."""
        self._cuda.reset_peak_memory_stats(self._device)

    def device_name(self) -> str:
        """The GPU's model name."""
        return str(self._cuda.get_device_name(self._device))

    def process_used_bytes(self) -> int | None:
        """NVML's memory for this pid on this GPU; None where NVML is missing or lists other pids (a container's namespace)."""
        import os

        if self._nvml_failed:
            return None
        try:
            if self._nvml is None:
                import pynvml

                pynvml.nvmlInit()
                uuid = str(self._cuda.get_device_properties(self._device).uuid)
                # CUDA_VISIBLE_DEVICES renumbers devices; the UUID names the same GPU for both
                self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"))
            pynvml, handle = self._nvml
            for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if int(process.pid) == os.getpid() and process.usedGpuMemory is not None:
                    return int(process.usedGpuMemory)
            return None
        except Exception:  # no NVML, an old driver, a MIG slice without per-process figures: the field stays empty
            self._nvml_failed = True
            return None


def cuda_memory_for(device: str) -> CudaMemory | None:
    """The real CudaMemory on a CUDA run, None on the CPU (tests replace this to inject a fake)."""
    return TorchCudaMemory() if device == "cuda" else None


@dataclass(frozen=True)
class MeasuredPeak:
    """A run's measured peaks so far (GiB). phase: where the allocated peak happened (PHASES, or "")."""

    allocated_gib: float
    reserved_gib: float
    phase: str
    gpu_name: str
    context_gib: float | None  # NVML's figure for the process minus the allocator's: CUDA context, cuBLAS/NCCL workspaces
    by_phase: tuple[tuple[str, float], ...]  # the allocated peak of each phase seen, in PHASES order

    def line(self) -> str:
        """'measured peak 13.12 GiB allocated in backward, 14.00 GiB reserved (forward 9.1, backward 13.1, optimizer 8.0)'."""
        where = f" in {self.phase}" if self.phase else ""
        phases = ", ".join(f"{name} {gib:.2f}" for name, gib in self.by_phase)
        context = f", CUDA context {self.context_gib:.2f} GiB" if self.context_gib is not None else ""
        return (f"measured peak {self.allocated_gib:.2f} GiB allocated{where}, {self.reserved_gib:.2f} GiB reserved{context}"
                + (f" ({phases})" if phases else ""))


class PeakTracker:
    """Peak allocated/reserved memory per phase, per metrics row and for the run, from read-and-reset at phase boundaries.

    The callback calls `begin(phase)` where a phase starts (see the module docstring for what
    each covers); `close_as(name)` ends the running stretch under another name (eval, save)
    without changing the phase. `take_row()` gives the peaks since the previous row, across
    however many boundaries came between, so rows mean what they did before phases existed.
    """

    def __init__(self, cuda: CudaMemory):
        self.cuda = cuda
        self.phase = ""
        self.hooked = False  # forward hooks tell forward from backward; without them a step's stretch is ""
        self._row = (0, 0)  # (allocated, reserved) peaks since the previous row, bytes
        self._peak = (0, 0, "")  # the run's (allocated, reserved, phase of the allocated peak)
        self._by_phase: dict[str, int] = {}
        self._context: int | None = None
        self._hooks: list[Any] = []
        self._name = ""

    def start(self) -> float:
        """Training begins: forget the load (its peak is returned in GiB for the log) and start counting."""
        load = self.cuda.max_memory_allocated()
        self.cuda.reset_peak_memory_stats()
        self.phase = ""
        return load / GIB

    def _read(self, name: str) -> None:
        allocated, reserved = self.cuda.max_memory_allocated(), self.cuda.max_memory_reserved()
        self.cuda.reset_peak_memory_stats()
        self._row = (max(self._row[0], allocated), max(self._row[1], reserved))
        if name:
            self._by_phase[name] = max(self._by_phase.get(name, 0), allocated)
        peak_allocated, peak_reserved, phase = self._peak
        if allocated > peak_allocated:  # strictly: a later stretch that only holds the same memory does not take the peak
            peak_allocated, phase = allocated, name
        self._peak = (peak_allocated, max(peak_reserved, reserved), phase)

    def begin(self, phase: str) -> None:
        """Close the running stretch under its own phase and start `phase`."""
        self._read(self.phase)
        self.phase = phase

    def close_as(self, name: str) -> None:
        """Close the running stretch as `name` (eval, save: they run between steps) and go on in the same phase."""
        self._read(name)

    def take_row(self) -> tuple[float, float]:
        """(allocated, reserved) peaks in GiB since the previous row; also samples the CUDA context while nothing allocates."""
        self._read(self.phase)
        row, self._row = self._row, (0, 0)
        used = self.cuda.process_used_bytes()
        if used is not None:
            outside = max(0, used - self.cuda.memory_reserved())
            self._context = outside if self._context is None else max(self._context, outside)
        return round(row[0] / GIB, 3), round(row[1] / GIB, 3)

    def hook(self, model: Any) -> None:
        """Mark forward and backward with hooks on the model's top module (its own forward only, not each layer's)."""
        if model is None or not hasattr(model, "register_forward_pre_hook"):
            return

        def before(module, args):
            if module.training:  # an eval forward stays in the eval stretch
                self.begin("forward")

        def after(module, args, output):
            if module.training:
                self.begin("backward")

        self._hooks = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
        self.hooked = True

    def unhook(self) -> None:
        """Remove the forward hooks (the model is saved and may be used again after training)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self.hooked = False

    def peak(self) -> MeasuredPeak:
        """The run's peaks so far, in GiB."""
        if not self._name:
            try:
                self._name = self.cuda.device_name()
            except Exception:  # a name is for grouping runs; never worth failing a run over
                self._name = ""
        allocated, reserved, phase = self._peak
        by_phase = tuple((name, round(self._by_phase[name] / GIB, 3)) for name in PHASES if name in self._by_phase)
        context = round(self._context / GIB, 3) if self._context is not None else None
        return MeasuredPeak(round(allocated / GIB, 3), round(reserved / GIB, 3), phase, self._name, context, by_phase)
