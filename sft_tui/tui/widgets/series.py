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


def whole_ticks(low: float, high: float, count: int = 5) -> list[int]:
    """Up to `count` evenly spread whole-number ticks from low to high: steps are whole, and `74.8` on an axis is noise."""
    return sorted({round(low + (high - low) * i / (count - 1)) for i in range(count)})


def tick_labels(ticks: list[float]) -> list[str]:
    """Axis labels a person reads at a glance: thousands separated, no `.0` on whole numbers, two digits below 10,
    and a learning rate's 1.5e-04 as itself rather than 0.0."""
    def label(t: float) -> str:
        if abs(t) >= 10 or float(t).is_integer():
            return f"{t:,.0f}"
        return f"{t:.2g}" if abs(t) >= 0.01 else f"{t:.1e}"
    return [label(t) for t in ticks]
