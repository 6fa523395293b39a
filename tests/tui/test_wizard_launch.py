"""The Wizard and Launch screens under Pilot: keys answer, answers reach run.toml, a launch ends on Home + Monitor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_tui.core.config.load import load_run_config
from sft_tui.tui.screens.home import HomeScreen
from sft_tui.tui.screens.launch import LaunchScreen
from sft_tui.tui.screens.monitor import MonitorScreen
from sft_tui.tui.screens.wizard import WizardScreen
from tests.tui.conftest import settle
from tests.tui.test_app import make, store  # noqa: F401 - the store fixture
from tests.tui.test_snapshots import app_for, frozen_store  # noqa: F401 - the frozen_store fixture


async def open_wizard(pilot) -> WizardScreen:
    await settle(pilot)
    await pilot.press("w")
    await settle(pilot)
    assert isinstance(pilot.app.screen, WizardScreen)
    return pilot.app.screen


def key(screen: WizardScreen) -> str:
    return screen.spec.questions[screen.index].key


async def answer(pilot, screen: WizardScreen, answers: dict[str, str]) -> None:
    """Answer every question with keys only: a number for choices, text then enter for the rest (empty keeps the default)."""
    for _ in range(len(screen.spec.questions)):  # one answer per question: a key that does not move on fails here
        assert screen.focused is screen.query_one("#value"), f"focus is not on the answer of {key(screen)}"
        q = screen.spec.questions[screen.index]
        given = answers.get(q.key)
        if q.kind in ("choice", "bool"):
            await pilot.press(given or "enter")
        else:
            if given is not None:
                await pilot.press(*given)
            await pilot.press("enter")
        await settle(pilot)
    assert screen.query_one("#result").display, "the recommendation is not on screen after the last answer"


def tiny_model(folder: Path) -> Path:
    """A model folder the pre-flight accepts: a config, a tokenizer and a weights file with no tensors."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(dict(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                        num_key_value_heads=2, intermediate_size=128, vocab_size=500)))
    (folder / "model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    (folder / "tokenizer.json").write_text("{}")
    return folder


async def test_enter_moves_on_numbers_answer_and_esc_goes_back(store):  # noqa: F811
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        assert key(screen) == "goal" and screen.focused is screen.query_one("#value")  # the first key counts
        await pilot.press("enter")  # one key: the highlighted default, and on
        await settle(pilot)
        assert key(screen) == "knowledge_changes" and screen.raw["goal"] == "task"
        await pilot.press("3")  # one key: the third option, and on
        await settle(pilot)
        assert key(screen) == "needs_citations" and screen.raw["knowledge_changes"] == "dynamic"
        await pilot.press("1")  # yes/no questions are numbered too
        await settle(pilot)
        assert screen.raw["needs_citations"] is True
        await pilot.press("9")  # no ninth option: nothing happens
        await settle(pilot)
        assert key(screen) == "hallucination_tolerance"
        await pilot.press("escape")
        await settle(pilot)
        assert key(screen) == "needs_citations" and screen.query_one("#value").value is True  # the answer is still there
        await pilot.press("escape", "escape")
        await settle(pilot)
        assert key(screen) == "goal"
        await pilot.press("down", "enter")  # arrows then enter
        await settle(pilot)
        assert screen.raw["goal"] == "both" and key(screen) == "knowledge_changes"


async def test_a_typed_answer_moves_on_with_enter_and_a_bad_one_stays(store):  # noqa: F811
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        await pilot.press("enter", "enter", "enter", "enter", "enter")
        await settle(pilot)
        assert key(screen) == "labeled_examples" and screen.focused is screen.query_one("#value")
        await pilot.press("8", "0", "0", "enter")  # the default 0 is selected on focus: typing replaces it
        await settle(pilot)
        assert screen.raw["labeled_examples"] == 800 and key(screen) == "prompting_meets_bar"


async def test_wizard_answers_reach_run_toml_and_the_launch_ends_on_home_and_monitor(store, tmp_path):  # noqa: F811
    model = tiny_model(tmp_path / "m")
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    launched = []
    app, _ = make(store, launch_fn=lambda run: launched.append(run.id) or 4242)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        screen.folder = tmp_path
        await answer(pilot, screen, {"goal": "3", "labeled_examples": "800", "model": str(model), "gpu_gib": "24", "seq_len": "512"})
        assert (screen.recommendation.approach, screen.recommendation.method) == ("finetune", "lora")
        await pilot.press("enter")  # write run.toml and decision.md, then Launch
        await settle(pilot)
        written = (tmp_path / "run.toml").read_text()
        assert "max_seq_length = 512" in written and "# TODO: the wizard was given no data path" in written
        assert "training.max_seq_length = 512" in (tmp_path / "decision.md").read_text()
        from sft_tui.core.decide.starter import wizard_files

        same = wizard_files(screen.answers, screen.recommendation, screen.spec, config_dir=tmp_path).config.text
        assert written == same  # what `sft-tui wizard --config-out` writes for these answers

        launch = app.screen
        assert isinstance(launch, LaunchScreen)
        assert launch.query_one("#model").value == str(model) and launch.query_one("#data").value == ""  # the file's values
        assert launch.focused is launch.query_one("#data")  # the field still to fill in
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert "no training data" in launch.output[-1] and not launched
        launch.query_one("#data").value = str(data)
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert len(launched) == 1, launch.output
        assert [type(s) for s in app.screen_stack][1:] == [HomeScreen, MonitorScreen]
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    config = load_run_config(store.find_run(launched[0]).config_path).config
    assert (config.training.max_seq_length, config.model.name, config.data.train) == (512, str(model), str(data))


async def test_launch_passes_changed_fields_so_the_form_is_what_launches(store, tmp_path):  # noqa: F811
    model = tiny_model(tmp_path / "m")
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    config = tmp_path / "run.toml"
    config.write_text(f'recipe = "lora"\n[model]\nname = "qwen2.5-0.5b"\n[data]\ntrain = "{data}"\n[method]\nname = "lora"\n')
    launched = []
    app, _ = make(store, launch_fn=lambda run: launched.append(run.id) or 4242)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        screen = app.screen
        screen.query_one("#config").value = str(config)
        await settle(pilot)
        assert screen.query_one("#model").value == "qwen2.5-0.5b"  # read from the file, not a default
        screen.query_one("#model").value = str(model)
        screen.query_one("#recipe").query("RadioButton")[1].value = True  # qlora
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert len(launched) == 1, screen.output
        assert isinstance(app.screen, MonitorScreen) and [type(s) for s in app.screen_stack][1:] == [HomeScreen, MonitorScreen]
    resolved = load_run_config(store.find_run(launched[0]).config_path).config
    assert (resolved.method.name, resolved.model.name) == ("qlora", str(model))


# -- pictures ------------------------------------------------------------------------------------

ANSWERS = {"goal": "3", "labeled_examples": "800", "model": "qwen2.5-1.5b", "gpu_gib": "24", "seq_len": "512"}


def _to_wizard(folder: str):
    async def run_before(pilot):
        screen = await open_wizard(pilot)
        screen.folder = Path(folder)  # relative: the same picture on every machine
    return run_before


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_wizard_question(snap_compare, frozen_store, size):  # noqa: F811
    assert snap_compare(app_for(frozen_store), terminal_size=size, run_before=_to_wizard("."))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_wizard_result(snap_compare, frozen_store, size, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)

    async def run_before(pilot):
        await _to_wizard(".")(pilot)
        await answer(pilot, pilot.app.screen, ANSWERS)

    assert snap_compare(app_for(frozen_store), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_launch_after_the_wizard(snap_compare, frozen_store, size, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)

    async def run_before(pilot):
        await _to_wizard("project")(pilot)
        await answer(pilot, pilot.app.screen, ANSWERS)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, LaunchScreen)
        pilot.app.clear_notifications()
        await settle(pilot)

    assert snap_compare(app_for(frozen_store), terminal_size=size, run_before=run_before)


async def test_a_second_wizard_in_the_same_folder_writes_beside_the_first_never_over_it(store, tmp_path):  # noqa: F811
    (tmp_path / "run.toml").write_text("# mine\n")
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        screen.folder = tmp_path
        await answer(pilot, screen, {"goal": "3", "labeled_examples": "800", "model": "qwen2.5-1.5b", "gpu_gib": "24", "seq_len": "512"})
        await pilot.press("enter")  # write run.toml + decision.md, then Launch
        await settle(pilot)
        assert (tmp_path / "run.toml").read_text() == "# mine\n"  # untouched
        written = tmp_path / "wizard-2" / "run.toml"
        assert "max_seq_length = 512" in written.read_text() and (tmp_path / "wizard-2" / "decision.md").is_file()
        assert isinstance(app.screen, LaunchScreen) and app.screen.config == str(written)
