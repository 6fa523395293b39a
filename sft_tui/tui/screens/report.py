"""The eval report of one run: eval/report.md (base against tuned, then answers side by side), rendered.

The eval job writes the report (sft_tui.trainer.evaluate via core.evaluate.report.render_markdown);
this screen only reads it. Before there is one it says how to make one.
"""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Markdown, Static

from sft_tui.core.runs.rundir import RunDir
from sft_tui.tui.screens.base import CockpitScreen


def read_report(run: RunDir) -> tuple[str | None, str]:
    """(eval/report.md's text, '') or (None, one line saying why there is none and what to do)."""
    path = run.eval_markdown_path
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None, f"no eval report for {run.id} yet: press v in its monitor (once it has trained), or run `sft-tui eval {run.id}`"
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}; check the file's permissions, or run `sft-tui eval {run.id}` again"
    # report.md holds answers the model generated: any bytes, shown rather than refused
    text = raw.decode("utf-8", errors="replace")
    # the answer tables keep an answer's line breaks as <br>, which a terminal cannot render: a visible mark instead
    return text.replace("<br>", " ⏎ "), ""


class EvalReportScreen(CockpitScreen):
    """eval/report.md of one run; `r` reads it again (after a new eval job), esc goes back."""

    CSS_PATH = "report.tcss"
    BINDINGS = [
        Binding("r", "reload", "Reload"),
        Binding("escape,b", "app.pop_screen", "Back"),
    ]

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run

    def compose(self) -> ComposeResult:
        yield Static(f"[b]eval report of {escape(self.run.id)}[/b]  {escape(str(self.run.eval_markdown_path))}", id="report-title")
        yield Static("", id="report-missing")
        with VerticalScroll(id="report-scroll"):
            yield Markdown("", id="report-markdown")
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        """Read eval/report.md again."""
        text, why = read_report(self.run)
        missing = self.query_one("#report-missing", Static)
        missing.update(escape(why))
        missing.display = text is None
        scroll = self.query_one("#report-scroll", VerticalScroll)
        scroll.display = text is not None
        if text is not None:
            self.query_one(Markdown).update(text)
            scroll.focus()
