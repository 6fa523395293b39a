"""The Wizard's recommendation on a shared box: how much is free on the GPU the run would get now, start or queue."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from sft_tui.tui.app import SftApp
from sft_tui.tui.screens.wizard import WizardScreen
from tests.tui.conftest import NO_TIMERS, settle
from tests.unit.test_cli_estimate import admit_run, two_gpu_nvml
from tests.unit.test_sysmon import FakeNvml

# lora on a 7B: about 20.9 GiB at 2048 tokens, on one GPU (without gpu_count the two GPUs would train a copy each:
# tests/tui/test_wizard_multi_gpu.py)
ANSWERS = dict(goal="task", labeled_examples=800, model="qwen2.5-7b", gpu_count=1)


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "home")


async def recommended(pilot, folder, answers: dict) -> WizardScreen:
    """Open the wizard and recommend from `answers` (the key-by-key answering is tests/tui/test_wizard_launch.py's)."""
    await settle(pilot)
    await pilot.press("w")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, WizardScreen)
    screen.folder = folder
    screen.raw = dict(answers)
    screen.finish()
    await settle(pilot)
    return screen


def result(screen) -> str:
    return screen.query_one("#result", Static).visual.plain


async def test_the_recommendation_says_if_the_run_starts_now_or_waits(store, tmp_path):
    async with SftApp(store, SystemSampler(two_gpu_nvml()), poll_s=NO_TIMERS).run_test(size=(80, 24)) as pilot:
        screen = await recommended(pilot, tmp_path, ANSWERS)
        peak = screen._files().config.peak_gib
        assert f"GPU1 now: 24.0 of 24.0 GiB free (0.0 other, 0.0 sft-tui runs) · the run needs ~{peak:.1f} GiB: ✓ starts now" in result(screen)
        assert screen.recommendation.method == "lora"

        admit_run(store, 20.0, gpu=1)  # GPU1 now has 4 GiB free, GPU0 14: the run fits the GPU, not the room
        await pilot.press("escape")  # back to the last question, and recommend again
        await settle(pilot)
        screen.finish()
        await settle(pilot)
        text = result(screen)
        assert f"GPU0 now: 14.0 of 24.0 GiB free (10.0 other, 0.0 sft-tui runs) · the run needs ~{peak:.1f} GiB: ✗ waits in the queue" in text
        assert "Queue, ctrl+o, on Launch" in text and screen.recommendation.method == "lora"  # the recommendation is unchanged
        box = screen.query_one("#result")
        assert box.region.bottom <= 23 and "enter writes run.toml" in text  # all of it above the footer at 80x24

        await pilot.press("w")
        await settle(pilot)
        record = (tmp_path / "decision.md").read_text()
        assert "## This box when decided" in record and "would wait in the queue for room (sft-tui train run.toml --queue)" in record


async def test_an_answered_gpu_or_no_gpu_says_nothing_about_this_box(store, tmp_path):
    async with SftApp(store, SystemSampler(two_gpu_nvml()), poll_s=NO_TIMERS).run_test(size=(80, 24)) as pilot:
        screen = await recommended(pilot, tmp_path, ANSWERS | dict(gpu_gib=80.0))  # maybe another machine's GPU
        assert " now: " not in result(screen) and screen._files().room is None
    async with SftApp(store, SystemSampler(FakeNvml(fail_init="Driver Not Loaded")), poll_s=NO_TIMERS).run_test(size=(80, 24)) as pilot:
        screen = await recommended(pilot, tmp_path, ANSWERS)
        assert " now: " not in result(screen) and screen._files().room is None
