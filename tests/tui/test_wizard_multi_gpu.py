"""The Wizard on several GPUs under Pilot: the GPU count question, FSDP/DDP in the recommendation and run.toml; pictures."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from sft_tui.core.config.load import load_run_config
from sft_tui.core.runs.sysmon import SystemSampler
from sft_tui.tui.screens.launch import LaunchScreen
from sft_tui.tui.screens.wizard import CONFIG_NAME
from tests.tui.conftest import settle
from tests.tui.test_app import make, store  # noqa: F401 - the store fixture
from tests.tui.test_snapshots import app_for, frozen_store  # noqa: F401 - the frozen_store fixture
from tests.tui.test_wizard_launch import _to_wizard, answer, key, open_wizard
from tests.unit.test_cli_estimate import two_gpu_nvml

# a 70B LoRA on four 80 GB GPUs: one GPU cannot hold it, four with FSDP can (issue 18)
LLAMA_70B_ON_4 = {"goal": "3", "labeled_examples": "1000", "model": "llama3.1-70b", "gpu_gib": "80", "gpu_count": "4"}


def text(screen, selector: str) -> str:
    return screen.query_one(selector, Static).visual.plain


async def test_the_gpu_count_question_follows_the_gpu_memory_and_fits_80x24(store):  # noqa: F811
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        while key(screen) != "gpu_count":
            await pilot.press("enter")
            await settle(pilot)
        assert screen.spec.questions[screen.index - 1].key == "gpu_gib"
        question = text(screen, "#wizard-question")
        assert "How many of these GPUs can the run use?" in question and "FSDP" in question and "DDP" in question
        assert screen.query_one("#wizard-buttons").region.bottom <= 22  # above the footer
        await pilot.press("4", "enter")
        await settle(pilot)
        assert screen.raw["gpu_count"] == 4 and key(screen) == "seq_len"


async def test_a_70b_lora_on_four_gpus_is_fsdp_on_screen_and_in_run_toml(store, tmp_path):  # noqa: F811
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        screen.folder = tmp_path
        await answer(pilot, screen, LLAMA_70B_ON_4 | {"data": str(tmp_path / "train.jsonl")})
        rec = screen.recommendation
        assert (rec.method, rec.gpus, rec.strategy) == ("lora", 4, "fsdp")
        result = text(screen, "#result")
        assert "finetune with lora on llama3.1-70b, FSDP on 4 GPUs" in result
        assert "distributed.gpus = 4" in result and 'distributed.strategy = "fsdp"' in result
        assert screen.query_one("#result").region.bottom <= 23 and "enter writes run.toml" in result  # all above the footer
        assert f"{rec.estimate['peak_gib']:.1f} GiB per GPU" in text(screen, "#wizard-details")
        await pilot.press("enter")  # write run.toml and decision.md, then Launch
        await settle(pilot)
        assert isinstance(app.screen, LaunchScreen)
    (tmp_path / "train.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    config = load_run_config(tmp_path / CONFIG_NAME).config
    assert (config.distributed.gpus, config.distributed.strategy) == ("4", "fsdp")


async def test_a_detected_two_gpu_box_trains_a_copy_per_gpu_and_says_if_both_have_room(store, tmp_path):  # noqa: F811
    app = app_for(store, SystemSampler(two_gpu_nvml()))  # two 24 GiB GPUs, 10 GiB of GPU0 held by another process
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        screen.folder = tmp_path
        screen.raw = {"goal": "task", "labeled_examples": 800, "model": "qwen2.5-7b"}  # LoRA on a 7B: one 24 GiB GPU holds it
        screen.finish()
        await settle(pilot)
        rec, files = screen.recommendation, screen._files()
        assert (rec.method, rec.gpus, rec.strategy) == ("lora", 2, "ddp")
        need = files.config.peak_gib
        result = text(screen, "#result")
        assert f"now: 1 of 2 GPUs have {need:.1f} GiB free, the run needs 2: ✗ waits in the queue" in result
        assert screen.query_one("#result").region.bottom <= 23


# -- pictures ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_wizard_multi_gpu_result(snap_compare, frozen_store, size, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)

    async def run_before(pilot):
        await _to_wizard(".")(pilot)
        await answer(pilot, pilot.app.screen, LLAMA_70B_ON_4)

    assert snap_compare(app_for(frozen_store), terminal_size=size, run_before=run_before)
