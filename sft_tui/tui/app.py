"""The Textual app. Data sources are injected: tests pass a store over a temp folder, a fake sampler, fake job starters.

`make_app()` builds the real one for the CLI (and for snapshot tests). The app never
imports torch or transformers, so its first frame is fast; stopping, resuming and
starting eval, merge and chat jobs go through core.runs.jobs, the same code as the CLI.
While it is open it also keeps the shared queue moving (core/runs/queue.py): every few
listings it starts the queued runs that fit now, as `sft-tui queue` does.
"""

from __future__ import annotations

import os
import time
from functools import partial
from typing import Callable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive

from sft_tui.core.errors import UserError
from sft_tui.core.runs import liveness
from sft_tui.core.runs.notices import RunNotice, run_notices
from sft_tui.core.runs.rundir import JobDir, RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, JobRequest, RunOverview
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from sft_tui.tui.desktop_notify import DESKTOP_NOTIFY_ENV, desktop_notify_mode, desktop_sequence
from sft_tui.tui.messages import RunsListed
from sft_tui.tui.screens.base import ShowsWorkerFailures
from sft_tui.tui.screens.home import HomeScreen
from sft_tui.tui.screens.monitor import MonitorScreen

KEPT_NOTICES = 50  # the events Home can show; older ones are in each run's metrics as event rows
ADMIT_EVERY = 5  # listings between two admissions: each takes the queue lock and samples NVML; waiters poll every 2 s anyway


def _stop(run: RunDir) -> str:
    from sft_tui.core.runs.jobs import request_stop

    return request_stop(run).message


def _start_job(run: RunDir, request: JobRequest) -> JobDir:
    from sft_tui.core.runs.jobs import start_job

    return start_job(run, request)


def _resume(run: RunDir) -> str:
    from sft_tui.core.runs.queue_edits import resume
    from sft_tui.core.runs.store import RunStore

    return resume(RunStore(run.path.parent.parent), run)[0]  # as `sft-tui resume`: owner checked, GPU with most room


class SftApp(ShowsWorkerFailures, App):
    """sft-tui's terminal UI: home (runs, GPUs) and a live monitor per run.

    The app lists the runs every other poll whatever screen is shown, so a run or job that
    ends is announced (toast, bell, Home's events line, optionally a desktop notification)
    even while the person is in the wizard or another run's monitor.
    """

    CSS_PATH = "app.tcss"
    TITLE = "sft-tui"
    SCREENS = {"home": HomeScreen}
    BINDINGS = [Binding("question_mark,f1", "show_keys", "Keys", key_display="?")]

    runs: reactive[tuple[RunOverview, ...] | None] = reactive(None, always_update=True, init=False)  # None until first listed
    notices: reactive[tuple[RunNotice, ...]] = reactive((), init=False)  # newest last

    def __init__(self, store: RunStore, sampler: SystemSampler, stop_run: Callable[[RunDir], str] = _stop,
                 resume_run: Callable[[RunDir], str] = _resume, open_run: str | None = None, poll_s: float = 1.0,
                 launch_fn: Callable[[RunDir], int] | None = None, chat_backend: Callable[[RunDir], object] | None = None,
                 start_job: Callable[[RunDir, JobRequest], JobDir] = _start_job, chat_run: str | None = None,
                 desktop_notify: str = "off", clock: Callable[[], float] = time.time,
                 current_owner: Callable[[], tuple[str, str]] = liveness.current_owner):
        super().__init__()
        self.start_job = start_job  # (run, request) -> its job dir: eval, merge and chat jobs (tests pass a fake)
        self.chat_backend = chat_backend or self._job_chat_backend  # run -> a ChatBackend (tests pass a fake)
        self.chat_run = chat_run
        self.launch_fn = launch_fn  # None: core.runs.jobs.launch, also for queued runs the app admits (tests pass a fake)
        self.current_owner = current_owner  # (user, host) at the keyboard: Home's mine-only filter, asking before stopping others' runs
        self._listings = 0
        self._queue_warned = False  # a failing admission is shown once, not every few seconds
        self.store = store
        self.sampler = sampler
        self.stop_run = stop_run
        self.resume_run = resume_run
        self.open_run = open_run
        self.poll_s = poll_s
        self.desktop_notify = desktop_notify  # off, osc9 or osc777 (desktop_notify.py)
        self.clock = clock

    def _job_chat_backend(self, run: RunDir):
        from sft_tui.tui.chat_backend import JobChatBackend

        return JobChatBackend(run, self.start_job)

    def on_mount(self) -> None:
        self.push_screen("home")
        self.poll_runs()
        self.set_interval(self.poll_s * 2, self.poll_runs)
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

    @work(thread=True, exclusive=True, exit_on_error=False, name="listing the runs")
    def poll_runs(self) -> None:
        """List every run (in a thread) and post the listing; every ADMIT_EVERY listings, start queued runs that fit first."""
        if self._listings % ADMIT_EVERY == 0:
            self.keep_queue_moving()
        self._listings += 1
        self.post_message(RunsListed(tuple(self.store.list_runs())))

    def keep_queue_moving(self) -> None:
        """Start the queued runs that fit now (in the listing thread); a failure is shown once as a warning, never raised."""
        from sft_tui.core.runs.queue import admit_with_sampler

        try:
            admit_with_sampler(self.store, self.sampler, spawn=self.launch_fn)
        except Exception as exc:  # housekeeping: the listing goes on whatever the queue's trouble is (shown once)
            if not self._queue_warned:
                self._queue_warned = True
                line = exc.line() if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                self.call_from_thread(self.notify, f"could not start queued runs: {line}", title="queue", severity="warning",
                                      timeout=20)
        else:
            self._queue_warned = False

    def on_runs_listed(self, message: RunsListed) -> None:
        """Announce what ended since the previous listing, then hand the listing to whoever watches `runs`."""
        for notice in run_notices(self.runs, message.runs, self.clock()):
            self.announce(notice)
        self.runs = message.runs

    def announce(self, notice: RunNotice) -> None:
        """Toast, bell, the events line on Home, and the terminal's desktop notification when turned on."""
        self.notices = (*self.notices, notice)[-KEPT_NOTICES:]
        title = "job ended" if notice.job else "run started" if notice.state in ACTIVE_STATES else "run ended"
        self.notify(notice.line, title=title, severity=notice.severity, timeout=20)
        self.bell()
        sequence = desktop_sequence(self.desktop_notify, "sft-tui", notice.line, inside_tmux=bool(os.environ.get("TMUX")))
        if sequence and not self.is_headless and self._driver is not None:
            self._driver.write(sequence)

    def action_show_keys(self) -> None:
        """Every key of the screen in front, with what it does."""
        from sft_tui.tui.screens.keys import KeysScreen

        if isinstance(self.screen, KeysScreen):
            self.pop_screen()
            return
        self.push_screen(KeysScreen(self.screen))

    def _act(self, run_id: str, action: Callable[[RunDir], str]) -> None:
        try:
            self.notify(action(self.store.find_run(run_id)))
        except UserError as exc:
            self.notify(exc.line(), severity="warning")
        self.poll_runs()

    def stop(self, run_id: str) -> None:
        """Ask before stopping a run: `y` asks it to checkpoint and stop; asked again, `y` kills it (SIGKILL) and says so.

        A run still waiting in the queue is cancelled instead (it never started). Someone else's
        run is named as theirs in the question, and stopping it anyway is recorded in its events.
        """
        from sft_tui.core.runs.queue import is_waiting
        from sft_tui.tui.screens.confirm import ConfirmScreen

        try:
            run = self.store.find_run(run_id)
        except UserError as exc:
            self.notify(exc.line(), severity="warning")
            return
        status, _ = run.status_or_reason()
        if status is None or status.state not in ACTIVE_STATES:
            self.notify(f"run {run.id} is not running: nothing to stop", severity="warning")
            return
        theirs = bool(status.owner) and status.owner != self.current_owner()[0]
        whose = f"{status.owner}@{status.host}" if status.host else status.owner
        action: Callable[[RunDir], str]
        if is_waiting(status, run.read_placement()):
            question = f"Cancel queued run {run.id}? It has not started: it leaves the queue and is marked stopped."
            yes, verb = "y  cancel it", "cancels"
            action = partial(self._cancel, force=theirs)
        elif run.stop_request_path.exists():
            question = (f"Kill run {run.id} now?\n\nA stop was already asked for. Killing (SIGKILL) loses the steps since the last "
                        f"checkpoint; `r` resumes from that checkpoint.")
            yes, verb = "y  kill now", "kills"
            action = self._stop_theirs if theirs else self.stop_run
        else:
            question = (f"Stop run {run.id}?\n\nIt finishes its step, saves a checkpoint and stops; `r` resumes it later.")
            yes, verb = "y  stop", "stops"
            action = self._stop_theirs if theirs else self.stop_run
        if theirs:
            question += f"\n\nIt belongs to {whose}; y {verb} it anyway, recorded in its events."
        self.push_screen(ConfirmScreen(question, yes), lambda confirmed: self._act(run_id, action) if confirmed else None)

    def _stop_theirs(self, run: RunDir) -> str:
        """Stop someone else's run, the attempt recorded in its events first (as `sft-tui stop --force` does)."""
        from sft_tui.core.runs.queue_edits import check_owner

        check_owner(run, "stop", force=True)
        return self.stop_run(run)

    def _cancel(self, run: RunDir, force: bool) -> str:
        from sft_tui.core.runs.queue_edits import cancel

        return cancel(self.store, run, force=force)

    def resume(self, run_id: str) -> None:
        """Resume a stopped, failed or crashed run."""
        self._act(run_id, self.resume_run)

    def on_unmount(self) -> None:
        self.sampler.close()


def make_app(open_run: str | None = None, store: RunStore | None = None, sampler: SystemSampler | None = None,
             chat_run: str | None = None) -> SftApp:
    """The app as the CLI runs it: runs under $SFT_TUI_HOME, the real GPU sampler, desktop notifications as set in the environment."""
    mode = desktop_notify_mode(os.environ.get(DESKTOP_NOTIFY_ENV, ""))
    return SftApp(store or RunStore(), sampler or SystemSampler(), open_run=open_run, chat_run=chat_run, desktop_notify=mode)
