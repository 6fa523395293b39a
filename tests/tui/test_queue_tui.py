"""The shared box's queue in the TUI: owners and queue places on Home, mine-only, cancelling, admitting, queueing from Launch.

Stores hold queued runs written by hand (status queued, placement.json queued); the app's
admissions run the real queue code against a fake NVML, with a fake launcher that records.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from sft_tui.core.runs.schema import EventRow, JobStatus, Placement, now_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.tui.app import ADMIT_EVERY, SftApp
from sft_tui.tui.screens.confirm import ConfirmScreen
from sft_tui.tui.screens.home import HomeScreen
from sft_tui.tui.screens.launch import LaunchScreen
from tests.tui.conftest import NO_TIMERS, settle
from tests.tui.test_snapshots import FROZEN, SIZES, FixedSampler, frozen_store, laid_out  # noqa: F401 - the frozen_store fixture
from tests.tui.test_wizard_launch import tiny_model

ME = ("ana", "gpu-box")


WAITERS: list = []  # stand-ins for queued runs' waiting processes: live, harmless to SIGTERM


def stand_in_waiter() -> int:
    """A live process to stand for a queued run's waiter (the queue takes a run whose process is gone as orphaned)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    WAITERS.append(process)
    return process.pid


@pytest.fixture(autouse=True)
def _end_waiters():
    yield
    while WAITERS:
        process = WAITERS.pop()
        process.kill()
        process.wait()


def queue_run(store: RunStore, name: str, owner: str, estimate: float, priority: int = 0, order: float = 0.0,
              updated: str | None = None) -> str:
    """A run waiting in the queue, as `sft-tui train --queue` leaves it: its waiter a live stand-in (cancelling SIGTERMs it).

    With `updated` (a time long ago), its waiter is gone instead, as after a reboot.
    """
    submitted = FROZEN.replace(hour=13, minute=int(order))  # ids and start times the same in every picture
    run = store.create_run('[model]\nname = "llama3.1-8b"\n[method]\nname = "lora"\n', "llama3.1-8b", "lora", name=name, now=submitted)
    waiter = 999_999_999 if updated else stand_in_waiter()
    run.write_status(JobStatus("queued", waiter, submitted.isoformat(), updated or now_iso(), max_steps=900, owner=owner, host="gpu-box"))
    run.write_placement(Placement(now_iso(), "cuda", estimate, queued=True, priority=priority, order=order))
    return run.id


def add_queue(store: RunStore) -> dict[str, str]:
    """Two queued runs of two owners on the frozen store, too big for the fake A100's room; the live run holds GPU 0."""
    live = store.find_run("support-bot")
    live.write_placement(Placement(now_iso(), "cuda", 17.4, admitted_at=now_iso(), gpus=(0,)))
    # bob's was submitted first, but ana's has the higher priority: ana's is #1
    return {"bob": queue_run(store, "eval-sweep", "bob", 58.2, order=1.0), "ana": queue_run(store, "long-context", "ana", 61.0, priority=1, order=2.0)}


@pytest.fixture()
def queue_store(frozen_store, monkeypatch):  # noqa: F811
    # the queue counts only runs started on its own host: the pictures' runs were started on gpu-box, by ana and bob
    monkeypatch.setattr("sft_tui.core.runs.queue.current_owner", lambda: ME)
    add_queue(frozen_store)
    return frozen_store


def app_with(store, **kwargs):
    kwargs.setdefault("launch_fn", lambda run: pytest.fail(f"{run.id} was started"))
    kwargs.setdefault("current_owner", lambda: ME)
    return SftApp(store, FixedSampler(), poll_s=NO_TIMERS, **kwargs)


def row_of(home: HomeScreen, run_id: str) -> dict[str, str]:
    table = home.query_one("#runs")
    return {str(column.value): str(table.get_cell(run_id, column)) for column in table.columns}


async def select(pilot, run_id: str) -> None:
    table = pilot.app.screen.query_one("#runs")
    table.move_cursor(row=table.get_row_index(run_id))
    await settle(pilot)


def detail(pilot) -> str:
    return str(pilot.app.screen.query_one("#detail").render())


async def test_home_shows_owners_queue_places_and_why_a_run_waits_at_80_columns(queue_store):
    ids = {"bob": queue_store.find_run("eval-sweep").id, "ana": queue_store.find_run("long-context").id}
    async with app_with(queue_store).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        home = pilot.app.screen
        header = home.query_one("#runs").render_line(0).text
        assert "owner" in header and header.rstrip().endswith("ETA"), header  # the owner fits and ETA still shows
        ana, bob = row_of(home, ids["ana"]), row_of(home, ids["bob"])
        assert (ana["owner"], ana["progress"], bob["owner"], bob["progress"]) == ("ana", "#1 · 61.0G", "bob", "#2 · 58.2G")
        await select(pilot, ids["bob"])
        shown = detail(pilot)
        assert "queued #2, priority 0 · waits: needs 58.2 GiB; best: GPU0" in shown and "estimate 58.2 GiB" in shown, shown
        await select(pilot, queue_store.find_run("support-bot").id)
        assert "running on GPU 0" in detail(pilot)


async def test_m_shows_only_my_runs_and_says_so(queue_store):
    async with app_with(queue_store).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        home = pilot.app.screen
        everyone = len(home.runs)
        assert {r.owner for r in home.runs} >= {"ana", "bob"}
        await pilot.press("m")
        await settle(pilot)
        assert {r.owner for r in home.runs} == {"ana"} and home.query_one("#runs").row_count == 2
        assert f"mine only (ana): 2 of {everyone} runs" in str(home.query_one("#title").render())
        assert [r.queue_position for r in home.runs if r.queue_position] == [1]  # places still count everyone's runs
        await pilot.press("m")
        await settle(pilot)
        assert len(home.runs) == everyone and "mine only" not in str(home.query_one("#title").render())


async def test_m_with_no_runs_of_mine_says_how_to_see_everyones(queue_store):
    async with app_with(queue_store, current_owner=lambda: ("zoe", "laptop")).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert "runs is yours (zoe): m shows everyone's" in str(pilot.app.screen.query_one("#empty").render())


async def test_stop_on_my_queued_run_cancels_it(queue_store, monkeypatch):
    monkeypatch.setattr("sft_tui.core.runs.queue_edits.current_owner", lambda: ME)  # the core's owner check sees ana too
    stopped = []
    run = queue_store.find_run("long-context")
    async with app_with(queue_store, stop_run=stopped.append).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await select(pilot, run.id)
        await pilot.press("s")
        await settle(pilot)
        question = str(pilot.app.screen.query_one("#confirm-question").render())
        assert f"Cancel queued run {run.id}? It has not started" in question and "belongs" not in question
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(pilot.app.screen, HomeScreen) and stopped == []  # cancelled, not stopped through the trainer's path
    status = run.read_status()
    assert status.state == "stopped" and "cancelled in the queue by ana@gpu-box" in status.result
    assert "cancelled by ana@gpu-box" in run.read_placement().waiting


async def test_stopping_someone_elses_run_names_them_and_records_it(queue_store, monkeypatch):
    monkeypatch.setattr("sft_tui.core.runs.queue_edits.current_owner", lambda: ME)
    stopped = []
    live, bobs = queue_store.find_run("support-bot"), queue_store.find_run("eval-sweep")
    live.write_status(JobStatus("running", os.getpid(), now_iso(), now_iso(), step=180, max_steps=600, owner="carl", host="gpu-box"))
    async with app_with(queue_store, stop_run=lambda run: stopped.append(run.id) or f"stopping {run.id}").run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await select(pilot, live.id)
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(pilot.app.screen, ConfirmScreen)
        assert "It belongs to carl@gpu-box; y stops it anyway, recorded in its events." in str(pilot.app.screen.query_one("#confirm-question").render())
        await pilot.press("n")
        await settle(pilot)
        assert stopped == []
        await pilot.press("s", "y")
        await settle(pilot)
        assert stopped == [live.id]
        await select(pilot, bobs.id)
        await pilot.press("s")
        await settle(pilot)
        question = str(pilot.app.screen.query_one("#confirm-question").render())
        assert "Cancel queued run" in question and "It belongs to bob@gpu-box; y cancels it anyway" in question
        await pilot.press("y")
        await settle(pilot)
    assert bobs.read_status().state == "stopped"
    for run in (live, bobs):
        forced = [row for row in run.read_new_rows().rows if isinstance(row, EventRow) and row.event == "forced"]
        assert forced and "ana@gpu-box" in forced[-1].message, run.id


async def test_the_app_starts_queued_runs_that_fit_with_its_launcher_every_few_listings(frozen_store, monkeypatch):  # noqa: F811
    monkeypatch.setattr("sft_tui.core.runs.queue.current_owner", lambda: ME)  # a waiter-less run is restarted by its owner's app
    an_hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    fits = frozen_store.find_run(queue_run(frozen_store, "small", "ana", 5.0, updated=an_hour_ago))  # its waiter died (a reboot)
    launched = []
    async with app_with(frozen_store, launch_fn=lambda run: launched.append(run.id) or 1).run_test(size=(80, 24)) as pilot:
        await settle(pilot)  # the first listing admits: a queue whose waiters died moves as soon as anyone opens sft-tui
        assert launched == [fits.id]
        placement = fits.read_placement()
        assert placement.admitted_at and placement.gpus == (1,)  # best fit: the T4's 15 GiB, keeping the A100 for big runs
        calls = []
        monkeypatch.setattr("sft_tui.core.runs.queue.admit_with_sampler", lambda store, sampler, spawn: calls.append(spawn))
        for _ in range(2 * ADMIT_EVERY):
            pilot.app.poll_runs()
            await settle(pilot)
        assert len(calls) == 2 and all(spawn is pilot.app.launch_fn for spawn in calls)


async def test_a_failing_admission_is_shown_once_and_the_listing_goes_on(frozen_store, monkeypatch):  # noqa: F811
    def broken(store, sampler, spawn):
        raise OSError(30, "Read-only file system", str(store.home / ".queue.lock"))

    monkeypatch.setattr("sft_tui.core.runs.queue.admit_with_sampler", broken)
    async with app_with(frozen_store).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for _ in range(3 * ADMIT_EVERY):
            pilot.app.poll_runs()
            await settle(pilot)
        warnings = [n.message for n in pilot.app._notifications if "queued runs" in n.message]
        assert len(warnings) == 1 and "Read-only file system" in warnings[0], warnings
        assert len(pilot.app.screen.runs) == 4


async def test_launch_queues_a_run_and_goes_back_to_home(frozen_store, tmp_path):  # noqa: F811
    model = tiny_model(tmp_path / "m")
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    config = tmp_path / "run.toml"
    config.write_text(f'recipe = "lora"\n[model]\nname = "{model}"\n[data]\ntrain = "{data}"\n')
    launched = []
    async with app_with(frozen_store, launch_fn=lambda run: launched.append(run.id) or 4242).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, LaunchScreen)
        screen.query_one("#config").value = str(config)
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert len(launched) == 1, screen.output  # its waiting supervisor
        assert [type(s) for s in pilot.app.screen_stack][1:] == [HomeScreen]  # nothing to monitor yet
        assert any(f"queued run {launched[0]} at position 1" in n.message for n in pilot.app._notifications)
        row = next(r for r in pilot.app.screen.runs if r.id == launched[0])
        assert (row.state, row.queue_position) == ("queued", 1)
    placement = frozen_store.find_run(launched[0]).read_placement()
    assert placement.queued and not placement.admitted_at and placement.device == "cuda"


async def test_the_key_overlays_list_queue_and_mine_only(frozen_store):  # noqa: F811
    async with app_with(frozen_store).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert "Mine only / all runs" in str(pilot.app.screen.query_one("#keys-list").render())
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("f1")  # the fields take `?` as text
        await settle(pilot)
        assert "Queue" in str(pilot.app.screen.query_one("#keys-list").render())


# -- pictures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_home_with_queued_runs_of_two_owners(snap_compare, queue_store, size):
    """Owners at 80 columns, queue places where progress goes, and why the selected queued run waits."""

    async def run_before(pilot):
        await laid_out(pilot)
        await select(pilot, queue_store.find_run("eval-sweep").id)

    assert snap_compare(app_with(queue_store), terminal_size=size, run_before=run_before)


def test_stopping_someone_elses_queued_run_asks_and_names_them(snap_compare, queue_store):
    async def run_before(pilot):
        await laid_out(pilot)
        await select(pilot, queue_store.find_run("eval-sweep").id)
        await pilot.press("s")
        await settle(pilot)

    assert snap_compare(app_with(queue_store), terminal_size=(80, 24), run_before=run_before)
