"""Series for drawing: at most a few hundred points, and TensorBoard's smoothing. The raw data stays whole."""

from __future__ import annotations


def downsample(xs: list[float], ys: list[float], limit: int = 400) -> tuple[list[float], list[float]]:
    """At most `limit` points for drawing: every k-th point plus the last."""
    if len(xs) <= limit:
        return xs, ys
    step = len(xs) / limit
    picked = sorted({int(i * step) for i in range(limit)} | {len(xs) - 1})
    return [xs[i] for i in picked], [ys[i] for i in picked]


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average (TensorBoard's smoothing), bias-corrected at the start."""
    out, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**count))
    return out
