"""Compare 2-4 runs: loss curves told apart by marker, the final numbers, and only the config fields that differ.

A thread worker reads the runs (core.runs.compare.RunComparer, which reads only what was
appended since its last read) and posts the typed comparison; the screen keeps it in a
reactive and draws it. While a compared run is still queued or training, a timer reads
again every `poll_s`. Cells are shortened from the middle to fit the width; the full
value of the highlighted row is on the line below the table.
"""

from __future__ import annotations

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker

from sft_tui.core.runs.compare import Comparison, RunComparer, fit_widths, short_run_names, shorten_apart, shorten_field, shorten_middle
from sft_tui.core.runs.rundir import RunDir
from sft_tui.tui.messages import RunsCompared
from sft_tui.tui.screens.base import CockpitScreen
from sft_tui.tui.widgets.loss_chart import RUN_MARKERS, LossChart

SCROLLBAR = 2  # the table's vertical scrollbar: its width is kept free so columns do not move when it appears


def pack_line(label: str, entries: list[str], width: int) -> str:
    """`label` then the entries, on as few lines of `width` as they take: an entry that does not fit moves
    whole to the next line, so a run's marker never ends a line apart from its value."""
    lines, line, separator = [], label, " "
    for entry in entries:
        if len(line) + len(separator) + len(entry) > width:
            lines.append(line)
            line, separator = entry, "   "
        else:
            line, separator = f"{line}{separator}{entry}", "   "
    return "\n".join([*lines, line])


class CompareScreen(CockpitScreen):
    """Two to four runs side by side, refreshed while one of them trains."""

    CSS_PATH = "compare.tcss"
    BINDINGS = [
        Binding("escape,b", "back", "Back"),
        Binding("m", "smoothing", "Smoothing"),
        Binding("l", "log_scale", "Log scale"),
        Binding("g", "refresh", "Read again", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    comparison: reactive[Comparison | None] = reactive(None, always_update=True, init=False)

    def __init__(self, runs: list[RunDir]) -> None:
        super().__init__()
        self.runs = runs
        self.names = short_run_names([run.id for run in runs])
        self.comparer = RunComparer(runs)
        self._reader: Worker | None = None
        self._details: list[Text] = []  # the full text of each table row, for the detail line

    def compose(self) -> ComposeResult:
        yield Static(f"sft-tui · compare {len(self.runs)} runs", id="title")
        yield LossChart(id="compare-chart")
        yield DataTable(id="diff", cursor_type="row", zebra_stripes=True)
        yield Static("", id="compare-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(self.app.poll_s, self.poll)

    def poll(self) -> None:
        """Read the runs again if one may still change (what the timer does every poll_s)."""
        if self.comparison is None or self.comparison.active:
            self.read()

    def read(self) -> None:
        """Start a read unless one is still going (a slow disk never stacks reads up)."""
        if self._reader is None or self._reader.is_finished:
            self._reader = self._read()

    @work(thread=True, exclusive=True, exit_on_error=False, name="reading the runs to compare")
    def _read(self) -> None:
        """Read the runs in a thread and post the comparison."""
        self.post_message(RunsCompared(self.comparer.compare()))

    def on_runs_compared(self, message: RunsCompared) -> None:
        self.comparison = message.comparison

    def watch_comparison(self, old: Comparison | None, new: Comparison | None) -> None:
        if new is None:
            return
        if old is None or old.series != new.series:  # the same tuples when no row arrived: identity makes this cheap
            self.query_one(LossChart).set_runs([(name, xs, ys) for name, (_, xs, ys) in zip(self.names, new.series)])
        if old is None or old.rows != new.rows or old.equal_fields != new.equal_fields:
            self._fill_table(new)
        running = sum(n.active for n in new.numbers)
        note = f" · {running} still running: refreshing" if running else ""
        self.query_one("#title", Static).update(Text(f"sft-tui · compare {len(self.runs)} runs{note}"))

    def on_resize(self, event: events.Resize) -> None:
        if self.comparison is not None:
            self._fill_table(self.comparison)

    def _table_rows(self, comparison: Comparison) -> list[tuple[str, list[str]]]:
        """(label, cells) per table row: the numbers and eval rows, a line counting equal config fields, the differing fields."""
        rows = [(row[0], list(row[1:])) for row in comparison.rows]
        equal = len(comparison.equal_fields)
        section = (f"config · {equal} equal" if equal else "config", [""] * len(self.runs))
        return rows[: comparison.config_start] + [section] + rows[comparison.config_start :]

    def _fill_table(self, comparison: Comparison) -> None:
        """Lay the table out for the current width: every column shortened from the middle until all fit."""
        table = self.query_one("#diff", DataTable)
        rows = self._table_rows(comparison)
        headers = ["field"] + [f"{marker} {name}" for marker, name in zip(RUN_MARKERS, self.names)]
        natural = [max(len(headers[i]), *(len(([label] + cells)[i]) for label, cells in rows)) for i in range(len(headers))]
        padding = 2 * table.cell_padding * len(headers)
        widths = fit_widths(natural, max(len(headers) * 4, self.size.width - SCROLLBAR - padding))
        cursor = table.cursor_row
        table.clear(columns=True)
        for header, width in zip(headers, widths):
            table.add_column(Text(shorten_middle(header, width)), width=width)
        self._details = []
        for index, (label, cells) in enumerate(rows):
            section = index == comparison.config_start
            if section and len(label) > widths[0]:
                label = label.removeprefix("config · ")  # "5 equal" still says it, where "config… equal" would not
            name = shorten_field(label, widths[0]) if index > comparison.config_start else shorten_middle(label, widths[0])
            shown = [name, *shorten_apart(cells, widths[1:])]  # values that differ stay apart
            table.add_row(*map(Text, shown))
            equal = ", ".join(comparison.equal_fields) or "none"
            entries = [f"{marker} {value}" for marker, value in zip(RUN_MARKERS, cells)]
            self._details.append(Text(f"config fields equal in every run: {equal}" if section else
                                      pack_line(f"{label}:", entries, self.size.width - 2)))
        table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        self._show_detail(table.cursor_row)

    def _show_detail(self, row: int) -> None:
        detail = self._details[row] if 0 <= row < len(self._details) else Text("")
        self.query_one("#compare-detail", Static).update(detail)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(event.cursor_row)

    def action_smoothing(self) -> None:
        """Raw loss <-> exponential moving average."""
        self.query_one(LossChart).toggle_smoothing()

    def action_log_scale(self) -> None:
        """Linear <-> logarithmic loss axis."""
        self.query_one(LossChart).toggle_log_scale()

    def action_refresh(self) -> None:
        """Read the runs again now (a finished run too: an eval may have written its report since)."""
        self.read()

    def action_back(self) -> None:
        """Back to the runs."""
        self.app.pop_screen()
