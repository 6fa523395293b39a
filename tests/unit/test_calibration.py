"""The GPU calibration harness: its code paths run (CPU dry run), its report does the right arithmetic,
and once GPU measurements are committed the estimator is held to them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "bench" / "memory_calibration.py"
MEASUREMENTS = ROOT / "bench" / "results" / "memory_calibration.csv"

sys.path.insert(0, str(ROOT / "bench"))
import memory_calibration as harness  # noqa: E402


def test_dry_run_builds_and_trains_every_recipe_on_the_cpu():
    pytest.importorskip("bitsandbytes")
    proc = subprocess.run([sys.executable, str(HARNESS), "--dry-run"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ok = [line for line in proc.stdout.splitlines() if '"dry-run ok"' in line]
    assert len(ok) == 4, proc.stdout
    assert {m for m in ("full", "lora", "qlora") if any(f'"method": "{m}"' in line for line in ok)} == {"full", "lora", "qlora"}


def test_report_computes_errors_against_the_current_estimator(tmp_path, capsys):
    from sft_tui.core.estimate.memory import estimate_memory
    from sft_tui.core.models.modelspec import spec_from_preset

    path = tmp_path / "m.csv"
    points = harness.grid("quick")[:3]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=harness.FIELDS, extrasaction="ignore")
        writer.writeheader()
        for point, factor in zip(points, (1.0, 1.25, 0.8), strict=True):
            estimate = estimate_memory(spec_from_preset(point["model"]), harness._settings(point)).peak_gib
            writer.writerow({**point, "status": "ok", "measured_peak_gib": estimate / factor})
        writer.writerow({**points[0], "status": "oom"})  # failures are not measurements
    summary = harness.report(path)
    assert summary["rows"] == 3
    assert summary["median_abs_error"] == pytest.approx(0.2)
    assert summary["worst_abs_error"] == pytest.approx(0.25)


@pytest.mark.skipif(not MEASUREMENTS.exists(), reason="no GPU measurements committed yet (bench/memory_calibration.py on a GPU)")
def test_estimator_is_within_target_of_committed_gpu_measurements():
    summary = harness.report(MEASUREMENTS)
    assert summary["rows"] >= 10
    assert summary["median_abs_error"] <= 0.10
    assert summary["worst_abs_error"] <= 0.20
