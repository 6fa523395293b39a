"""Data: inspect a dataset file from the TUI (the same report as `sft-tui data inspect`).

The inspection runs in a thread worker (it reads the whole file) and ends by posting
DataInspected or DataInspectFailed; the screen only draws what arrives.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.markup import escape
from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Input, Label, Static

from sft_tui.core.errors import UserError
from sft_tui.tui.messages import DataInspected, DataInspectFailed
from sft_tui.tui.screens.base import CockpitScreen


def checks_table(rows: list[tuple[str, ...]]) -> Table:
    """The report's checks as a Rich table whose note column wraps at any width."""
    table = Table(box=None, padding=(0, 1), expand=True, show_edge=False, header_style="bold")
    table.add_column("check", no_wrap=True)
    table.add_column("value", no_wrap=True)
    table.add_column("note", ratio=1, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    return table


class DataScreen(CockpitScreen):
    """A file path and a length on top; the inspect report below."""

    BINDINGS = [Binding("escape", "back", "Back"), Binding("ctrl+r", "inspect", "Inspect")]

    def __init__(self, path: str = "") -> None:
        super().__init__()
        self.initial_path = path
        self.report = None
        self.rows: list[tuple[str, ...]] = []  # the report's (check, value, note) rows, as shown

    def compose(self) -> ComposeResult:
        yield Static("sft-tui · data · inspect a dataset (JSONL, JSON, CSV, Parquet)", id="title")
        with Horizontal(id="data-form"):
            yield Input(self.initial_path, placeholder="path to a dataset file", id="data-path")
            yield Input("2048", placeholder="max seq len", id="data-seq-len", type="integer")
            yield Button("Inspect", id="data-inspect", variant="primary")
        with VerticalScroll(id="data-body"):
            yield Label("", id="data-summary")
            yield Static("", id="data-table")  # a Rich table: its note column wraps, so 80 columns cut nothing
            yield Static("", id="data-details")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#data-path", Input).focus()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_inspect()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "data-inspect":
            self.action_inspect()

    def action_inspect(self) -> None:
        """Inspect the file named in the form."""
        path = self.query_one("#data-path", Input).value.strip()
        length = self.query_one("#data-seq-len", Input).value.strip()
        if not path:
            self.query_one("#data-summary", Label).update("[b red]give the path of a dataset file[/]")
            return
        self.query_one("#data-summary", Label).update(f"inspecting {escape(path)} ...")
        self._inspect(Path(path).expanduser(), int(length) if length.isdigit() and int(length) > 0 else None)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _inspect(self, path: Path, max_seq_len: int | None) -> None:
        from sft_tui.core.data.inspect import inspect_dataset

        try:
            self.post_message(DataInspected(inspect_dataset(path, max_seq_len=max_seq_len)))
        except UserError as exc:
            self.post_message(DataInspectFailed(exc.line()))

    def on_data_inspected(self, message: DataInspected) -> None:
        from sft_tui.core.data.inspect import MAX_LISTED, openings_line, report_rows, summary_line

        report = self.report = message.report
        self.query_one("#data-summary", Label).update(escape(summary_line(report)))
        self.rows = report_rows(report)
        self.query_one("#data-table", Static).update(checks_table(self.rows))
        details = [f"[red]invalid[/] {escape(line)}" for line in report.invalid_rows]
        if report.invalid > MAX_LISTED:
            details.append(f"... and {report.invalid - MAX_LISTED:,} more invalid rows")
        if report.records:
            details.append(escape(openings_line(report)))
        where = shlex.quote(report.file)
        details.append(f"clean it with: sft-tui data dedup {escape(where)} -o OUT · sft-tui data select {escape(where)} -o OUT --n N")
        self.query_one("#data-details", Static).update("\n".join(details))

    def on_data_inspect_failed(self, message: DataInspectFailed) -> None:
        self.report = None
        self.rows = []
        self.query_one("#data-table", Static).update("")
        self.query_one("#data-details", Static).update("")
        self.query_one("#data-summary", Label).update(f"[b red]{escape(message.line)}[/]")

    def action_back(self) -> None:
        """Back to the runs."""
        self.app.pop_screen()
