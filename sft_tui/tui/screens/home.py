"""Home: every run (state, progress, loss, speed, ETA) and a strip of GPU facts. Keys open, stop, resume."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from sft_tui.core.runs import RunSummary, format_eta
from sft_tui.tui.messages import RunsListed, SystemSampled

STATE_STYLE = {"running": "bold green", "queued": "yellow", "completed": "cyan", "stopped": "magenta", "failed": "bold red", "crashed": "bold red"}


def _bar(step: int, total: int, width: int = 8) -> str:
    filled = round(width * min(step, total) / total) if total else 0
    return "█" * filled + "░" * (width - filled)


def gpu_strip(sample: SystemSampled | None) -> str:
    """One line per GPU (memory bar, utilisation, temperature), or the plain no-GPU reason."""
    if sample is None:
        return "GPU: sampling..."
    host = sample.host
    line = f"host CPU {host.cpu_percent:3.0f}%  RAM {host.ram_used_bytes / 2**30:.1f}/{host.ram_total_bytes / 2**30:.1f} GiB"
    if not sample.gpu.available:
        return f"{sample.gpu.reason}   {line}"
    parts = []
    for g in sample.gpu.gpus:
        share = g.memory_used_bytes / g.memory_total_bytes if g.memory_total_bytes else 0
        bar = "█" * round(10 * share) + "░" * (10 - round(10 * share))
        util = f"{g.utilization_pct:.0f}%" if g.utilization_pct is not None else "-"
        temp = f"{g.temperature_c:.0f}C" if g.temperature_c is not None else "-"
        parts.append(f"GPU{g.index} {g.name} {bar} {g.memory_used_bytes / 2**30:.1f}/{g.memory_total_bytes / 2**30:.1f} GiB util {util} {temp}")
    return "\n".join(parts + [line])


class HomeScreen(Screen):
    """The runs table and the GPU strip."""

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("e", "estimate", "Estimate"),
        Binding("d", "data", "Data"),
        Binding("w", "wizard", "Wizard"),
        Binding("n", "launch", "New run"),
        Binding("g", "refresh", "Refresh"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: tuple[RunSummary, ...] = ()
        self.marked: list[str] = []  # runs chosen for Compare, in the order marked

    def compose(self) -> ComposeResult:
        yield Static("sft-tui · runs", id="title")
        yield Static(gpu_strip(None), id="gpu-strip")
        table = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        table.add_columns("id", "state", "model", "method", "step", "loss", "tok/s", "ETA", "started")
        yield table
        yield Static("", id="empty")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()
        self.set_interval(self.app.poll_s * 2, self.action_refresh)

    def action_refresh(self) -> None:
        """Re-read the runs and sample the GPUs (in a worker thread)."""
        self.poll()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def poll(self) -> None:
        runs = tuple(self.app.store.list_runs())
        self.post_message(RunsListed(runs))
        self.post_message(SystemSampled(self.app.sampler.sample_gpus(), self.app.sampler.sample_host()))

    def on_system_sampled(self, message: SystemSampled) -> None:
        self.query_one("#gpu-strip", Static).update(gpu_strip(message))

    def on_runs_listed(self, message: RunsListed) -> None:
        self.runs = message.runs
        table = self.query_one("#runs", DataTable)
        row = table.cursor_row
        table.clear()
        for s in message.runs:
            speed = f"{s.tokens_per_s:,.0f}" if s.tokens_per_s else "-"
            progress = f"{_bar(s.step, s.max_steps)} {s.step}/{s.max_steps}" if s.max_steps else str(s.step)
            loss = f"{s.last_loss:.4f}" if s.last_loss is not None else "-"
            state = f"[{STATE_STYLE.get(s.state, '')}]{s.state}[/]" if STATE_STYLE.get(s.state) else s.state
            model = s.model.rstrip("/").rsplit("/", 1)[-1]
            shown_id = f"[reverse]{s.id}[/]" if s.id in self.marked else s.id
            eta = format_eta(s.eta_s)
            table.add_row(shown_id, state, model, s.method, progress, loss, speed, eta, s.started_at[:16].replace("T", " "), key=s.id)
        if message.runs:
            table.move_cursor(row=min(max(row, 0), len(message.runs) - 1))
        self.query_one("#empty", Static).update("" if message.runs else f"no runs in {self.app.store.runs_dir}: start one with `sft-tui train run.toml` or `sft-tui demo`")

    def _selected(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if not self.runs or table.cursor_row < 0 or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row].id

    def action_open(self) -> None:
        """Open the monitor of the selected run."""
        run_id = self._selected()
        if run_id:
            self.app.open_monitor(run_id)

    def action_stop(self) -> None:
        """Ask the selected run to stop (checkpoint first)."""
        run_id = self._selected()
        if run_id:
            self.app.stop(run_id)

    def action_resume(self) -> None:
        """Resume the selected run from its last checkpoint."""
        run_id = self._selected()
        if run_id:
            self.app.resume(run_id)

    def action_mark(self) -> None:
        """Mark or unmark the selected run for Compare (up to four)."""
        run_id = self._selected()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        elif len(self.marked) < 4:
            self.marked.append(run_id)
        else:
            self.app.notify("Compare takes up to four runs", severity="warning")
        self.post_message(RunsListed(self.runs))

    def action_compare(self) -> None:
        """Compare the marked runs (two to four)."""
        if len(self.marked) < 2:
            self.app.notify("mark two to four runs with space first", severity="warning")
            return
        from sft_tui.tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen([self.app.store.find_run(r) for r in self.marked]))

    def action_launch(self) -> None:
        """Open the Launch screen."""
        from sft_tui.tui.screens.launch import LaunchScreen

        self.app.push_screen(LaunchScreen())

    def action_wizard(self) -> None:
        """Open the decision wizard."""
        from sft_tui.tui.screens.wizard import WizardScreen

        self.app.push_screen(WizardScreen())

    def action_estimate(self) -> None:
        """Open the estimator."""
        from sft_tui.tui.screens.estimate import EstimateScreen

        self.app.push_screen(EstimateScreen())

    def action_data(self) -> None:
        """Open the Data screen (inspect a dataset)."""
        from sft_tui.tui.screens.data import DataScreen

        self.app.push_screen(DataScreen())

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()
