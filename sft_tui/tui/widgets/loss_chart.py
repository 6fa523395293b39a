"""Train and eval loss over steps (textual-plotext), with smoothing and log scale toggles."""

from __future__ import annotations

import math
from typing import Any

from textual_plotext import PlotextPlot

from sft_tui.core.runs.schema import EvalRow, TrainRow
from sft_tui.tui.widgets.series import downsample, smooth


class LossChart(PlotextPlot):
    """The loss curve of one run. Feed it rows; it redraws at most a few times a second."""

    DEFAULT_CSS = "LossChart { height: 1fr; min-height: 8; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.smoothing = True
        self.log_scale = False
        self._train: tuple[TrainRow, ...] = ()
        self._evals: tuple[EvalRow, ...] = ()

    def set_rows(self, train: tuple[TrainRow, ...], evals: tuple[EvalRow, ...]) -> None:
        """Replace the data (the run's snapshot keeps the rows) and redraw."""
        self._train, self._evals = train, evals
        self.redraw()

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

    def redraw(self) -> None:
        """Draw the current data."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        xs, ys, exs, eys = self.points()
        title = "loss" + (" (smoothed)" if self.smoothing else "") + (" log scale" if self.log_scale else "")
        plt.title(title)
        plt.xlabel("step")
        if self.log_scale:
            plt.yscale("log")
        if xs:
            plt.plot(xs, ys, label="train", marker="braille")
        if exs:
            plt.scatter(exs, eys, label="eval", marker="dot")
        self.refresh()
