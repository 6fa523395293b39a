"""Home: every run (state, progress, loss, speed, ETA) and a strip of GPU facts. Keys open, stop, resume."""

from __future__ import annotations

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Static

from sft_tui.core.runs.schema import RunOverview
from sft_tui.core.units import GIB, format_eta
from sft_tui.tui.messages import RunsListed, SystemSampled
from sft_tui.tui.screens.base import CockpitScreen

STATE_STYLE = {"running": "bold green", "queued": "yellow", "completed": "cyan", "stopped": "magenta", "failed": "bold red", "crashed": "bold red"}


def _bar(step: int, total: int, width: int = 8) -> str:
    filled = round(width * min(step, total) / total) if total else 0
    return "█" * filled + "░" * (width - filled)


def gpu_strip(sample: SystemSampled | None) -> str:
    """One line per GPU (memory bar, utilisation, temperature), or the plain no-GPU reason."""
    if sample is None:
        return "GPU: sampling..."
    host = sample.host
    line = f"host CPU {host.cpu_percent:3.0f}%  RAM {host.ram_used_bytes / GIB:.1f}/{host.ram_total_bytes / GIB:.1f} GiB"
    if not sample.gpu.available:
        return f"{sample.gpu.reason}   {line}"
    parts = []
    for g in sample.gpu.gpus:
        share = g.memory_used_bytes / g.memory_total_bytes if g.memory_total_bytes else 0
        bar = "█" * round(10 * share) + "░" * (10 - round(10 * share))
        util = f"{g.utilization_pct:.0f}%" if g.utilization_pct is not None else "-"
        temp = f"{g.temperature_c:.0f}C" if g.temperature_c is not None else "-"
        parts.append(f"GPU{g.index} {g.name} {bar} {g.memory_used_bytes / GIB:.1f}/{g.memory_total_bytes / GIB:.1f} GiB util {util} {temp}")
    return "\n".join(parts + [line])


COLUMNS = ("id", "state", "model", "method", "step", "loss", "tok/s", "ETA", "started")


def run_cells(s: RunOverview, marked: bool) -> tuple[str, ...]:
    """The table cells of one run."""
    speed = f"{s.tokens_per_s:,.0f}" if s.tokens_per_s else "-"
    progress = f"{_bar(s.step, s.max_steps)} {s.step}/{s.max_steps}" if s.max_steps else str(s.step)
    loss = f"{s.last_loss:.4f}" if s.last_loss is not None else "-"
    state = f"[{STATE_STYLE.get(s.state, '')}]{s.state}[/]" if STATE_STYLE.get(s.state) else s.state
    if any(j.state in ("queued", "running") for j in s.jobs):
        state += " +" + ",".join(j.kind for j in s.jobs if j.state in ("queued", "running"))
    model = escape(s.model.rstrip("/").rsplit("/", 1)[-1])
    shown_id = f"[reverse]{s.id}[/]" if marked else s.id
    return (shown_id, state, model, s.method, progress, loss, speed, format_eta(s.eta_s), s.started_at[:16].replace("T", " "))


class HomeScreen(CockpitScreen):
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

    runs: reactive[tuple[RunOverview, ...]] = reactive((), always_update=True, init=False)

    def __init__(self) -> None:
        super().__init__()
        self.marked: list[str] = []  # runs chosen for Compare, in the order marked

    def compose(self) -> ComposeResult:
        yield Static("sft-tui · runs", id="title")
        yield Static(gpu_strip(None), id="gpu-strip")
        table = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        for name in COLUMNS:
            table.add_column(name, key=name)
        yield table
        yield Static("reading the runs ...", id="empty")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()
        self.set_interval(self.app.poll_s * 2, self.action_refresh)

    def action_refresh(self) -> None:
        """Re-read the runs and sample the GPUs (in a worker thread)."""
        self.poll()

    @work(thread=True, exclusive=True, exit_on_error=False, name="listing the runs")
    def poll(self) -> None:
        """List the runs and sample the GPUs (in a thread) and post both."""
        runs = tuple(self.app.store.list_runs())
        self.post_message(RunsListed(runs))
        self.post_message(SystemSampled(self.app.sampler.sample_gpus(), self.app.sampler.sample_host()))

    def on_system_sampled(self, message: SystemSampled) -> None:
        self.query_one("#gpu-strip", Static).update(gpu_strip(message))

    def on_runs_listed(self, message: RunsListed) -> None:
        self.runs = message.runs

    def watch_runs(self, old: tuple[RunOverview, ...], new: tuple[RunOverview, ...]) -> None:
        self._fill_table(old, new)

    def _fill_table(self, old: tuple[RunOverview, ...], new: tuple[RunOverview, ...]) -> None:
        """Update cells in place when the same runs are listed (the cursor and scroll stay); rebuild when runs came or went."""
        table = self.query_one("#runs", DataTable)
        if [r.id for r in old] == [r.id for r in new] and table.row_count == len(new):
            for before, after in zip(old, new, strict=True):
                previous = run_cells(before, before.id in self.marked)
                for column, value, was in zip(COLUMNS, run_cells(after, after.id in self.marked), previous, strict=True):
                    if value != was:
                        table.update_cell(after.id, column, value, update_width=True)  # a longer value widens its column
        else:
            selected = self._selected()  # the cursor stays on the same run when runs come or go above it
            row = table.cursor_row
            table.clear()
            for s in new:
                table.add_row(*run_cells(s, s.id in self.marked), key=s.id)
            ids = [s.id for s in new]
            if new:
                table.move_cursor(row=ids.index(selected) if selected in ids else min(max(row, 0), len(new) - 1))
            # DataTable measures new rows when idle and widens its columns, but a frame drawn before
            # that stays on screen with every cell cut to its header's width (Textual 8.2): draw again after
            table.call_after_refresh(table.refresh)
        broken = [r for r in new if r.reason]
        if not new:
            note = f"no runs in {self.app.store.runs_dir}: start one with `sft-tui train run.toml` or `sft-tui demo`"
        elif broken:
            more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
            note = f"[b]unreadable[/b] {broken[0].id}: {escape(broken[0].reason)}{more}"
        else:
            note = ""
        self.query_one("#empty", Static).update(note)

    def _redraw_marks(self) -> None:
        table = self.query_one("#runs", DataTable)
        for s in self.runs:
            table.update_cell(s.id, "id", run_cells(s, s.id in self.marked)[0])

    def _selected(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if table.row_count == 0 or table.cursor_row < 0 or table.cursor_row >= table.row_count:
            return None
        return str(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

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
        self._redraw_marks()

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
