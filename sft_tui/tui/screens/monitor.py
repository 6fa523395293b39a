"""Monitor: one run live. Loss chart, progress and ETA, GPU/host memory, throughput, jobs, log tail, errors.

A thread worker polls the run's one watcher (core.runs.watch) and posts the typed snapshot;
the screen keeps it in a reactive and redraws from it. Leaving the screen or the app never
touches the run or its jobs: they run in their own sessions.
"""

from __future__ import annotations

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Footer, Log, ProgressBar, Sparkline, Static

from sft_tui.core.errors import UserError
from sft_tui.core.runs.rundir import RunDir, tail_lines
from sft_tui.core.runs.schema import ACTIVE_STATES, JobOverview
from sft_tui.core.runs.watch import RunSnapshot, RunWatcher
from sft_tui.core.units import GIB, format_eta
from sft_tui.tui.messages import RunWatched, SystemSampled
from sft_tui.tui.screens.base import CockpitScreen
from sft_tui.tui.widgets.loss_chart import LossChart

HISTORY = 120  # memory samples kept for the sparkline


def job_line(job: JobOverview) -> str:
    """One job as the monitor shows it: what it is doing, or how it ended."""
    if job.state in ACTIVE_STATES:
        progress = f" {job.step}/{job.max_steps}" if job.max_steps else ""
        return f"{job.id} {job.state}: {job.phase or 'starting'}{progress}"
    if job.error is not None:
        return f"{job.id} {job.state} ({job.error.kind}): {job.error.message}"
    return f"{job.id} {job.state}: {job.result}" if job.result else f"{job.id} {job.state}"


class MonitorScreen(CockpitScreen):
    """Everything about one run, refreshed about once a second."""

    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("m", "smoothing", "Smoothing"),
        Binding("l", "log_scale", "Log scale"),
        Binding("o", "open_log", "Open log"),
        Binding("v", "evaluate", "Eval"),
        Binding("t", "chat", "Chat"),
        Binding("x", "merge", "Merge"),
        Binding("escape,b", "back", "Back"),
        Binding("q", "app.quit", "Quit"),
    ]

    snapshot: reactive[RunSnapshot | None] = reactive(None, always_update=True, init=False)  # identity, not deep equality

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run
        self.watcher = RunWatcher(run)
        self.memory_history: list[float] = []
        self._ticks = 0

    def compose(self) -> ComposeResult:
        yield Static(f"run {self.run.id}", id="run-title")
        yield ProgressBar(total=None, show_eta=False, id="progress")
        with Horizontal(id="body"):
            yield LossChart(id="loss")
            with Vertical(id="side"):
                yield Static("", id="numbers")
                yield Static("learning rate", id="lr-label")
                yield Sparkline([], id="lr")
                yield Static("memory", id="memory-label")
                yield Sparkline([], id="memory")
                yield Static("", id="system")
        yield Static("", id="jobs")
        yield Static("", id="error")
        yield Log(id="log", max_lines=200)
        yield Footer()

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(self.app.poll_s, self.poll)

    @work(thread=True, exclusive=True, exit_on_error=False, name="watching the run")
    def poll(self) -> None:
        """Read what changed (in a thread) and post it."""
        snapshot = self.watcher.poll()
        self.post_message(RunWatched(snapshot))
        self._ticks += 1
        if self._ticks % 2 == 1:  # GPU/host every other tick: NVML calls are the costly part
            pid = snapshot.status.pid if snapshot.status else None
            self.post_message(SystemSampled(self.app.sampler.sample_gpus(), self.app.sampler.sample_host(pid)))

    def on_run_watched(self, message: RunWatched) -> None:
        self.snapshot = message.snapshot

    def watch_snapshot(self, old: RunSnapshot | None, new: RunSnapshot | None) -> None:
        if new is None:
            return
        if old is None or new.train is not old.train or new.evals is not old.evals:
            self._draw_rows(new)
        if old is None or old.state != new.state:
            self.refresh_bindings()  # eval/chat/merge appear when the run completes
        self._draw_status(new)
        self._draw_jobs(old, new)

    def _draw_rows(self, snapshot: RunSnapshot) -> None:
        self.query_one(LossChart).set_rows(snapshot.train, snapshot.evals)
        rates = [r.learning_rate for r in snapshot.train if r.learning_rate is not None]
        step = max(1, len(rates) // 36)  # the sparkline is ~36 cells wide: one value per cell
        self.query_one("#lr", Sparkline).data = rates[::step]
        last = snapshot.train[-1] if snapshot.train else None
        evals = [r.eval_loss for r in snapshot.evals if r.eval_loss is not None]
        lines = [
            f"loss      {last.loss:.4f}" if last and last.loss is not None else "loss      -",
            f"eval      {evals[-1]:.4f} (best {min(evals):.4f})" if evals else "eval      -",
            f"lr        {(last.learning_rate or 0) if last else 0:.2e}",
            f"grad norm {last.grad_norm:.3f}" if last and last.grad_norm is not None else "grad norm -",
            f"tokens/s  {last.tokens_per_s:,.0f}" if last and last.tokens_per_s else "tokens/s  -",
            f"GPU mem   {last.gpu_reserved_gib:.1f} GiB reserved" if last and last.gpu_reserved_gib is not None else "GPU mem   - (cpu run)",
        ]
        # before the first row there is nothing to say: the lines would only push the GPU readings off an 80x24 screen
        self.query_one("#numbers", Static).update("\n".join(lines) if snapshot.train or snapshot.evals else "")

    def _draw_status(self, snapshot: RunSnapshot) -> None:
        status = snapshot.status
        step, total = (status.step, status.max_steps) if status else (0, 0)
        eta = status.eta_s if status and snapshot.state == "running" else None
        self.query_one("#run-title", Static).update(
            f"run {escape(self.run.id)} · [b]{snapshot.state}[/b] · step {step}/{total or '?'} · ETA {format_eta(eta)}")
        if total:
            self.query_one("#progress", ProgressBar).update(total=total, progress=step)
        error = self.query_one("#error", Static)
        if status and status.error:
            error.update(f"[b red]{status.error.kind}[/]: {escape(status.error.message)}\n[b]what to do:[/] {escape(status.error.hint)}")
        elif snapshot.reason:
            error.update(f"[b red]unreadable[/]: {escape(snapshot.reason)}")
        else:
            error.update("")
        error.display = bool(status and status.error) or bool(snapshot.reason)  # no empty row at 80x24
        log = self.query_one("#log", Log)
        if snapshot.log_tail and (not log.lines or log.lines[-1] != snapshot.log_tail[-1]):
            log.clear()
            log.write_lines(snapshot.log_tail)

    def _draw_jobs(self, old: RunSnapshot | None, new: RunSnapshot) -> None:
        latest: dict[str, JobOverview] = {}
        for job in new.jobs:  # oldest first: the newest of each kind wins
            latest[job.kind] = job
        jobs = self.query_one("#jobs", Static)
        jobs.update("\n".join(escape(job_line(j)) for j in latest.values()))
        jobs.display = bool(latest)  # no line at all until a job exists: 80x24 has none to spare
        if old is None:
            return
        before = {j.id: j.state for j in old.jobs}
        for job in new.jobs:
            if before.get(job.id) in ACTIVE_STATES and job.state not in ACTIVE_STATES:
                self.notify(job_line(job), severity="information" if job.state == "completed" else "error", timeout=30)

    def on_system_sampled(self, message: SystemSampled) -> None:
        host, gpu = message.host, message.gpu
        lines = [f"host CPU {host.cpu_percent:.0f}%  RAM {host.ram_used_bytes / GIB:.1f}/{host.ram_total_bytes / GIB:.1f} GiB"]
        if host.process_rss_bytes:
            lines.append(f"trainer RSS {host.process_rss_bytes / GIB:.2f} GiB, CPU {host.process_cpu_percent or 0:.0f}%")
        pid = self.snapshot.status.pid if self.snapshot and self.snapshot.status else None
        if gpu.available:
            for g in gpu.gpus:
                lines.append(f"GPU{g.index} {g.memory_used_bytes / GIB:.1f}/{g.memory_total_bytes / GIB:.1f} GiB"
                             f" util {g.utilization_pct or 0:.0f}% {g.temperature_c or 0:.0f}C {g.power_w or 0:.0f} W")
                mine = [p.used_bytes for p in g.processes if p.pid == pid and p.used_bytes is not None]
                if mine:
                    lines.append(f"  this run: {sum(mine) / GIB:.1f} GiB on GPU{g.index}")
            used = gpu.gpus[0].memory_used_bytes / GIB
        else:
            lines.append(gpu.reason)
            used = (host.process_rss_bytes or 0) / GIB  # on a CPU run, the trainer's memory is what matters
        self.memory_history = (self.memory_history + [used])[-HISTORY:]
        self.query_one("#memory", Sparkline).data = self.memory_history
        self.query_one("#memory-label", Static).update("GPU memory (GiB)" if gpu.available else "trainer RAM (GiB)")
        self.query_one("#system", Static).update("\n".join(lines))

    def action_smoothing(self) -> None:
        """Raw loss <-> smoothed."""
        self.query_one(LossChart).toggle_smoothing()

    def action_log_scale(self) -> None:
        """Linear <-> log loss axis."""
        self.query_one(LossChart).toggle_log_scale()

    def action_open_log(self) -> None:
        """The last 2,000 lines of train.log, scrollable."""
        self.app.push_screen(LogScreen(self.run))

    def action_stop(self) -> None:
        """Ask the run to stop (it checkpoints first)."""
        self.app.stop(self.run.id)

    def action_resume(self) -> None:
        """Resume the run from its last checkpoint."""
        self.app.resume(self.run.id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Eval, chat and merge are offered once the run has saved its adapter or model."""
        if action in ("evaluate", "chat", "merge"):
            return self.run.trained_output() is not None
        return True

    def action_chat(self) -> None:
        """Chat with the tuned model (ctrl+b there switches to the base)."""
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


class LogScreen(CockpitScreen):
    """train.log of one run (its end), to scroll through; esc goes back to the monitor."""

    BINDINGS = [Binding("escape,b", "app.pop_screen", "Back")]

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run

    def compose(self) -> ComposeResult:
        yield Static(f"{self.run.log_path.name} of {self.run.id}  ({self.run.log_path})", id="title")
        yield Log(id="full-log", max_lines=2000)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#full-log", Log).write_lines(tail_lines(self.run.log_path, 2000))
