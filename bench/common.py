"""What every benchmark shares: the machine and version facts it records, and a median timer."""

from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Callable


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts(*packages: str) -> dict[str, Any]:
    """CPU, cores, OS, Python and the versions of the named packages, with a UTC timestamp."""
    return {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpu": "none (CPU machine)",
        "versions": {p: _version(p) for p in ("sft-tui", *packages)},
    }


def median_seconds(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of `repeat` calls of `fn` (median: robust to a noisy machine)."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)
