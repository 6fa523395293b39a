"""Past-tense messages the pollers post to the screens. Floods of the same kind coalesce."""

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
