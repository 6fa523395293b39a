"""Common training GPUs: memory as NVML reports it and peak dense tensor throughput.

Peak figures are the vendors' dense (not sparse) numbers with FP32 accumulation, which
is what PyTorch's bf16/fp16 matmuls use. `fp32_tflops` is plain FP32 (PyTorch does not
use TF32 for matmuls unless asked). They feed the time estimate only; memory fit uses
`memory_gib`. A GPU missing here still gets a memory fit from NVML, without an ETA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sft_tui.core.errors import UserError, did_you_mean


@dataclass(frozen=True)
class GpuInfo:
    """A GPU the estimator can target."""

    key: str
    name: str
    memory_gib: float
    bf16_tflops: float | None  # None: no bf16 (pre-Ampere)
    fp16_tflops: float
    fp32_tflops: float

    @property
    def bf16_supported(self) -> bool:
        """True from Ampere (compute capability 8.0) on."""
        return self.bf16_tflops is not None

    def peak_tflops(self, precision: str) -> float:
        """Peak throughput for the precision the run computes in."""
        if precision == "fp32":
            return self.fp32_tflops
        if precision == "bf16" and self.bf16_tflops is not None:
            return self.bf16_tflops
        return self.fp16_tflops


# memory_gib: total as NVML reports it (MiB / 1024), slightly under the marketing "GB".
GPUS: tuple[GpuInfo, ...] = (
    GpuInfo("t4", "NVIDIA T4 16GB", 15.0, None, 65.0, 8.1),
    GpuInfo("v100-16gb", "NVIDIA V100 16GB", 16.0, None, 125.0, 15.7),
    GpuInfo("v100-32gb", "NVIDIA V100 32GB", 32.0, None, 125.0, 15.7),
    GpuInfo("l4", "NVIDIA L4 24GB", 22.5, 121.0, 121.0, 30.3),
    GpuInfo("a10", "NVIDIA A10 24GB", 22.5, 125.0, 125.0, 31.2),
    GpuInfo("a10g", "NVIDIA A10G 24GB", 22.5, 70.0, 70.0, 31.2),
    GpuInfo("rtx3090", "NVIDIA GeForce RTX 3090 24GB", 24.0, 71.0, 71.0, 35.6),
    GpuInfo("rtx4090", "NVIDIA GeForce RTX 4090 24GB", 24.0, 165.2, 165.2, 82.6),
    GpuInfo("rtx-a6000", "NVIDIA RTX A6000 48GB", 48.0, 154.8, 154.8, 38.7),
    GpuInfo("l40s", "NVIDIA L40S 48GB", 45.0, 362.1, 362.1, 91.6),
    GpuInfo("a100-40gb", "NVIDIA A100 40GB", 40.0, 312.0, 312.0, 19.5),
    GpuInfo("a100-80gb", "NVIDIA A100 80GB", 80.0, 312.0, 312.0, 19.5),
    GpuInfo("h100", "NVIDIA H100 80GB (SXM)", 79.6, 989.4, 989.4, 66.9),
    GpuInfo("h100-pcie", "NVIDIA H100 80GB PCIe", 79.6, 756.0, 756.0, 51.2),
    GpuInfo("h200", "NVIDIA H200 141GB", 140.4, 989.4, 989.4, 66.9),
)

# short names people type, squashed like _key() does
_ALIASES = {"a100": "a100-80gb", "v100": "v100-32gb", "h100sxm": "h100", "h100nvl": "h100-pcie"}


def _squash(text: str) -> str:
    text = text.lower().replace("nvidia", "").replace("geforce", "").replace("tesla", "")
    return re.sub(r"[^a-z0-9]", "", text)


def _key(text: str) -> str:
    """'RTX 4090' -> '4090', 'A100-80GB' -> 'a10080': the form names are matched in."""
    return _squash(text).replace("rtx", "").replace("gb", "")


_INDEX = {_key(g.key): g for g in GPUS} | {_key(alias): next(g for g in GPUS if g.key == key) for alias, key in _ALIASES.items()}


def gpu_by_name(name: str) -> GpuInfo:
    """A GPU from a user-typed name (`A100-80GB`, `4090`, `h100`); unknown names raise UserError."""
    found = _INDEX.get(_key(name))
    if found is None:
        keys = [g.key for g in GPUS]
        raise UserError(f"unknown GPU {name!r}{did_you_mean(name.lower(), keys)}", "--gpu",
                        f"known GPUs: {', '.join(keys)}; or give the memory with --gpu-gib N")
    return found


# the token of each GPU family as it appears in NVML device names
_NVML_TOKENS = {"t4": "t4", "v100": "v100", "l4": "l4", "a10": "a10", "a10g": "a10g", "rtx3090": "3090",
                "rtx4090": "4090", "rtx-a6000": "a6000", "l40s": "l40s", "a100": "a100", "h100": "h100", "h200": "h200"}


def gpu_from_nvml_name(name: str, memory_gib: float) -> GpuInfo | None:
    """Match an NVML device name ('NVIDIA A100-SXM4-80GB') to the table; memory and 'PCIe' pick the variant."""
    squashed = _squash(name)
    found = [token for token in _NVML_TOKENS.values() if token in squashed]
    if not found:
        return None
    token = max(found, key=len)  # 'a100' over 'a10', 'l40s' over 'l4', 'a10g' over 'a10'
    family = [g for g in GPUS if _NVML_TOKENS.get(g.key, _NVML_TOKENS.get(g.key.rsplit("-", 1)[0])) == token]
    pcie = [g for g in family if "pcie" in g.key]
    if pcie and "pcie" in squashed:
        family = pcie
    elif pcie:
        family = [g for g in family if "pcie" not in g.key]
    return min(family, key=lambda g: abs(g.memory_gib - memory_gib))
