"""What every screen shares: a worker that fails is shown, never silent."""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker, WorkerState


class CockpitScreen(Screen):
    """A Screen whose failing workers end in an error toast naming the worker and the error."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{event.worker.name or 'background work'} failed: {type(error).__name__}: {error}", severity="error", timeout=30)
