"""The monitor of a run waiting in the queue says why it waits, and `s` there offers to cancel it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sft_tui.tui.screens.confirm import ConfirmScreen
from sft_tui.tui.screens.monitor import MonitorScreen
from tests.tui.conftest import settle
from tests.tui.test_queue_tui import _end_waiters, app_with, queue_store  # noqa: F401,F811 - fixtures
from tests.tui.test_snapshots import SIZES, frozen_store, laid_out  # noqa: F401 - the frozen_store fixture

# what the app's own admission pass writes on the fake A100 + T4 box: the same whichever comes first, it or the monitor's poll
WHY = "needs 61.0 GiB; best: GPU0 53.6 of 80.0 GiB free (9.0 other processes, 17.4 sft-tui runs)"


def waiting_run(store):
    run = store.find_run("long-context")
    run.write_placement(replace(run.read_placement(), waiting=WHY, waiting_gpu=0))
    return run


async def test_a_queued_runs_monitor_says_why_it_waits_and_s_offers_to_cancel(queue_store):  # noqa: F811
    run = waiting_run(queue_store)
    async with app_with(queue_store, open_run=run.id).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        monitor = pilot.app.screen
        assert isinstance(monitor, MonitorScreen)
        assert str(monitor.query_one("#error").render()) == f"waiting in the queue: priority 1 · {WHY}"
        assert "queued" in str(monitor.query_one("#run-title").render())
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(pilot.app.screen, ConfirmScreen) and "Cancel queued run" in str(pilot.app.screen.question)


@pytest.mark.parametrize("size", SIZES)
def test_a_queued_runs_monitor(snap_compare, queue_store, size):  # noqa: F811
    run = waiting_run(queue_store)
    assert snap_compare(app_with(queue_store, open_run=run.id), terminal_size=size, run_before=laid_out)
