"""The Wizard's data question under Pilot: pairs -> SFT then DPO on screen and in run.toml; pictures at 80x24 and 120x40."""

from __future__ import annotations

import json
import re

import pytest

from sft_tui.core.config.load import load_run_config
from sft_tui.tui.screens.launch import LaunchScreen
from sft_tui.tui.screens.wizard import CONFIG_NAME
from tests.tui.conftest import settle
from tests.tui.test_app import make, store  # noqa: F401 - the store fixture
from tests.tui.test_snapshots import app_for, frozen_store  # noqa: F401 - the frozen_store fixture
from tests.tui.test_wizard_launch import _to_wizard, answer, key, open_wizard

# "4" picks the fourth option of the data question: pairs only
PAIRS = {"goal": "3", "data_kind": "4", "labeled_examples": "800", "model": "qwen2.5-1.5b", "gpu_gib": "24", "seq_len": "512",
         "data": "pairs.jsonl"}


async def to_data_question(pilot, screen) -> None:
    while key(screen) != "data_kind":
        await pilot.press("enter")
        await settle(pilot)


async def test_the_data_question_shows_every_option_above_the_footer_at_80x24(store):  # noqa: F811
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        await to_data_question(pilot, screen)
        options = screen.query_one("#value")
        assert options.option_count == 5 and options.value == "examples"  # the default keeps the flows as they were
        assert options.region.bottom <= 22 and options.region.height == 5  # no scrolling, and the hint and buttons below it
        assert screen.query_one("#wizard-hint").region.bottom <= 22
        assert "What data does the team have?" in screen.query_one("#wizard-question").visual.plain
        await pilot.press("5")  # a number answers and moves on
        await settle(pilot)
        assert screen.raw["data_kind"] == "thumbs" and key(screen) == "labeled_examples"


async def test_pairs_recommend_sft_then_dpo_and_run_toml_is_stage_1(store, tmp_path):  # noqa: F811
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        screen.folder = tmp_path
        await answer(pilot, screen, PAIRS | {"data": str(tmp_path / "pairs.jsonl")})
        rec = screen.recommendation
        assert [s.objective for s in rec.stages] == ["sft", "dpo"] and rec.objective == "dpo"
        text = screen.query_one("#result").visual.plain
        assert "recommendation: finetune with lora on qwen2.5-1.5b: SFT, then DPO" in text
        assert re.search(r'method\.objective = "sft" +stage 1 of 2, then dpo', text)
        assert "then stage 2: DPO from this run's adapter (command in run.toml's header)" in text
        assert screen.query_one("#result").region.bottom <= 23  # all of it above the footer
        details = screen.query_one("#wizard-details").visual.plain
        assert "data_kind = pairs: no examples besides the pairs" in details and "training plan:" in details

        await pilot.press("enter")  # write run.toml and decision.md, then Launch
        await settle(pilot)
        assert isinstance(app.screen, LaunchScreen)
        written = (tmp_path / CONFIG_NAME).read_text()
        from sft_tui.core.decide.starter import wizard_files

        assert written == wizard_files(screen.answers, rec, screen.spec, config_dir=tmp_path, config_name=CONFIG_NAME).config.text
        assert "## Training plan" in (tmp_path / "decision.md").read_text()
    overrides = re.findall(r"^#\s+--set (\S+)", written, flags=re.MULTILINE)
    assert overrides[:3] == ["method.objective=dpo", "model.adapter=RUN", "training.lr=5e-6"]
    assert load_run_config(tmp_path / CONFIG_NAME).config.method.objective == "sft"
    assert load_run_config(tmp_path / CONFIG_NAME, overrides).config.method.objective == "dpo"


# -- pictures ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_wizard_data_question(snap_compare, frozen_store, size):  # noqa: F811
    async def run_before(pilot):
        await _to_wizard(".")(pilot)
        await to_data_question(pilot, pilot.app.screen)

    assert snap_compare(app_for(frozen_store), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_wizard_two_stage_result(snap_compare, frozen_store, size, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)

    async def run_before(pilot):
        await _to_wizard(".")(pilot)
        await answer(pilot, pilot.app.screen, PAIRS)

    assert snap_compare(app_for(frozen_store), terminal_size=size, run_before=run_before)
