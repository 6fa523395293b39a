"""Train and eval loss over steps (textual-plotext), with smoothing and log scale toggles.

One run (the Monitor: `set_rows`) or several (Compare: `set_runs`), each of those drawn
with its own marker character and named in a legend on the chart's top line, so the
curves are told apart without colour (NO_COLOR, a monochrome tmux).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from textual.app import RenderResult
from textual_plotext import PlotextPlot

from sft_tui.core.runs.compare import shorten_middle
from sft_tui.core.runs.schema import EvalRow, TrainRow
from sft_tui.tui.widgets.series import downsample, smooth, tick_labels, whole_ticks

# One per compared run: shapes that differ in any font and without colour (plotext draws a curve with its marker).
RUN_MARKERS = ("•", "x", "+", "*")
RunCurve = tuple[str, Sequence[float], Sequence[float]]  # (label, steps, losses)


class LossChart(PlotextPlot):
    """The loss curve of one run (set_rows) or of several runs told apart by marker (set_runs)."""

    DEFAULT_CSS = "LossChart { height: 1fr; min-height: 8; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.smoothing = True
        self.log_scale = False
        self.loss_label = "loss"  # "DPO loss" etc.: a preference run's loss is its objective's, not next-token loss
        self._train: tuple[TrainRow, ...] = ()
        self._evals: tuple[EvalRow, ...] = ()
        self._runs: tuple[RunCurve, ...] | None = None  # several runs instead of one run's rows
        self._drawn: Any = None  # points() or run_points() as taken by the last redraw

    def set_rows(self, train: tuple[TrainRow, ...], evals: tuple[EvalRow, ...]) -> None:
        """Replace the data (the run's snapshot keeps the rows) and redraw."""
        self._train, self._evals = train, evals
        self.redraw()

    def set_loss_label(self, label: str) -> None:
        """Name the one run's loss on the title and y axis ("DPO loss": it starts near ln 2, not where a language-model loss does)."""
        if label != self.loss_label:
            self.loss_label = label
            self.refresh()

    def set_runs(self, runs: Sequence[RunCurve]) -> None:
        """Draw several runs' train loss (at most len(RUN_MARKERS)), each with its own marker, and redraw."""
        self._runs = tuple(runs)[: len(RUN_MARKERS)]
        self.redraw()

    def legend(self) -> list[tuple[str, str]]:
        """(marker, label) of each run set with set_runs, in order."""
        return [(marker, label) for marker, (label, _, _) in zip(RUN_MARKERS, self._runs or ())]

    def legend_line(self, width: int) -> str:
        """The legend as one line of at most `width` characters: labels are shortened before a marker is dropped."""
        entries = self.legend()
        prefix = "".join(f"{option} · " for option, on in (("smoothed", self.smoothing), ("log scale", self.log_scale)) if on)
        label_width = max(max((len(label) for _, label in entries), default=0), 1)
        while True:
            line = prefix + "   ".join(f"{marker} {shorten_middle(label, label_width)}" for marker, label in entries)
            if len(line) <= width or label_width <= 4:
                return line[:width]
            label_width -= 1

    def toggle_smoothing(self) -> None:
        """Raw loss <-> exponential moving average."""
        self.smoothing = not self.smoothing
        self.redraw()

    def toggle_log_scale(self) -> None:
        """Linear <-> logarithmic loss axis."""
        self.log_scale = not self.log_scale
        self.redraw()

    def points(self) -> tuple[list[float], list[float], list[float], list[float]]:
        """(train steps, train losses, eval steps, eval losses) as drawn."""
        rows = [r for r in self._train if r.loss is not None and math.isfinite(r.loss)]
        xs, ys = [float(r.step) for r in rows], [r.loss for r in rows]
        if self.smoothing and len(ys) > 2:
            ys = smooth(ys)
        xs, ys = downsample(xs, ys)
        evals = [r for r in self._evals if r.eval_loss is not None and math.isfinite(r.eval_loss)]
        return xs, ys, [float(r.step) for r in evals], [r.eval_loss for r in evals]

    def run_points(self) -> list[tuple[str, str, list[float], list[float]]]:
        """(marker, label, steps, losses) of each run set with set_runs, as drawn."""
        out = []
        for marker, (label, steps, losses) in zip(RUN_MARKERS, self._runs or ()):
            pairs = [(float(x), y) for x, y in zip(steps, losses) if y is not None and math.isfinite(y)]
            xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
            if self.smoothing and len(ys) > 2:
                ys = smooth(ys)
            out.append((marker, label, *downsample(xs, ys)))
        return out

    def redraw(self) -> None:
        """Take the current data and options as drawn, and repaint."""
        self._drawn = self.run_points() if self._runs is not None else self.points()
        self.refresh()

    def render(self) -> RenderResult:
        """The plot, built afresh from what redraw took.

        plotext's build() applies a log scale to the data in place, so a second build of the same
        figure (a resize, any repaint) would take the log of the log: each render starts clean.
        """
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if self._runs is not None:
            self._plot_runs(self._drawn)
        elif self._drawn is not None:
            self._plot_rows(*self._drawn)
        return super().render()

    def _plot_rows(self, xs: list[float], ys: list[float], exs: list[float], eys: list[float]) -> None:
        """One run: train loss and eval points."""
        plt = self.plt
        title = self.loss_label + (" (smoothed)" if self.smoothing else "") + (" log scale" if self.log_scale else "")
        plt.title(title)
        plt.xlabel("step")
        plt.ylabel(self.loss_label)
        if self.log_scale:
            plt.yscale("log")
        if xs:
            plt.plot(xs, ys, label="train", marker="braille")
            ticks = whole_ticks(min(xs), max(xs))
            plt.xticks(ticks, tick_labels(ticks))
        if exs:
            plt.scatter(exs, eys, label="eval", marker="dot")

    def _plot_runs(self, runs: list[tuple[str, str, list[float], list[float]]]) -> None:
        """Several runs: train loss only (best eval is in Compare's table), a legend on the top line, axes with their units."""
        plt = self.plt
        plt.title(self.legend_line(max(1, self.size.width - 2)))  # fitted to the width the chart has now
        plt.xlabel("optimizer step")
        plt.ylabel("loss (nats/token)")
        if self.log_scale:
            plt.yscale("log")
        steps: list[float] = []
        for marker, _, xs, ys in reversed(runs):  # where curves meet, the later one drawn shows: the first run (legend order) on top
            if xs:
                plt.plot(xs, ys, marker=marker)
                steps += [xs[0], xs[-1]]
        if steps:
            first, last = min(steps), max(steps)
            ticks = whole_ticks(first, last)
            plt.xticks(ticks, tick_labels(ticks))
