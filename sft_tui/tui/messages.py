"""Past-tense messages that pollers and workers post to the screens. Floods of the same kind coalesce."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from sft_tui.core.runs import RunStatus, RunSummary
from sft_tui.core.sysmon import GpuSnapshot, HostSample


class MetricsAppended(Message):
    """New metrics rows of the watched run (all rows since the previous message)."""

    def __init__(self, rows: tuple[dict[str, Any], ...], restarted: bool = False) -> None:
        super().__init__()
        self.rows = rows
        self.restarted = restarted


class RunStateChanged(Message):
    """The watched run's status, its effective state and the last lines of its log."""

    def __init__(self, status: RunStatus | None, state: str, log_tail: tuple[str, ...]) -> None:
        super().__init__()
        self.status = status
        self.state = state
        self.log_tail = log_tail

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunStateChanged)  # only the newest status matters


class RunsListed(Message):
    """A fresh list of every run for the home screen."""

    def __init__(self, runs: tuple[RunSummary, ...]) -> None:
        super().__init__()
        self.runs = runs

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)


class SystemSampled(Message):
    """A GPU and host sample."""

    def __init__(self, gpu: GpuSnapshot, host: HostSample) -> None:
        super().__init__()
        self.gpu = gpu
        self.host = host

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SystemSampled)


class DataInspected(Message):
    """An inspection finished."""

    def __init__(self, report) -> None:
        super().__init__()
        self.report = report


class DataInspectFailed(Message):
    """An inspection could not run: the one-line reason."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class ChatReady(Message):
    """The model process has loaded the models."""

    def __init__(self, note: str) -> None:
        super().__init__()
        self.note = note


class ChatTokensArrived(Message):
    """More of the answer being generated."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ChatAnswered(Message):
    """An answer is complete (error: one line when it failed)."""

    def __init__(self, which: str, text: str, error: str = "") -> None:
        super().__init__()
        self.which = which
        self.text = text
        self.error = error
