"""Monitor: one run live. Loss chart, progress and ETA, GPU/host memory, throughput, log tail, errors.

Leaving the screen or the app never touches the run: the trainer runs in its own session.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Log, ProgressBar, Sparkline, Static

from sft_tui.core.runs import RunDir, format_eta
from sft_tui.tui.messages import MetricsAppended, RunStateChanged, SystemSampled
from sft_tui.tui.poller import RunWatch
from sft_tui.tui.widgets.loss_chart import LossChart

HISTORY = 120  # memory samples kept for the sparkline


class MonitorScreen(Screen):
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

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run
        self.watch_state = RunWatch(run)
        self.train: list[dict] = []
        self.evals: list[dict] = []
        self.memory_history: list[float] = []
        self._ticks = 0
        self._pid: int | None = None
        self._last_state: str | None = None  # eval/chat/merge keys are re-checked when it changes

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
        yield Static("", id="error")
        yield Log(id="log", max_lines=200)
        yield Footer()

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(self.app.poll_s, self.poll)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def poll(self) -> None:
        chunk = self.watch_state.poll_metrics()
        if chunk.rows or chunk.restarted:
            self.post_message(MetricsAppended(chunk.rows, chunk.restarted))
        status, state, tail = self.watch_state.poll_status()
        self.post_message(RunStateChanged(status, state, tail))
        self._ticks += 1
        if self._ticks % 2 == 1:  # GPU/host every other tick: NVML calls are the costly part
            pid = status.pid if status else None
            self.post_message(SystemSampled(self.app.sampler.sample_gpus(), self.app.sampler.sample_host(pid)))

    def on_metrics_appended(self, message: MetricsAppended) -> None:
        if message.restarted:
            self.train.clear()
            self.evals.clear()
        for row in message.rows:
            (self.evals if "eval_loss" in row else self.train).append(row)
        self.query_one(LossChart).set_rows(self.train, self.evals)
        rates = [float(r["learning_rate"]) for r in self.train if isinstance(r.get("learning_rate"), (int, float))]
        step = max(1, len(rates) // 36)  # the sparkline is ~36 cells wide: one value per cell
        self.query_one("#lr", Sparkline).data = rates[::step]
        self._update_numbers()

    def _update_numbers(self) -> None:
        last = self.train[-1] if self.train else {}
        best_eval = min((r["eval_loss"] for r in self.evals), default=None)
        lines = [
            f"loss      {last['loss']:.4f}" if last.get("loss") is not None else "loss      -",
            f"eval      {self.evals[-1]['eval_loss']:.4f} (best {best_eval:.4f})" if self.evals else "eval      -",
            f"lr        {last.get('learning_rate') or 0:.2e}",
            f"grad norm {last['grad_norm']:.3f}" if last.get("grad_norm") is not None else "grad norm -",
            f"tokens/s  {last['tokens_per_s']:,.0f}" if last.get("tokens_per_s") else "tokens/s  -",
            f"GPU mem   {last['gpu_reserved_gib']:.1f} GiB reserved" if last.get("gpu_reserved_gib") is not None else "GPU mem   - (cpu run)",
        ]
        self.query_one("#numbers", Static).update("\n".join(lines))

    def on_run_state_changed(self, message: RunStateChanged) -> None:
        if message.state != self._last_state:
            self._last_state = message.state
            self.refresh_bindings()  # eval/chat/merge appear when the run completes
        status = message.status
        self._pid = status.pid if status else None
        step, total = (status.step, status.max_steps) if status else (0, 0)
        eta = status.eta_s if status and message.state == "running" else None
        self.query_one("#run-title", Static).update(f"run {self.run.id} · [b]{message.state}[/b] · step {step}/{total or '?'} · ETA {format_eta(eta)}")
        bar = self.query_one("#progress", ProgressBar)
        if total:
            bar.update(total=total, progress=step)
        error = self.query_one("#error", Static)
        if status and status.error:
            error.update(f"[b red]{status.error.kind}[/]: {status.error.message}\n[b]what to do:[/] {status.error.hint}")
        else:
            error.update("")
        log = self.query_one("#log", Log)
        if message.log_tail and (not log.lines or log.lines[-1] != message.log_tail[-1]):
            log.clear()
            log.write_lines(message.log_tail)

    def on_system_sampled(self, message: SystemSampled) -> None:
        host, gpu = message.host, message.gpu
        lines = [f"host CPU {host.cpu_percent:.0f}%  RAM {host.ram_used_bytes / 2**30:.1f}/{host.ram_total_bytes / 2**30:.1f} GiB"]
        if host.process_rss_bytes:
            lines.append(f"trainer RSS {host.process_rss_bytes / 2**30:.2f} GiB, CPU {host.process_cpu_percent or 0:.0f}%")
        if gpu.available:
            pid = self._pid
            for g in gpu.gpus:
                lines.append(f"GPU{g.index} {g.memory_used_bytes / 2**30:.1f}/{g.memory_total_bytes / 2**30:.1f} GiB"
                             f" util {g.utilization_pct or 0:.0f}% {g.temperature_c or 0:.0f}C {g.power_w or 0:.0f} W")
                mine = [p.used_bytes for p in g.processes if p.pid == pid and p.used_bytes is not None]
                if mine:
                    lines.append(f"  this run: {sum(mine) / 2**30:.1f} GiB on GPU{g.index}")
            used = gpu.gpus[0].memory_used_bytes / 2**30
        else:
            lines.append(gpu.reason)
            used = (host.process_rss_bytes or 0) / 2**30  # on a CPU run, the trainer's memory is what matters
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
        """Run `sft-tui eval` on this run in a child process; say the headline when it ends."""
        self.notify(f"evaluating {self.run.id} against its base model (eval.log in the run dir) ...")
        self._after(["eval", self.run.id])

    def action_merge(self) -> None:
        """Merge the adapter into its base, into <run>/merged."""
        target = self.run.path / "merged"
        self.notify(f"merging into {target} ...")
        self._after(["merge", self.run.id, "-o", str(target)])

    @work(thread=True, exit_on_error=False, group="after")
    def _after(self, command: list[str]) -> None:
        code, line = self.app.after_fn(self.run, command)
        if code == 0 and command[0] == "eval":
            report = self.run.read_eval_report() or {}
            base, tuned = report.get("base", {}), report.get("tuned", {})
            line = f"eval done: response loss {base.get('response_loss')} -> {tuned.get('response_loss')} (base -> tuned); eval/report.md"
        self.app.call_from_thread(self.notify, line if code == 0 else f"{command[0]} failed: {line}", severity="information" if code == 0 else "error")

    def action_back(self) -> None:
        """Back to the runs (the run keeps going)."""
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.switch_screen("home")


class LogScreen(Screen):
    """train.log of one run (its end), to scroll through; esc goes back to the monitor."""

    BINDINGS = [Binding("escape,b", "app.pop_screen", "Back")]

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run

    def compose(self) -> ComposeResult:
        yield Static(f"train.log of {self.run.id}  ({self.run.log_path})", id="title")
        yield Log(id="full-log", max_lines=2000)
        yield Footer()

    def on_mount(self) -> None:
        from sft_tui.tui.poller import tail_lines

        self.query_one("#full-log", Log).write_lines(tail_lines(self.run.log_path, 2000))
