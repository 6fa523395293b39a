"""What every screen (and the app) shares: a worker that fails is shown, never silent."""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker, WorkerState


class ShowsWorkerFailures:
    """Mixed into the app and every screen: a failing worker ends in an error toast naming the worker and the error.

    A poll that fails every second says so once, not once a second: the same failure is
    shown again only after that worker has succeeded in between.
    """

    _shown_failures: dict[str, str] | None = None

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        shown = self._shown_failures if self._shown_failures is not None else {}
        self._shown_failures = shown
        name = event.worker.name or "background work"
        if event.state == WorkerState.SUCCESS:
            shown.pop(name, None)
        elif event.state == WorkerState.ERROR:
            error = event.worker.error
            line = f"{name} failed: {type(error).__name__}: {error}"
            if shown.get(name) != line:
                shown[name] = line
                self.notify(line, severity="error", timeout=30)  # type: ignore[attr-defined]


class CockpitScreen(ShowsWorkerFailures, Screen):
    """A Screen whose failing workers are shown (ShowsWorkerFailures)."""
