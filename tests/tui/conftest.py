"""TUI test helpers: wait on the app's own state (workers done, messages handled), never on the clock."""

from __future__ import annotations

import time
from typing import Callable

import pytest

# Tests drive every poll themselves (screen.poll(), then settle): the app's own timers are set
# an hour apart so they never fire during a test and nothing depends on timing.
NO_TIMERS = 3600.0


async def settle(pilot, rounds: int = 3) -> None:
    """Let running workers finish and every message they posted be handled (a handler may start another worker)."""
    from textual.worker import WorkerFailed

    for _ in range(rounds):
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerFailed:
            pass  # shown by the screen as an error toast: tests assert on that
        await pilot.pause()


async def until(pilot, predicate: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Settle until `predicate` holds (work done in threads the app does not own, such as a chat backend's)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await settle(pilot, rounds=1)
