"""The monitor's "peak 13.1 GiB, estimated 13.5 GiB": a CUDA run's measured peak beside the estimate it was launched with.

While the run trains, the peak is the largest reserved memory its metrics rows recorded
(torch's allocator). Once it has ended, it is the summary's: the reserved peak plus the CUDA
context the trainer measured through NVML, so it counts what the estimate counts. The
estimate is the one the run was launched with (placement.json; the summary keeps it too).
CPU runs, and runs with no estimate to compare with, get no line.
"""

from __future__ import annotations

from sft_tui.core.runs.watch import RunSnapshot
from sft_tui.tui.widgets.preference_views import SIDE_WIDTH


def measured_peak_gib(snapshot: RunSnapshot) -> tuple[float | None, str]:
    """(measured peak in GiB, phase it happened in) from the summary once there, else the rows so far; (None, "") on the CPU."""
    summary = snapshot.summary
    if summary is not None and not summary.stale and summary.peak_gpu_reserved_gib is not None:
        return summary.peak_gpu_reserved_gib + (summary.measured_context_gib or 0.0), summary.measured_peak_phase
    reserved = [row.gpu_reserved_gib for row in snapshot.train if row.gpu_reserved_gib is not None]
    return (max(reserved), "") if reserved else (None, "")


PHASE_WORDS = {"forward": "in the forward pass", "backward": "in the backward pass", "optimizer": "in the optimizer step",
               "eval": "during evaluation", "save": "while saving"}


def measured_peak_lines(snapshot: RunSnapshot | None, estimate_gib: float | None, width: int = SIDE_WIDTH) -> list[str]:
    """['peak 13.1 GiB, estimated 13.5 GiB', '     in the backward pass'], shortened to the panel; [] without both numbers.

    The second line (where the peak happened) comes once the run has ended and only when the trainer could tell.
    """
    if snapshot is None:
        return []
    summary = snapshot.summary
    if summary is not None and summary.estimated_peak_gib is not None:
        estimate_gib = summary.estimated_peak_gib
    peak, phase = measured_peak_gib(snapshot)
    if peak is None or estimate_gib is None:
        return []
    variants = [f"peak {peak:.1f} GiB, estimated {estimate_gib:.1f} GiB", f"peak {peak:.1f} GiB, est. {estimate_gib:.1f} GiB",
                f"peak {peak:.1f} / est {estimate_gib:.1f} GiB"]
    line = next((text for text in variants if len(text) <= width), variants[-1])
    return [line, f"     {PHASE_WORDS[phase]}"] if phase in PHASE_WORDS else [line]
