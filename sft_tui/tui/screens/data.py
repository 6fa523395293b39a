"""Data: inspect a dataset file from the TUI (the same report as `sft-tui data inspect`).

The inspection runs in a thread worker (it reads the whole file) and ends by posting
DataInspected or DataInspectFailed; the screen only draws what arrives.
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from sft_tui.tui.screens.base import CockpitScreen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from sft_tui.core.errors import UserError
from sft_tui.tui.messages import DataInspected, DataInspectFailed


class DataScreen(CockpitScreen):
    """A file path and a length on top; the inspect report below."""

    BINDINGS = [Binding("escape", "back", "Back"), Binding("ctrl+r", "inspect", "Inspect")]

    def __init__(self, path: str = "") -> None:
        super().__init__()
        self.initial_path = path
        self.report = None

    def compose(self) -> ComposeResult:
        yield Static("sft-tui · data · inspect a dataset (JSONL, JSON, CSV, Parquet)", id="title")
        with Horizontal(id="data-form"):
            yield Input(self.initial_path, placeholder="path to a dataset file", id="data-path")
            yield Input("2048", placeholder="max seq len", id="data-seq-len", type="integer")
            yield Button("Inspect", id="data-inspect", variant="primary")
        with VerticalScroll(id="data-body"):
            yield Label("", id="data-summary")
            yield DataTable(id="data-table", show_cursor=False, zebra_stripes=True)
            yield Static("", id="data-details")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#data-table", DataTable).add_columns("check", "value", "note")
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
        table = self.query_one("#data-table", DataTable)
        table.clear()
        for row in report_rows(report):
            table.add_row(*row)
        details = [f"[red]invalid[/] {escape(line)}" for line in report.invalid_rows]
        if report.invalid > MAX_LISTED:
            details.append(f"... and {report.invalid - MAX_LISTED:,} more invalid rows")
        if report.records:
            details.append(escape(openings_line(report)))
        details.append("clean it with: sft-tui data dedup FILE -o OUT · sft-tui data select FILE -o OUT --n N")
        self.query_one("#data-details", Static).update("\n".join(details))

    def on_data_inspect_failed(self, message: DataInspectFailed) -> None:
        self.report = None
        self.query_one("#data-table", DataTable).clear()
        self.query_one("#data-details", Static).update("")
        self.query_one("#data-summary", Label).update(f"[b red]{escape(message.line)}[/]")

    def action_back(self) -> None:
        """Back to the runs."""
        self.app.pop_screen()
