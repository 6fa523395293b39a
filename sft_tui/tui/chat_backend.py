"""The chat screen's model, in a child process (sft_tui.trainer.chat_server): the TUI never imports torch.

`ProcessChatBackend` speaks the server's JSON lines. Tests pass any object with the same
three methods (start, reply, close) to the app instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class ChatError(Exception):
    """The model process could not start or answer: a one-line reason."""


class ChatBackend(Protocol):
    """What the chat screen needs from a model."""

    def start(self) -> str:
        """Load the models (blocking); return a note on how they were loaded."""

    def reply(self, messages: list[dict], which: str) -> Iterator[str]:
        """Stream the answer of 'tuned' or 'base' to the conversation, piece by piece."""

    def close(self) -> None:
        """Stop the model process."""


class ProcessChatBackend:
    """Runs `python -m sft_tui.trainer.chat_server RUN_DIR` and talks to it over pipes."""

    def __init__(self, run_dir: Path, max_new_tokens: int = 256):
        self.run_dir = run_dir
        self.max_new_tokens = max_new_tokens
        self.process: subprocess.Popen | None = None
        self.stopped: bool | None = None  # whether the last answer ended at an end token

    def start(self) -> str:
        """Start the server and wait until its models are loaded."""
        log = (self.run_dir / "chat.log").open("a", encoding="utf-8")
        self.process = subprocess.Popen([sys.executable, "-m", "sft_tui.trainer.chat_server", str(self.run_dir)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1, env={**os.environ, "TQDM_DISABLE": "1"})
        message = self._read()
        if "error" in message:
            raise ChatError(message["error"])
        return message.get("note", "")

    def _read(self) -> dict:
        line = self.process.stdout.readline() if self.process and self.process.stdout else ""
        if not line:
            raise ChatError(f"the model process ended; see {self.run_dir / 'chat.log'}")
        return json.loads(line)

    def reply(self, messages: list[dict], which: str) -> Iterator[str]:
        """Send one request and yield its tokens until the server says done."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps({"messages": messages, "model": which, "max_new_tokens": self.max_new_tokens}) + "\n")
        self.process.stdin.flush()
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
        """Close stdin (the server exits) and make sure it is gone."""
        if self.process is None:
            return
        try:
            if self.process.stdin:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
        self.process = None
