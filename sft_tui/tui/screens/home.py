"""Home: every run (state, progress, loss, speed, ETA), a strip of GPU facts, and the latest events. Keys open, stop, resume.

Designed at 80x24 first: the columns people open Home for (name, owner, state, progress,
loss, tok/s, ETA) fit 80 columns, since a team shares the box; model, method and start time
join at 110 columns and wider, and the selected run's full id and details are always in the
lines under the table. A run waiting in the queue shows its place (`#2 · 12.0G`) where a
running one shows its progress, and the lines under the table say why it waits.
`m` shows only the runs of the person at the keyboard.
The listing comes from the app (it lists every other poll whatever screen is shown, to
announce runs that end); rows update in place, so the cursor and scroll hold.
"""

from __future__ import annotations

import time

from rich.markup import escape
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Static

from sft_tui.core.runs.notices import RunNotice, display_names, short_name
from sft_tui.core.runs.schema import ACTIVE_STATES, RunOverview
from sft_tui.core.units import GIB, format_eta
from sft_tui.tui.messages import SystemSampled
from sft_tui.tui.screens.base import CockpitScreen

STATE_STYLE = {"running": "bold green", "queued": "yellow", "completed": "cyan", "stopped": "magenta", "failed": "bold red", "crashed": "bold red"}


def _bar(step: int, total: int, width: int = 4) -> str:
    filled = round(width * min(step, total) / total) if total else 0
    return "█" * filled + "░" * (width - filled)


def gpu_strip(sample: SystemSampled | None) -> str:
    """One line per GPU (memory bar, utilisation, temperature), or the plain no-GPU reason."""
    if sample is None:
        return "GPU: sampling..."
    host = sample.host
    line = f"host CPU {host.cpu_percent:3.0f}%  RAM {host.ram_used_bytes / GIB:.1f}/{host.ram_total_bytes / GIB:.1f} GiB"
    if not sample.gpu.available:
        return f"{sample.gpu.reason}\n{line}"  # two lines: together they wrap mid-word at 80 columns
    parts = []
    for g in sample.gpu.gpus:
        share = g.memory_used_bytes / g.memory_total_bytes if g.memory_total_bytes else 0
        bar = "█" * round(10 * share) + "░" * (10 - round(10 * share))
        util = f"{g.utilization_pct:.0f}%" if g.utilization_pct is not None else "-"
        temp = f"{g.temperature_c:.0f}C" if g.temperature_c is not None else "-"
        parts.append(f"GPU{g.index} {g.name} {bar} {g.memory_used_bytes / GIB:.1f}/{g.memory_total_bytes / GIB:.1f} GiB util {util} {temp}")
    return "\n".join(parts + [line])


NARROW = ("name", "owner", "state", "progress", "loss", "tok/s", "ETA")
WIDE = (*NARROW, "model", "method", "started")
WIDE_FROM = 110  # terminal columns at which the wide set fits without pushing ETA off
NAME_WIDTH = 16  # with OWNER_WIDTH and a 4-cell bar, the narrow set fits 80 columns with ETA
OWNER_WIDTH = 8  # most user names; the full owner@host is in the detail line
RESUMABLE = ("stopped", "failed", "crashed")


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run_cells(s: RunOverview, marked: bool, columns: tuple[str, ...] = NARROW, label: str | None = None) -> tuple[str, ...]:
    """The table cells of one run, for the given columns; `label` is its name as listed (display_names), else its short name."""
    state = f"[{STATE_STYLE.get(s.state, '')}]{s.state}[/]" if STATE_STYLE.get(s.state) else s.state
    running_jobs = [j.kind for j in s.jobs if j.state in ACTIVE_STATES]
    if running_jobs:
        state += " +" + ",".join(running_jobs)
    name = escape(_fit(label or short_name(s.id), NAME_WIDTH))
    cells = {
        "name": f"[reverse]{name}[/]" if marked else name,
        "state": state,
        "progress": progress_cell(s),
        "loss": f"{s.last_loss:.4f}" if s.last_loss is not None else "-",
        "tok/s": f"{s.tokens_per_s:,.0f}" if s.tokens_per_s else "-",
        "ETA": format_eta(s.eta_s) if s.state in ACTIVE_STATES else "-",
        "model": escape(s.model.rstrip("/").rsplit("/", 1)[-1]),
        "method": escape(s.method),
        "owner": escape(_fit(s.owner or "-", OWNER_WIDTH)),
        "started": s.started_at[:16].replace("T", " "),
    }
    return tuple(cells[c] for c in columns)


def progress_cell(s: RunOverview) -> str:
    """Steps done with a bar; for a run waiting in the queue, its place and the memory it waits for (`#2 · 12.0G`)."""
    if s.queue_position is not None:
        return f"#{s.queue_position} · {s.estimate_gib:.1f}G" if s.estimate_gib is not None else f"#{s.queue_position} queued"
    return f"{_bar(s.step, s.max_steps)} {s.step}/{s.max_steps}" if s.max_steps else str(s.step)


def _gpus(gpus: tuple[int, ...]) -> str:
    return f"GPU {gpus[0]}" if len(gpus) == 1 else f"GPUs {','.join(map(str, gpus))}"


def detail_line(s: RunOverview | None) -> str:
    """The selected run in full: id, model, method, owner@host, start; then its error, why it waits in the queue, or its GPUs."""
    if s is None:
        return ""
    who = f"{s.owner}@{s.host}" if s.owner and s.host else s.owner or "-"
    # owner before the model: a local model's path is long, and at 80 columns the end of the line is cut
    line = f"[b]{escape(s.id)}[/b]  {escape(who)} · {escape(s.method)} · {escape(s.model)} · {s.started_at[:16].replace('T', ' ')}"
    if s.reason:
        line += f"\n[b red]unreadable[/]: {escape(s.reason)}"
    elif s.error is not None:
        line += f"\n[b red]{escape(s.error.kind)}[/]: {escape(s.error.message)}"
    elif s.queue_position is not None:
        # the reason first after the place: at 80 columns its end is cut, the estimate is also in the table
        estimate = f" · estimate {s.estimate_gib:.1f} GiB" if s.estimate_gib is not None else ""
        line += f"\n[b]queued #{s.queue_position}[/b], priority {s.priority} · waits: {escape(s.waiting or 'its turn')}{estimate}"
    elif s.state in ACTIVE_STATES:
        line += f"\n{s.state} on {_gpus(s.gpus)}" if s.gpus else f"\n{s.state} on the CPU" if s.device == "cpu" else ""
    return line


def mine_line(shown: int, total: int, owner: str) -> str:
    """The title's note while `m` hides other people's runs."""
    return f"mine only ({owner}): {shown} of {total} runs · m shows all"


def events_line(notices: tuple[RunNotice, ...], width: int = 3) -> str:
    """The newest events, newest first (time, run, what happened)."""
    shown = [f"{time.strftime('%H:%M', time.localtime(n.time))} {escape(n.line)}" for n in reversed(notices[-width:])]
    return "\n".join(shown)


class RunsTable(DataTable):
    """The runs: enter opens the selected run (shown in the footer), and cells are drawn again after new rows are measured.

    Textual 8.2's DataTable widens auto-width columns for new rows when idle, but cells it
    rendered before that stay cached at the old width: a refresh alone still drew every
    cell cut to its header's width (`sql-  queue`), seen under load in tmux and every time
    the wide column set replaced the narrow one.
    """

    BINDINGS = [Binding("enter", "select_cursor", "Open")]  # the table takes enter; this names it in the footer

    async def _on_idle(self, event: events.Idle) -> None:
        # private attributes of 8.2, read defensively: a Textual without them just skips the workaround
        measuring = getattr(self, "_require_update_dimensions", False) or bool(getattr(self, "_updated_cells", None))
        await super()._on_idle(event)
        clear_caches = getattr(self, "_clear_caches", None)
        if measuring and clear_caches is not None:
            clear_caches()
            self.refresh()


class HomeScreen(CockpitScreen):
    """The runs table, the GPU strip, the selected run's details and the latest events."""

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("s", "stop", "Stop"),
        Binding("s", "cancel", "Cancel"),  # the same key on a queued run: only one of the two applies (check_action)
        Binding("r", "resume", "Resume"),
        Binding("n", "launch", "New run"),
        Binding("w", "wizard", "Wizard"),
        Binding("e", "estimate", "Estimate"),
        Binding("d", "data", "Data", show=False),
        Binding("space", "mark", "Mark for compare", show=False),
        Binding("c", "compare", "Compare marked runs", show=False),
        Binding("m", "mine", "Mine only / all runs", show=False),
        Binding("g", "refresh", "Refresh now", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    runs: reactive[tuple[RunOverview, ...]] = reactive((), always_update=True, init=False)
    columns: reactive[tuple[str, ...]] = reactive(NARROW, init=False)
    mine_only: reactive[bool] = reactive(False, init=False)

    def __init__(self) -> None:
        super().__init__()
        self.marked: list[str] = []  # runs chosen for Compare, in the order marked
        self.listed: tuple[RunOverview, ...] = ()  # every run, before the mine-only filter

    def compose(self) -> ComposeResult:
        yield Static("sft-tui · runs", id="title")
        yield Static(gpu_strip(None), id="gpu-strip")
        yield RunsTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("reading the runs ...", id="empty")
        yield Static("", id="detail")
        yield Static("", id="events")
        yield Footer()

    def on_mount(self) -> None:
        self._set_columns(self.columns)
        self.query_one("#events").display = False
        self.watch(self.app, "runs", self._listed)
        self.watch(self.app, "notices", self._noticed)
        self.sample()
        self.set_interval(self.app.poll_s * 2, self.sample)

    def on_resize(self) -> None:
        self.columns = WIDE if self.size.width >= WIDE_FROM else NARROW

    def watch_columns(self, columns: tuple[str, ...]) -> None:
        self._set_columns(columns)
        self._fill_table((), self.runs)

    def _set_columns(self, columns: tuple[str, ...]) -> None:
        table = self.query_one("#runs", DataTable)
        table.clear(columns=True)
        for name in columns:
            table.add_column(name, key=name)

    def poll(self) -> None:
        """Re-list the runs (the app's worker) and sample the GPUs (this screen's)."""
        self.app.poll_runs()
        self.sample()

    def action_refresh(self) -> None:
        """Re-read the runs and sample the GPUs now."""
        self.poll()

    @work(thread=True, exclusive=True, exit_on_error=False, name="sampling the GPUs")
    def sample(self) -> None:
        """Sample the GPUs and the host (in a thread) and post them."""
        self.post_message(SystemSampled(self.app.sampler.sample_gpus(), self.app.sampler.sample_host()))

    def on_system_sampled(self, message: SystemSampled) -> None:
        self.query_one("#gpu-strip", Static).update(gpu_strip(message))

    def _listed(self, runs: tuple[RunOverview, ...] | None) -> None:
        if runs is not None:
            self.listed = runs
            self._show_listed()

    def _show_listed(self) -> None:
        """The listing, filtered to the user's own runs while mine-only is on, and the title saying so."""
        title = "sft-tui · runs"
        runs = self.listed
        if self.mine_only:
            me = self.app.current_owner()[0]
            runs = tuple(r for r in runs if r.owner == me)
            title += " · " + mine_line(len(runs), len(self.listed), me)
        self.query_one("#title", Static).update(escape(title))
        self.runs = runs

    def watch_mine_only(self) -> None:
        self._show_listed()

    def action_mine(self) -> None:
        """Show only my runs, or everyone's again (queue places still count everyone's)."""
        self.mine_only = not self.mine_only

    def _noticed(self, notices: tuple[RunNotice, ...]) -> None:
        events = self.query_one("#events", Static)
        events.update(events_line(notices, 3 if self.size.height >= 30 else 1))
        events.display = bool(notices)

    def watch_runs(self, old: tuple[RunOverview, ...], new: tuple[RunOverview, ...]) -> None:
        self._fill_table(old, new)
        self._show_detail()
        self.refresh_bindings()  # stop and resume follow the selected run's state

    def _fill_table(self, old: tuple[RunOverview, ...], new: tuple[RunOverview, ...]) -> None:
        """Update cells in place when the same runs are listed (the cursor and scroll stay); rebuild when runs came or went."""
        table = self.query_one("#runs", DataTable)
        columns = self.columns
        labels, earlier = display_names([r.id for r in new]), display_names([r.id for r in old])
        if [r.id for r in old] == [r.id for r in new] and table.row_count == len(new):
            for before, after in zip(old, new, strict=True):
                previous = run_cells(before, before.id in self.marked, columns, earlier[before.id])
                now = run_cells(after, after.id in self.marked, columns, labels[after.id])
                for column, value, was in zip(columns, now, previous, strict=True):
                    if value != was:
                        table.update_cell(after.id, column, value, update_width=True)  # a longer value widens its column
        else:
            selected = self._selected()  # the cursor stays on the same run when runs come or go above it
            row = table.cursor_row
            table.clear()
            for s in new:
                table.add_row(*run_cells(s, s.id in self.marked, columns, labels[s.id]), key=s.id)
            ids = [s.id for s in new]
            if new:
                table.move_cursor(row=ids.index(selected) if selected in ids else min(max(row, 0), len(new) - 1))
        broken = [r for r in new if r.reason]
        if not new and self.mine_only and self.listed:
            note = f"none of the {len(self.listed)} runs is yours ({escape(self.app.current_owner()[0])}): m shows everyone's"
        elif not new:
            note = f"no runs in {self.app.store.runs_dir}: start one with `n`, `sft-tui train run.toml` or `sft-tui demo`"
        elif broken:
            more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
            note = f"[b]unreadable[/b] {broken[0].id}: {escape(broken[0].reason)}{more}"
        else:
            note = ""
        empty = self.query_one("#empty", Static)
        empty.update(note)
        empty.display = bool(note)

    def _redraw_marks(self) -> None:
        table = self.query_one("#runs", DataTable)
        labels = display_names([r.id for r in self.runs])
        for s in self.runs:
            table.update_cell(s.id, "name", run_cells(s, s.id in self.marked, ("name",), labels[s.id])[0])

    def _selected(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if table.row_count == 0 or table.cursor_row < 0 or table.cursor_row >= table.row_count:
            return None
        return str(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

    def _selected_run(self) -> RunOverview | None:
        selected = self._selected()
        return next((r for r in self.runs if r.id == selected), None)

    def _show_detail(self) -> None:
        detail = self.query_one("#detail", Static)
        detail.update(detail_line(self._selected_run()))

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Stop is offered for an active run, Resume for a stopped, failed or crashed one that has trained (step 0: nothing to resume)."""
        if action in ("stop", "cancel", "resume"):
            run = self._selected_run()
            if run is None:
                return False
            if action == "resume":
                return run.state in RESUMABLE and run.step > 0
            waiting = run.queue_position is not None
            return run.state in ACTIVE_STATES and (waiting if action == "cancel" else not waiting)
        return True

    def action_open(self) -> None:
        """Open the monitor of the selected run."""
        run_id = self._selected()
        if run_id:
            self.app.open_monitor(run_id)

    def action_stop(self) -> None:
        """Stop the selected run (asks first; it checkpoints, then stops)."""
        run_id = self._selected()
        if run_id:
            self.app.stop(run_id)

    def action_cancel(self) -> None:
        """Take the selected queued run out of the queue (asks first; it never started)."""
        self.action_stop()  # the app's stop asks the cancel question for a run that waits in the queue

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
