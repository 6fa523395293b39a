"""Monitor: one run live. Loss and other charts, progress and ETA, GPU/host readings, jobs, log tail, errors.

A thread worker polls the run's one watcher (core.runs.watch) and posts the typed snapshot;
the screen keeps it in a reactive and redraws from it. Leaving the screen or the app never
touches the run or its jobs: they run in their own sessions.

Laid out for 80x24 first. The chart takes what is left; the side panel always shows loss,
eval, lr, grad norm, tokens/s and the GPU (or one line saying there is none; a multi-GPU
run's ranks one line each, as many as the panel's rows hold), and for a CUDA run its measured
peak beside the estimate it was launched with (measured_peak.py); the log pane shrinks and
then goes when rows run out (on_resize), before anything in the side panel.

A preference run (DPO, ORPO, KTO; its config's objective) names its loss ("DPO loss"), adds
its own metrics to the side panel (accuracy or KL, margin, chosen/rejected rewards) and its
own charts right after the loss in the `c` cycle (preference_views.py).
"""

from __future__ import annotations

import time

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Footer, Log, ProgressBar, Static

from sft_tui.core.errors import UserError
from sft_tui.core.runs.notices import short_name
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, JobOverview
from sft_tui.core.runs.sysmon import GpuSample, GpuSnapshot, HostSample
from sft_tui.core.runs.watch import RunSnapshot, RunWatcher
from sft_tui.core.units import GIB, format_eta
from sft_tui.tui.messages import RunWatched, SystemSampled
from sft_tui.tui.screens.base import CockpitScreen
from sft_tui.tui.widgets.loss_chart import LossChart
from sft_tui.tui.widgets.measured_peak import measured_peak_lines
from sft_tui.tui.widgets.preference_views import (
    LOSS_LABELS,
    SIDE_WIDTH,
    fit,
    loss_label,
    objective_of,
    preference_lines,
    preference_views,
)
from sft_tui.tui.widgets.series_chart import ChartView, SeriesChart, chart_views

RESUMABLE = ("stopped", "failed", "crashed")
# `c` cycles; gpu only when the run used one; accuracy (DPO, ORPO), kl (KTO) and rewards only for a preference run
CHARTS = ("loss", "accuracy", "kl", "rewards", "speed", "memory", "gpu", "grad", "lr")
PREFERENCE_CHARTS = ("accuracy", "kl", "rewards")  # smoothed like the loss, with the same `m`


def job_line(job: JobOverview) -> str:
    """One job as the monitor shows it: what it is doing, or how it ended."""
    if job.state in ACTIVE_STATES:
        progress = f" {job.step}/{job.max_steps}" if job.max_steps else ""
        return f"{job.id} {job.state}: {job.phase or 'starting'}{progress}"
    if job.error is not None:
        return f"{job.id} {job.state} ({job.error.kind}): {job.error.message}"
    return f"{job.id} {job.state}: {job.result}" if job.result else f"{job.id} {job.state}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def title_line(run: RunDir, snapshot: RunSnapshot, now: float | None = None) -> str:
    """Name, state, step, ETA first (they survive a narrow pane), then time trained and epoch."""
    status = snapshot.status
    step, total = (status.step, status.max_steps) if status else (0, 0)
    eta = status.eta_s if status and snapshot.state == "running" else None
    last = snapshot.train[-1] if snapshot.train else None
    trained = last.wall_s if last and last.wall_s is not None else None
    if trained is None and status and snapshot.state == "running":  # a queued run has not trained at all
        from sft_tui.core.runs.schema import parse_iso

        trained = (now or time.time()) - parse_iso(status.started_at).timestamp()
    parts = [f"[b]{escape(short_name(run.id))}[/b]", f"[b]{snapshot.state}[/b]", f"step {step}/{total or '?'}"]
    if snapshot.state in ACTIVE_STATES:
        parts.append(f"ETA {format_eta(eta)}")
    if trained is not None:
        parts.append(f"{_duration(trained)} in")
    if last and last.epoch is not None:
        parts.append(f"ep {last.epoch:.2f}")
    return " · ".join(parts)


def numbers_lines(snapshot: RunSnapshot, objective: str = "sft", width: int = SIDE_WIDTH, label: str = "") -> list[str]:
    """Loss, eval, lr, grad norm and tokens/s of the newest rows (nothing before the first row).

    A preference run's loss is named ("DPO loss", three decimals to fit the panel), and its own metrics follow the best eval.
    """
    if not snapshot.train and not snapshot.evals:
        return []
    last = snapshot.train[-1] if snapshot.train else None
    evals = [(r.step, r.eval_loss) for r in snapshot.evals if r.eval_loss is not None]
    label = label or LOSS_LABELS.get(objective, "loss")
    digits = 4 if label == "loss" else 3
    loss = f"{last.loss:.{digits}f}" if last and last.loss is not None else "-"
    held = [f"eval {evals[-1][1]:.{digits}f}"] if evals else []
    lines = [fit([f"{label} {loss}", *held], [f"{label.split()[0]} {loss}", *held], width=width)]  # narrow: "DPO 0.062"
    if evals:
        best_step, best = min(evals, key=lambda e: e[1])
        lines.append(f"best eval {best:.{digits}f} @ {best_step}")
    lines += preference_lines(snapshot, objective, width)
    lr = f"{last.learning_rate:.1e}" if last and last.learning_rate is not None else "-"
    grad = f"{last.grad_norm:.3f}" if last and last.grad_norm is not None else "-"
    lines.append(f"lr {lr}  grad {grad}")
    lines.append(f"tok/s {last.tokens_per_s:,.0f}" if last and last.tokens_per_s else "tok/s -")
    return lines


def _rank_columns(g: GpuSample | None, rank: int, index: int, decimals: int) -> list[str]:
    """One rank's readings as columns: rank, GPU, memory used/total, utilisation, temperature, power."""
    if g is None:
        return [f"r{rank}", f"GPU{index}", "not seen", "", "", ""]
    return [f"r{rank}", f"GPU{index}", f"{g.memory_used_bytes / GIB:.{decimals}f}/{g.memory_total_bytes / GIB:.0f}G",
            f"{g.utilization_pct:.0f}%" if g.utilization_pct is not None else "-",
            f"{g.temperature_c:.0f}C" if g.temperature_c is not None else "",
            f"{g.power_w:.0f}W" if g.power_w is not None else ""]


# Columns kept as the panel narrows (rank, GPU, memory, util, temp, power): temperature goes first (power
# already says whether a rank works), then power, then memory's decimal.
RANK_LAYOUTS = ((1, (0, 1, 2, 3, 4, 5)), (1, (0, 1, 2, 3, 5)), (1, (0, 1, 2, 3)), (0, (0, 1, 2, 3)))


def rank_lines(gpu: GpuSnapshot, placed: tuple[int, ...], width: int = SIDE_WIDTH, rows: int | None = None) -> list[str]:
    """A multi-GPU run: one line per rank (rank i runs on placed[i]), columns aligned: `r0 GPU2 30.1/80G 97% 65C 300W`.

    Columns go from the right until a line fits `width`; with `rows` given and too few of them, the first ranks
    and `and N more ranks` (rank 0 writes the run, the others usually match it).
    """
    by_index = {g.index: g for g in gpu.gpus}
    for decimals, keep in RANK_LAYOUTS:
        table = [[_rank_columns(by_index.get(index), rank, index, decimals)[c] for c in keep] for rank, index in enumerate(placed)]
        widths = [max(len(row[c]) for row in table) for c in range(len(keep))]
        # the first two columns read left to right, the numbers line up on the right
        lines = [" ".join(cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths))).rstrip()
                 for row in table]
        if max(len(line) for line in lines) <= width:
            break
    if rows is not None and len(lines) > max(rows, 1):
        shown = max(rows - 1, 1)
        lines = lines[:shown] + [f"   and {len(placed) - shown} more ranks"]
    return lines


def system_lines(gpu: GpuSnapshot | None, host: HostSample | None, pid: int | None, active: bool, snapshot: RunSnapshot | None,
                 peak: list[str] | None = None, width: int = SIDE_WIDTH, rows: int | None = None) -> list[str]:
    """The GPU(s) the run uses, then host and trainer; a finished run shows its last recorded sample instead of now.

    The run's GPUs are those where NVML lists its trainer, else those it was placed on (status gpus), else all.
    A run placed on several GPUs (one process per GPU) gets one line per rank instead (`rank_lines`), cut to
    `rows` (the panel's rows left, when known) with the lines after them kept.
    `peak` (a CUDA run's measured peak beside its estimate: measured_peak.py) follows the GPU lines.
    """
    lines: list[str] = []
    peak = peak or []
    if not active and snapshot is not None:
        if not snapshot.system:
            return ["no GPU samples recorded", *peak]  # a run from before the supervisor recorded them
        recorded = snapshot.system[-1]
        if recorded.gpu_count:
            lines.append(f"GPU  {recorded.gpu_mem_used_gib or 0:.1f}/{recorded.gpu_mem_total_gib or 0:.1f} GiB at the end")
            lines.append(f"     peak seen {max(r.gpu_mem_used_gib or 0 for r in snapshot.system):.1f} GiB")
            lines += peak
        else:
            lines.append("GPU  none (a CPU run)")
            lines.append(f"trainer RAM peak {max(r.process_rss_gib or 0 for r in snapshot.system):.2f} GiB")
        return lines
    if gpu is None or host is None:
        return ["GPU  sampling..."]
    placed = snapshot.status.gpus if snapshot is not None and snapshot.status is not None else ()
    if gpu.available and len(placed) > 1 and not (snapshot is not None and snapshot.state == "queued"):
        # no "this run holds" line: the ranks are the launcher's children, not `pid`, and each rank's line shows its GPU
        after = [*peak, _host_line(host), *_trainer_line(host, snapshot)]
        lines += rank_lines(gpu, placed, width, None if rows is None else rows - len(after))
        return lines + after
    if gpu.available:
        mine = [g for g in gpu.gpus if any(p.pid == pid for p in g.processes)] if pid else []
        shown = mine or [g for g in gpu.gpus if g.index in placed] or list(gpu.gpus)
        for g in shown[:4]:
            util = f"{g.utilization_pct:.0f}%" if g.utilization_pct is not None else "-"
            temp = f"{g.temperature_c:.0f}C" if g.temperature_c is not None else ""
            power = f"{g.power_w:.0f}W" if g.power_w is not None else ""
            used = g.memory_used_bytes / GIB
            lines.append(f"GPU{g.index} {used:.{0 if used >= 10 else 1}f}/{g.memory_total_bytes / GIB:.0f}G {util} {temp} {power}".rstrip())
        if len(shown) > 4:
            lines.append(f"     and {len(shown) - 4} more GPUs")
        held = [p.used_bytes for g in gpu.gpus for p in g.processes if p.pid == pid and p.used_bytes is not None] if pid else []
        if held:
            lines.append(f"     this run holds {sum(held) / GIB:.1f} GiB")
    else:
        lines.append("GPU  none on this machine")  # Home's strip says why (NVML's reason); one line here
    lines += peak
    lines.append(_host_line(host))
    return lines + _trainer_line(host, snapshot)


def _host_line(host: HostSample) -> str:
    return f"host CPU {host.cpu_percent:.0f}% RAM {host.ram_used_bytes / GIB:.0f}/{host.ram_total_bytes / GIB:.0f}G"


def _trainer_line(host: HostSample, snapshot: RunSnapshot | None) -> list[str]:
    if host.process_rss_bytes and not (snapshot is not None and snapshot.state == "queued"):  # a queued run's process is its waiter
        return [f"trainer {host.process_rss_bytes / GIB:.1f}G {host.process_cpu_percent or 0:.0f}% CPU"]
    return []


class MonitorScreen(CockpitScreen):
    """Everything about one run, refreshed about once a second."""

    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("s", "cancel", "Cancel"),  # the same key while the run waits in the queue (check_action picks one)
        Binding("r", "resume", "Resume"),
        Binding("c", "next_chart", "Chart"),
        Binding("o", "open_log", "Log"),
        Binding("v", "evaluate", "Eval"),
        Binding("p", "report", "Report"),
        Binding("j", "open_job_log", "Job log", show=False),
        Binding("x", "merge", "Merge"),
        Binding("t", "chat", "Chat"),
        Binding("escape,b", "back", "Back"),
        Binding("m", "smoothing", "Smoothing on/off", show=False),
        Binding("l", "log_scale", "Log scale on/off", show=False),
        Binding("q", "app.quit", "Quit", show=False),
    ]

    snapshot: reactive[RunSnapshot | None] = reactive(None, always_update=True, init=False)  # identity, not deep equality
    chart: reactive[str] = reactive("loss", init=False)

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run
        self.watcher = RunWatcher(run)
        try:
            text = run.read_config_text()  # written once when the run was made
            self.objective, self.loss_label = objective_of(text), loss_label(text)
        except (OSError, UnicodeDecodeError):
            self.objective, self.loss_label = "sft", "loss"  # the rows' own metrics still bring the preference charts
        self._ticks = 0
        self._text_width = SIDE_WIDTH
        self._numbers_rows = 0  # lines in #numbers: the side panel's rows left for the GPU lines follow from it
        self._sample: SystemSampled | None = None
        placement = run.read_placement()  # written once when the run was made: the estimate it was launched with
        self.estimate_gib = placement.estimate_gib if placement is not None and placement.device == "cuda" else None

    def compose(self) -> ComposeResult:
        yield Static(f"{escape(short_name(self.run.id))}", id="run-title")
        yield ProgressBar(total=None, show_eta=False, id="progress")
        with Horizontal(id="body"):
            yield LossChart(id="loss")
            yield SeriesChart(id="series")
            with Vertical(id="side"):
                yield Static("", id="numbers")
                yield Static("GPU  sampling...", id="system")
        yield Static("", id="jobs")
        yield Static("", id="error")
        yield Log(id="log", max_lines=200)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#series").display = False
        self.query_one(LossChart).set_loss_label(self.loss_label)
        self.poll()
        self.set_interval(self.app.poll_s, self.poll)

    def on_resize(self) -> None:
        """Rows run out from the bottom: the log pane shrinks, then goes; the side panel narrows before the chart does."""
        height, width = self.size.height, self.size.width
        log = self.query_one("#log", Log)
        rows = 8 if height >= 34 else 4 if height >= 24 else 2 if height >= 21 else 0
        log.display = rows > 0
        log.styles.height = rows + 1  # + its top border
        side = 32 if width >= 100 else 28 if width >= 72 else 26
        self.query_one("#side").styles.width = side
        if side - 2 != self._text_width:  # numbers lines fit the panel (a preference run's single-spaces when narrow)
            self._text_width = side - 2  # - its padding
            self._draw_numbers()
        self.call_after_refresh(self._draw_system)  # a multi-GPU run's rank lines fit the panel's new height (known after layout)

    @work(thread=True, exclusive=True, exit_on_error=False, name="watching the run")
    def poll(self) -> None:
        """Read what changed (in a thread) and post it."""
        snapshot = self.watcher.poll()
        self.post_message(RunWatched(snapshot))
        self._ticks += 1
        if self._ticks % 2 == 1 and snapshot.state in ACTIVE_STATES:  # NVML calls are the costly part; a finished run shows its record
            pid = snapshot.status.pid if snapshot.status else None
            self.post_message(SystemSampled(self.app.sampler.sample_gpus(), self.app.sampler.sample_host(pid)))

    def on_run_watched(self, message: RunWatched) -> None:
        self.snapshot = message.snapshot

    def watch_snapshot(self, old: RunSnapshot | None, new: RunSnapshot | None) -> None:
        if new is None:
            return
        if old is None or new.train is not old.train or new.evals is not old.evals:
            self.query_one(LossChart).set_rows(new.train, new.evals)
            self._draw_numbers()
        if old is None or new.train is not old.train or new.evals is not old.evals or new.system is not old.system:
            self._draw_chart()
        if old is None or old.state != new.state:
            self.refresh_bindings()  # stop/resume/eval/chat/merge follow the state
            self._draw_system()
        elif new.summary is not old.summary or (new.train is not old.train and measured_peak_lines(new, self.estimate_gib)):
            self._draw_system()  # the measured peak moved (a new row), or the summary's came
        self._draw_status(new)
        self._draw_jobs(old, new)

    def _draw_numbers(self) -> None:
        if self.snapshot is not None:
            lines = numbers_lines(self.snapshot, self.objective, self._text_width, self.loss_label)
            self._set_lines("#numbers", lines)
            if len(lines) != self._numbers_rows:  # the rows left for a multi-GPU run's rank lines changed
                self._numbers_rows = len(lines)
                self._draw_system()

    def watch_chart(self) -> None:
        self.refresh_bindings()  # log scale belongs to the loss chart, smoothing to it and the preference charts
        self.query_one(LossChart).display = self.chart == "loss"
        self.query_one("#series").display = self.chart != "loss"
        self._draw_chart()

    def _draw_chart(self) -> None:
        if self.chart == "loss" or self.snapshot is None:
            return
        views = {view.name: view for view in self._views()}
        view = views.get(self.chart) or views["speed"]
        self.query_one(SeriesChart).show(view)

    def _views(self) -> tuple[ChartView, ...]:
        snapshot = self.snapshot
        smoothed = self.query_one(LossChart).smoothing  # one `m` for the loss and the preference charts
        return preference_views(snapshot, self.objective, smoothed) + chart_views(snapshot) if snapshot else ()

    def _charts(self) -> list[str]:
        names = {view.name for view in self._views()}
        return [name for name in CHARTS if name == "loss" or name in names]

    def action_next_chart(self) -> None:
        """Loss, (a preference run's accuracy or KL, and rewards,) tokens/s, memory, GPU utilisation/temperature/power,
        grad norm, learning rate, then loss again."""
        charts = self._charts()
        self.chart = charts[(charts.index(self.chart) + 1) % len(charts)] if self.chart in charts else "loss"

    def _draw_status(self, snapshot: RunSnapshot) -> None:
        status = snapshot.status
        step, total = (status.step, status.max_steps) if status else (0, 0)
        self.query_one("#run-title", Static).update(title_line(self.run, snapshot))
        if total:
            self.query_one("#progress", ProgressBar).update(total=total, progress=step)
        error = self.query_one("#error", Static)
        if snapshot.waiting:
            error.update(f"[b yellow]waiting in the queue[/]: {escape(snapshot.waiting)}")
        elif status and status.error:
            error.update(f"[b red]{status.error.kind}[/]: {escape(status.error.message)}\n[b]what to do:[/] {escape(status.error.hint)}")
        elif snapshot.reason:
            error.update(f"[b red]unreadable[/]: {escape(snapshot.reason)}")
        else:
            error.update("")
        error.display = bool(status and status.error) or bool(snapshot.reason) or bool(snapshot.waiting)  # no empty row at 80x24
        log = self.query_one("#log", Log)
        if snapshot.log_tail and (not log.lines or log.lines[-1] != snapshot.log_tail[-1]):
            log.clear()
            log.write_lines(snapshot.log_tail)
            # the pane's size is settled only after this refresh: scrolling then shows the newest line, as `tail` does
            # (without it a short pane kept showing lines from the middle of the tail, as a finished demo's did)
            self.call_after_refresh(log.scroll_end, animate=False)

    def _draw_jobs(self, old: RunSnapshot | None, new: RunSnapshot) -> None:
        latest: dict[str, JobOverview] = {}
        for job in new.jobs:  # oldest first: the newest of each kind wins
            latest[job.kind] = job
        jobs = self.query_one("#jobs", Static)
        jobs.update("\n".join(escape(job_line(j)) for j in latest.values()))
        jobs.display = bool(latest)  # no line at all until a job exists: 80x24 has none to spare
        if old is not None and {j.id for j in old.jobs} != {j.id for j in new.jobs}:
            self.refresh_bindings()  # a new eval report may now be there to open

    def on_system_sampled(self, message: SystemSampled) -> None:
        self._sample = message
        self._draw_system()

    def _draw_system(self) -> None:
        snapshot = self.snapshot
        active = snapshot is not None and snapshot.state in ACTIVE_STATES
        pid = snapshot.status.pid if snapshot and snapshot.status else None
        sample = self._sample
        peak = measured_peak_lines(snapshot, self.estimate_gib, self._text_width)
        side = self.query_one("#side").size.height  # 0 before the first layout: no limit yet (on_resize draws again)
        rows = side - self._numbers_rows - 1 if side else None  # - the numbers' bottom margin
        self._set_lines("#system", system_lines(sample.gpu if sample else None, sample.host if sample else None, pid, active, snapshot,
                                                peak, self._text_width, rows))

    def _set_lines(self, selector: str, lines: list[str]) -> None:
        """Show `lines`, one row each, with the height set to their count.

        A height-auto Static updated from a message sometimes kept its old height (one row)
        until something else re-laid the screen out, hiding the GPU lines under the first;
        setting the height lays the panel out again every time.
        """
        widget = self.query_one(selector, Static)
        widget.update("\n".join(escape(line) for line in lines))
        widget.styles.height = len(lines)

    def action_smoothing(self) -> None:
        """Raw loss <-> smoothed (a preference run's accuracy, KL and rewards too)."""
        self.query_one(LossChart).toggle_smoothing()
        self._draw_chart()

    def action_log_scale(self) -> None:
        """Linear <-> log loss axis."""
        self.query_one(LossChart).toggle_log_scale()

    def action_open_log(self) -> None:
        """train.log, followed live: / searches, w wraps, f hides progress bars."""
        from sft_tui.tui.screens.log_viewer import LogViewerScreen

        self.app.push_screen(LogViewerScreen(self.run.log_path, f"train.log of {short_name(self.run.id)}"))

    def action_open_job_log(self) -> None:
        """The newest job's log (eval, merge, chat), followed live."""
        from sft_tui.tui.screens.log_viewer import LogViewerScreen

        jobs = self.snapshot.jobs if self.snapshot else ()
        job = jobs[-1]
        self.app.push_screen(LogViewerScreen(self.run.job(job.id).log_path, f"{job.id} of {short_name(self.run.id)}"))

    def action_stop(self) -> None:
        """Ask the run to stop (it checkpoints first)."""
        self.app.stop(self.run.id)

    def action_cancel(self) -> None:
        """Take the run out of the queue (asks first; it never started)."""
        self.app.stop(self.run.id)

    def action_resume(self) -> None:
        """Resume the run from its last checkpoint."""
        self.app.resume(self.run.id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Only what applies now is offered: stop while active, resume once stopped/failed/crashed, eval/chat/merge
        once the run saved its adapter or model, the report once an eval wrote one."""
        state = self.snapshot.state if self.snapshot else None
        if action in ("stop", "cancel"):
            waiting = bool(self.snapshot and self.snapshot.waiting)
            return state in ACTIVE_STATES and (waiting if action == "cancel" else not waiting)
        if action == "resume":  # a run that never stepped (cancelled in the queue, failed at load) has nothing to resume
            return state in RESUMABLE and bool(self.snapshot and self.snapshot.status and self.snapshot.status.step > 0)
        if action in ("evaluate", "chat", "merge"):
            return state not in ACTIVE_STATES and self.run.trained_output() is not None
        if action == "report":
            return self.run.eval_markdown_path.is_file()
        if action == "open_job_log":
            return bool(self.snapshot and self.snapshot.jobs)
        if action == "smoothing":
            return self.chart in ("loss", *PREFERENCE_CHARTS)
        if action == "log_scale":
            return self.chart == "loss"
        return True

    def action_report(self) -> None:
        """The last eval's report (base against tuned, answers side by side)."""
        from sft_tui.tui.screens.report import EvalReportScreen

        self.app.push_screen(EvalReportScreen(self.run))

    def action_chat(self) -> None:
        """Chat with the tuned model (ctrl+t there switches to the base)."""
        self.app.open_chat(self.run.id)

    def action_evaluate(self) -> None:
        """Start an eval job (base against tuned); its progress and result show above the log."""
        self._start("eval")

    def action_merge(self) -> None:
        """Start a merge job into <run>/merged; it goes on if the terminal closes."""
        self._start("merge", output=str(self.run.merged_dir))

    def _start(self, kind: str, **fields: object) -> None:
        from sft_tui.core.runs.jobs import job_request

        try:
            if kind == "merge":
                from sft_tui.core.evaluate.merge_check import check_merge_request

                check_merge_request(self.run, self.run.merged_dir, "bf16", False)
            job = self.app.start_job(self.run, job_request(kind, **fields))
        except UserError as exc:
            self.notify(exc.line(), severity="warning", timeout=15)
            return
        where = f" into {self.run.merged_dir}" if kind == "merge" else ""
        self.notify(f"started {job.name}{where}: it runs on its own (closing this terminal does not stop it)")
        self.poll()

    def action_back(self) -> None:
        """Back to the runs (the run keeps going)."""
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.switch_screen("home")

