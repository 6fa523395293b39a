"""Past-tense messages that workers post to the screens, each carrying typed, frozen data. Floods of one kind coalesce."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from sft_tui.core.runs.compare import Comparison
from sft_tui.core.runs.schema import RunOverview
from sft_tui.core.runs.sysmon import GpuSnapshot, HostSample
from sft_tui.core.runs.watch import RunSnapshot


@dataclass
class RunWatched(Message):
    """A new snapshot of the watched run (status, rows, jobs, log tail)."""

    snapshot: RunSnapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunWatched)  # the newest snapshot holds every row the older one had


@dataclass
class RunsListed(Message):
    """A fresh list of every run for the home screen."""

    runs: tuple[RunOverview, ...]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)


@dataclass
class RunsCompared(Message):
    """The runs marked for Compare have been read."""

    comparison: Comparison


@dataclass
class SystemSampled(Message):
    """A GPU and host sample."""

    gpu: GpuSnapshot
    host: HostSample

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SystemSampled)


@dataclass
class DataInspected(Message):
    """An inspection finished."""

    report: object


@dataclass
class DataInspectFailed(Message):
    """An inspection could not run: the one-line reason."""

    line: str


@dataclass
class ChatReady(Message):
    """The chat job has loaded the models."""

    note: str


@dataclass
class ChatTokensArrived(Message):
    """More of the answer being generated."""

    text: str


@dataclass
class ChatAnswered(Message):
    """An answer is complete (error: one line when it failed)."""

    which: str
    text: str
    error: str = ""
