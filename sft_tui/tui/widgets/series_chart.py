"""Charts of a run over time besides the loss: speed, memory, GPU, grad norm, learning rate
(and a preference run's accuracy, KL and rewards: preference_views.py builds those views).

A view is plain data (frozen dataclasses) built from a RunSnapshot by `chart_views()`, so
what a chart shows is tested without a terminal; `SeriesChart` only draws a view. Every
series has its own marker as well as its colour (NO_COLOR and colour-blind readers tell
them apart), axes are labelled with units, and memory starts at zero so that 0.62 and
0.63 GiB do not look like a cliff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from textual.app import RenderResult
from textual_plotext import PlotextPlot

from sft_tui.core.runs.schema import SystemRow, TrainRow
from sft_tui.core.runs.watch import RunSnapshot
from sft_tui.tui.widgets.series import downsample, tick_labels, whole_ticks


@dataclass(frozen=True)
class Series:
    """One line of a chart."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    marker: str
    points_only: bool = False  # a few scattered points (eval rows), not a line


@dataclass(frozen=True)
class ChartView:
    """What one chart shows: its name (the key people cycle through), axes with units, series, and what to say when empty."""

    name: str
    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    empty: str
    y_from_zero: bool = False
    y_max: float | None = None


def _finite(pairs: list[tuple[float, float | None]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    kept = [(x, y) for x, y in pairs if y is not None and math.isfinite(y)]
    xs, ys = downsample([x for x, _ in kept], [y for _, y in kept])
    return tuple(xs), tuple(ys)


def _minutes(rows: tuple[SystemRow, ...]) -> list[float]:
    start = rows[0].time if rows else 0.0
    return [(r.time - start) / 60 for r in rows]


def _step_series(train: tuple[TrainRow, ...], label: str, field: str, marker: str) -> Series:
    xs, ys = _finite([(float(r.step), getattr(r, field)) for r in train])
    return Series(label, xs, ys, marker)


def chart_views(snapshot: RunSnapshot) -> tuple[ChartView, ...]:
    """Every chart besides loss, in the order `c` cycles through them; the GPU chart only when the run has used a GPU."""
    train, system = snapshot.train, snapshot.system
    minutes = _minutes(system)
    on_gpu = any(r.gpu_count for r in system) or any(r.gpu_reserved_gib is not None for r in train)
    waiting = "no samples yet: the run records one every 5 s" if snapshot.state in ("queued", "running") else \
        "this run has no samples (it was recorded by an older version)"
    views = [ChartView("speed", "throughput", "step", "tokens/s", (_step_series(train, "tokens/s", "tokens_per_s", "braille"),),
                       "no steps logged yet", y_from_zero=True)]
    if on_gpu:
        used = Series("GPU memory used", *_finite(list(zip(minutes, (r.gpu_mem_used_gib for r in system)))), "braille")
        reserved = Series("peak reserved (torch)", *_finite([(float(r.step), r.gpu_reserved_gib) for r in train]), "x")
        total = max((r.gpu_mem_total_gib or 0.0 for r in system), default=0.0)
        views.append(ChartView("memory", f"GPU memory (of {total:.0f} GiB)" if total else "GPU memory", "minutes", "GiB",
                               (used,), waiting, y_from_zero=True, y_max=total or None))
        if not used.xs and reserved.xs:  # an older run: torch's per-step peaks are all there is
            views[-1] = ChartView("memory", "GPU memory, peak reserved per step", "step", "GiB", (reserved,), waiting, y_from_zero=True)
        limit = max((r.gpu_power_limit_w or 0.0 for r in system), default=0.0)
        power = [(x, 100 * r.gpu_power_w / limit if limit and r.gpu_power_w is not None else None) for x, r in zip(minutes, system)]
        views.append(ChartView("gpu", "GPU utilisation, temperature, power", "minutes", "% · °C",
                               (Series("util %", *_finite(list(zip(minutes, (r.gpu_util_pct for r in system)))), "braille"),
                                Series("temp °C", *_finite(list(zip(minutes, (r.gpu_temp_c for r in system)))), "dot"),
                                Series(f"power % of {limit:.0f} W" if limit else "power", *_finite(power), "x")),
                               waiting, y_from_zero=True, y_max=100.0))
    else:
        views.append(ChartView("memory", "trainer memory (RSS; no GPU)", "minutes", "GiB",
                               (Series("trainer RSS", *_finite(list(zip(minutes, (r.process_rss_gib for r in system)))), "braille"),),
                               waiting, y_from_zero=True))
    views.append(ChartView("grad", "gradient norm", "step", "norm", (_step_series(train, "grad norm", "grad_norm", "braille"),),
                           "no grad norms logged yet", y_from_zero=True))
    views.append(ChartView("lr", "learning rate", "step", "lr", (_step_series(train, "learning rate", "learning_rate", "braille"),),
                           "no learning rates logged yet", y_from_zero=True))
    return tuple(views)


class SeriesChart(PlotextPlot):
    """Draws one ChartView."""

    DEFAULT_CSS = "SeriesChart { height: 1fr; min-height: 6; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.view: ChartView | None = None

    def show(self, view: ChartView) -> None:
        """Draw `view` (a no-op when it is the view already drawn)."""
        if view == self.view:
            return
        self.view = view
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        points = [s for s in view.series if s.xs]
        plt.xlabel(view.xlabel)
        plt.ylabel(view.ylabel)
        for series in points:
            draw = plt.scatter if series.points_only else plt.plot
            draw(list(series.xs), list(series.ys), label=series.label if len(points) > 1 else None, marker=series.marker)
        if points:
            low, high = min(min(s.xs) for s in points), max(max(s.xs) for s in points)
            xticks = whole_ticks(low, high) if view.xlabel == "step" else [low + (high - low) * i / 4 for i in range(5)]
            plt.xticks(xticks, tick_labels(xticks))
        if points and view.y_from_zero:
            top = max(max(s.ys) for s in points)
            # a known ceiling (the GPU's memory, 100 %) is the scale; else a little room above the highest point
            ceiling = max(view.y_max, top) if view.y_max else (top * 1.1 or 1.0)
            plt.ylim(0, ceiling)
            yticks = [ceiling * i / 4 for i in range(5)]
            plt.yticks(yticks, tick_labels(yticks))
        self.refresh()

    def title_for(self, width: int) -> str:
        """The view's title for a chart `width` wide: plotext draws no title at all when it runs past the axes,
        so a narrow chart gets the part before the colon (the legend names the series), or a cut one."""
        view = self.view
        if view is None:
            return ""
        title = view.title if any(s.xs for s in view.series) else f"{view.title}: {view.empty}"
        room = width - 8  # the y axis's labels take about that much of the row the title is centred over
        for candidate in (title, title.split(":")[0]):
            if len(candidate) <= room:
                return candidate
        return title[: max(room - 1, 1)] + "…"

    def render(self) -> RenderResult:
        """The plot with its title fitted to the width the chart has now."""
        self.plt.title(self.title_for(self.size.width))
        return super().render()
