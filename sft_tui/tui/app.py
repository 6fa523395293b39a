"""The Textual app. Data sources are injected: tests pass a store over a temp folder, a fake sampler, fake job starters.

`make_app()` builds the real one for the CLI (and for snapshot tests). The app never
imports torch or transformers, so its first frame is fast; stopping, resuming and
starting eval, merge and chat jobs go through core.runs.jobs, the same code as the CLI.
"""

from __future__ import annotations

from typing import Callable

from textual.app import App

from sft_tui.core.errors import UserError
from sft_tui.core.runs.rundir import JobDir, RunDir
from sft_tui.core.runs.schema import JobRequest
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from sft_tui.tui.screens.home import HomeScreen
from sft_tui.tui.screens.monitor import MonitorScreen


def _stop(run: RunDir) -> str:
    from sft_tui.core.runs.jobs import request_stop

    return request_stop(run).message


def _start_job(run: RunDir, request: JobRequest) -> JobDir:
    from sft_tui.core.runs.jobs import start_job

    return start_job(run, request)


def _resume(run: RunDir) -> str:
    from sft_tui.core.runs.jobs import check_resumable, launch

    checkpoint = check_resumable(run)
    launch(run, resume=True)
    return f"resuming {run.id} from {checkpoint.name}"


class SftApp(App):
    """sft-tui's terminal UI: home (runs, GPUs) and a live monitor per run."""

    CSS_PATH = "app.tcss"
    TITLE = "sft-tui"
    SCREENS = {"home": HomeScreen}

    def __init__(self, store: RunStore, sampler: SystemSampler, stop_run: Callable[[RunDir], str] = _stop,
                 resume_run: Callable[[RunDir], str] = _resume, open_run: str | None = None, poll_s: float = 1.0,
                 launch_fn: Callable[[RunDir], int] | None = None, chat_backend: Callable[[RunDir], object] | None = None,
                 start_job: Callable[[RunDir, JobRequest], JobDir] = _start_job, chat_run: str | None = None):
        super().__init__()
        self.start_job = start_job  # (run, request) -> its job dir: eval, merge and chat jobs (tests pass a fake)
        self.chat_backend = chat_backend or self._job_chat_backend  # run -> a ChatBackend (tests pass a fake)
        self.chat_run = chat_run
        self.launch_fn = launch_fn  # None: core.launcher.launch (tests pass a fake)
        self.store = store
        self.sampler = sampler
        self.stop_run = stop_run
        self.resume_run = resume_run
        self.open_run = open_run
        self.poll_s = poll_s

    def _job_chat_backend(self, run: RunDir):
        from sft_tui.tui.chat_backend import JobChatBackend

        return JobChatBackend(run, self.start_job)

    def on_mount(self) -> None:
        self.push_screen("home")
        if self.open_run:
            self.open_monitor(self.open_run)
        if self.chat_run:
            self.open_chat(self.chat_run)

    def open_chat(self, run_id: str) -> None:
        """Chat with a finished run's model (and its base)."""
        from sft_tui.tui.screens.chat import ChatScreen

        try:
            run = self.store.find_run(run_id)
            run.require_trained_output()
        except UserError as exc:
            self.notify(exc.line(), severity="error")
            return
        self.push_screen(ChatScreen(run, self.chat_backend(run)))

    def open_monitor(self, run_id: str) -> None:
        """Show the live monitor of a run."""
        try:
            run = self.store.find_run(run_id)
        except UserError as exc:
            self.notify(exc.line(), severity="error")
            return
        self.push_screen(MonitorScreen(run))

    def _act(self, run_id: str, action: Callable[[RunDir], str]) -> None:
        try:
            self.notify(action(self.store.find_run(run_id)))
        except UserError as exc:
            self.notify(exc.line(), severity="warning")

    def stop(self, run_id: str) -> None:
        """Ask a run to stop; a second request kills it (and says so)."""
        self._act(run_id, self.stop_run)

    def resume(self, run_id: str) -> None:
        """Resume a stopped, failed or crashed run."""
        self._act(run_id, self.resume_run)

    def on_unmount(self) -> None:
        self.sampler.close()


def make_app(open_run: str | None = None, store: RunStore | None = None, sampler: SystemSampler | None = None,
             chat_run: str | None = None) -> SftApp:
    """The app as the CLI runs it: runs under $SFT_TUI_HOME, the real GPU sampler."""
    return SftApp(store or RunStore(), sampler or SystemSampler(), open_run=open_run, chat_run=chat_run)
