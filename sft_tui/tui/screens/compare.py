"""Compare 2-4 runs: loss curves overlaid, the config fields that differ, and final metrics.

A worker reads the runs (core.runs.compare) and posts the typed comparison; the screen
keeps it in a reactive and draws it.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from sft_tui.core.runs.compare import Comparison, compare_runs
from sft_tui.core.runs.rundir import RunDir
from sft_tui.tui.messages import RunsCompared
from sft_tui.tui.screens.base import CockpitScreen
from sft_tui.tui.widgets.series import downsample, smooth


class CompareScreen(CockpitScreen):
    """Two to four runs side by side."""

    BINDINGS = [Binding("escape", "back", "Back"), Binding("g", "refresh", "Refresh"), Binding("q", "app.quit", "Quit")]

    comparison: reactive[Comparison | None] = reactive(None, always_update=True, init=False)

    def __init__(self, runs: list[RunDir]) -> None:
        super().__init__()
        self.runs = runs

    def compose(self) -> ComposeResult:
        yield Static(f"sft-tui · comparing {len(self.runs)} runs (smoothed loss)", id="title")
        yield PlotextPlot(id="compare-chart")
        yield DataTable(id="diff", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.read()

    @work(thread=True, exclusive=True, exit_on_error=False, name="reading the runs to compare")
    def read(self) -> None:
        """Read the runs in a thread and post the comparison."""
        self.post_message(RunsCompared(compare_runs(self.runs)))

    def on_runs_compared(self, message: RunsCompared) -> None:
        self.comparison = message.comparison

    def watch_comparison(self, comparison: Comparison | None) -> None:
        if comparison is None:
            return
        plt = self.query_one(PlotextPlot).plt
        plt.clear_data()
        plt.title("loss")
        plt.xlabel("step")
        for run_id, xs, ys in comparison.series:
            if xs:
                drawn_xs, drawn_ys = downsample(list(xs), smooth(list(ys)))
                plt.plot(drawn_xs, drawn_ys, label=run_id[-24:], marker="braille")
        self.query_one(PlotextPlot).refresh()
        table = self.query_one("#diff", DataTable)
        table.clear(columns=True)
        table.add_column("field")
        for run in self.runs:
            table.add_column(run.id[-24:])
        for row in comparison.rows:
            table.add_row(*row)

    def action_refresh(self) -> None:
        """Read the runs again (a running run's "live" values move on)."""
        self.read()

    def action_back(self) -> None:
        """Back to the runs."""
        self.app.pop_screen()
