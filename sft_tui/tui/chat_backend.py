"""The chat screen's model: a chat job (sft_tui.trainer.chat_server), reached over its Unix socket.

The TUI never imports torch: `JobChatBackend` starts a chat job like any other job
(detached, supervised, with a status and log under jobs/chat-N/), waits for its status to
say ready with an endpoint, connects, and speaks JSON lines. Closing the connection ends
the job. Tests pass any object with the same three methods (start, reply, close).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from sft_tui.core.runs.liveness import effective_state
from sft_tui.core.runs.rundir import JobDir, RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, JobRequest

READY_TIMEOUT_S = 900.0  # loading two models on a busy CPU box can take minutes


class ChatError(Exception):
    """The model could not start or answer: a one-line reason."""


class ChatBackend(Protocol):
    """What the chat screen needs from a model."""

    def start(self) -> str:
        """Load the models (blocking); return a note on how they were loaded."""

    def reply(self, messages: list[dict], which: str) -> Iterator[str]:
        """Stream the answer of 'tuned' or 'base' to the conversation, piece by piece."""

    def close(self) -> None:
        """End the model job."""


class JobChatBackend:
    """Starts a chat job for a run and talks to it over its socket."""

    def __init__(self, run: RunDir, start_job: Callable[[RunDir, JobRequest], JobDir], max_new_tokens: int = 256):
        self.run = run
        self.start_job = start_job
        self.max_new_tokens = max_new_tokens
        self.job: JobDir | None = None
        self.stream = None
        self.connection: socket.socket | None = None
        self.stopped: bool | None = None  # whether the last answer ended at an end token

    def start(self) -> str:
        """Start the job, wait until its models are loaded, connect."""
        from sft_tui.core.runs.jobs import job_request

        self.job = self.start_job(self.run, job_request("chat"))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            status, reason = self.job.status_or_reason()
            if status is not None and status.endpoint:
                break
            if status is not None and effective_state(status) not in ACTIVE_STATES:
                why = f"{status.error.kind}: {status.error.message}" if status.error else status.state
                raise ChatError(f"the chat job ended before it was ready ({why}); see {self.job.log_path}")
            time.sleep(0.2)
        else:
            raise ChatError(f"the chat job was not ready after {READY_TIMEOUT_S:.0f} s; see {self.job.log_path}")
        self.connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.connection.connect(status.endpoint)
        except OSError as exc:
            raise ChatError(f"could not reach the chat job at {status.endpoint}: {exc.strerror or exc}") from None
        self.stream = self.connection.makefile("rw", encoding="utf-8")
        message = self._read()
        if "error" in message:
            raise ChatError(message["error"])
        return message.get("note", "")

    def _read(self) -> dict:
        line = self.stream.readline() if self.stream else ""
        if not line:
            raise ChatError(f"the chat job ended; see {self.job.log_path if self.job else 'its log'}")
        return json.loads(line)

    def reply(self, messages: list[dict], which: str) -> Iterator[str]:
        """Send one request and yield its tokens until the server says done."""
        if self.stream is None:
            raise ChatError("the chat job is not connected")
        try:
            self.stream.write(json.dumps({"messages": messages, "model": which, "max_new_tokens": self.max_new_tokens}) + "\n")
            self.stream.flush()
        except OSError as exc:
            raise ChatError(f"the chat job is gone ({exc.strerror or exc}); leave and open the chat again") from None
        while True:
            message = self._read()
            if "token" in message:
                yield message["token"]
            elif message.get("done"):
                self.stopped = bool(message.get("stopped"))
                return
            elif "error" in message:
                raise ChatError(message["error"])

    def close(self) -> None:
        """Disconnect: the job sees the end of its input and finishes."""
        for closable in (self.stream, self.connection):
            try:
                if closable is not None:
                    closable.close()
            except OSError:
                pass
        self.stream = self.connection = None
