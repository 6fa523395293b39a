"""The wizard's files: answers -> starter run.toml text + decision record, loaded back with the project's config loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from sft_tui.core.config.load import load_run_config
from sft_tui.core.decide.starter import starter_config, wizard_files
from sft_tui.core.decide.wizard import load_spec, recommend, validate_answers
from sft_tui.core.errors import UserError
from sft_tui.core.estimate.memory import estimate_memory, settings_from_run_config
from sft_tui.core.models.modelspec import resolve_model

SPEC = load_spec()
FINETUNE = dict(goal="task", labeled_examples=800)


def files_for(answers: dict, folder: Path, cwd: Path | None = None):
    valid = validate_answers(answers, SPEC)
    return valid, wizard_files(valid, recommend(valid, SPEC), SPEC, config_dir=folder, cwd=cwd or folder)


def written(folder: Path, text: str) -> Path:
    path = folder / "run.toml"
    path.write_text(text)
    return path


def test_the_answers_reach_the_config_and_load_back(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    _, files = files_for(FINETUNE | dict(model="qwen2.5-1.5b", gpu_gib=24.0, seq_len=512, data="train.jsonl"), tmp_path)
    config = load_run_config(written(tmp_path, files.config.text)).config
    assert (config.recipe, config.method.name, config.model.name) == ("lora", "lora", "qwen2.5-1.5b")
    assert config.training.max_seq_length == 512  # the schema's default is 1024: the answer, not the default
    assert config.data.train == str(tmp_path / "train.jsonl")
    assert config.training.micro_batch_size == files.config.value("training.micro_batch_size") == 4  # 1.5B at 512 tokens fits 24 GiB easily
    for line in ("training.max_seq_length = 512", "model.name = \"qwen2.5-1.5b\"", "data.train = \"train.jsonl\""):
        assert line in files.record  # the decision record lists what the config sets
    assert "| Where is the training data? (a file path; empty if it is not ready yet) | train.jsonl |" in files.record


def test_a_small_gpu_shrinks_the_micro_batch_and_keeps_the_effective_batch(tmp_path):
    _, files = files_for(FINETUNE | dict(model="llama3.1-8b", gpu_gib=12.0, seq_len=2048, data="d.jsonl"), tmp_path)
    loaded = load_run_config(written(tmp_path, files.config.text)).config
    assert loaded.method.name == "qlora" and loaded.training.optimizer == "paged_adamw_8bit"
    assert loaded.training.micro_batch_size < 4  # the recipe's 4 would not fit 12 GiB (13.2 GiB estimated)
    assert loaded.training.micro_batch_size * loaded.training.gradient_accumulation_steps >= 16
    peak = estimate_memory(resolve_model("llama3.1-8b"), settings_from_run_config(loaded)).peak_gib
    assert peak <= 12.0, "the config as written must fit the GPU the wizard was told about"
    assert "# sized for a 12 GiB GPU" in files.config.text


def test_no_data_path_leaves_a_todo_and_the_loader_stops_in_one_line(tmp_path, cli):
    _, files = files_for(FINETUNE | dict(model="qwen2.5-0.5b", seq_len=512), tmp_path)
    text = files.config.text
    assert files.config.missing == ("data.train",)
    assert "\ntrain = " not in text and "# TODO: the wizard was given no data path" in text
    path = written(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_run_config(path)
    assert "data.train is required" in err.value.line()
    result = cli("train", str(path))
    assert result.code == 2 and result.err.count("\n") == 1 and "data.train is required" in result.err
    assert "fill in data.train" in files.config.next_step(path)


def test_no_model_is_left_to_fill_in_not_a_placeholder_that_trains(tmp_path):
    _, files = files_for(FINETUNE | dict(data="d.jsonl"), tmp_path)
    assert files.config.missing == ("model.name",) and '\nname = "' not in files.config.text
    with pytest.raises(UserError, match="model.name is required"):
        load_run_config(written(tmp_path, files.config.text))


def test_a_model_that_does_not_fit_is_replaced_by_the_recommended_one(tmp_path):
    _, files = files_for(FINETUNE | dict(model="llama3.1-70b", gpu_gib=24.0, data="d.jsonl"), tmp_path)
    loaded = load_run_config(written(tmp_path, files.config.text)).config
    assert loaded.model.name == "gemma3-27b" and "llama3.1-70b does not fit 24 GiB" in files.config.text


def test_a_relative_data_path_is_written_relative_to_the_config_folder(tmp_path):
    sub = tmp_path / "configs"
    sub.mkdir()
    _, files = files_for(FINETUNE | dict(model="qwen2.5-0.5b", data="data/train.jsonl"), sub, cwd=tmp_path)
    assert files.config.value("data.train") == "../data/train.jsonl"
    assert load_run_config(written(sub, files.config.text)).config.data.train == str(tmp_path / "data" / "train.jsonl")


def test_no_config_when_fine_tuning_is_not_recommended(tmp_path):
    answers, files = files_for(dict(goal="knowledge", knowledge_changes="dynamic"), tmp_path)
    assert files.config is None and "## Run config" not in files.record
    assert starter_config(answers, recommend(answers, SPEC)) is None


def test_the_cli_writes_what_the_core_function_makes(cli, tmp_path):
    answers = tmp_path / "answers.toml"
    answers.write_text('goal = "task"\nlabeled_examples = 800\nmodel = "qwen2.5-1.5b"\ngpu_gib = 24\nseq_len = 512\n')
    result = cli("wizard", "--answers", str(answers), "--config-out", str(tmp_path / "run.toml"))
    assert result.code == 0 and "fill in data.train" in result.err
    _, files = files_for(dict(FINETUNE, model="qwen2.5-1.5b", gpu_gib=24.0, seq_len=512), tmp_path)
    assert (tmp_path / "run.toml").read_text() == files.config.text


def test_the_files_say_whether_the_run_starts_now_on_this_box(tmp_path, runs_home):
    from sft_tui.core.estimate.fit import rooms_on_this_box
    from sft_tui.core.runs.store import RunStore
    from sft_tui.core.runs.sysmon import SystemSampler
    from tests.unit.test_cli_estimate import admit_run, two_gpu_nvml

    answers = validate_answers(FINETUNE | dict(model="qwen2.5-7b", seq_len=2048, data="d.jsonl"), SPEC)
    rec = recommend(answers, SPEC, 24.0)  # the GPU detected: 24 GiB

    def files():
        rooms = rooms_on_this_box(SystemSampler(two_gpu_nvml()), RunStore(runs_home))
        return wizard_files(answers, rec, SPEC, config_dir=tmp_path, cwd=tmp_path, rooms=rooms, config_name="run.toml")

    now = files()
    peak = now.config.peak_gib
    assert 14.0 < peak <= 24.0, "the recommended run must fit the GPU but not the 14 GiB GPU0 has free"
    assert now.room_line() == (f"on this box now: GPU1 has 24.0 of 24.0 GiB free (0.0 other processes, 0.0 sft-tui runs): "
                               f"the run (about {peak:.1f} GiB) would start now")
    assert now.placement_json()["fits_now"] is True
    assert now.config == starter_config(answers, rec, tmp_path, tmp_path)  # a line, not a change to the recommendation
    admit_run(RunStore(runs_home), 20.0, gpu=1)
    later = files()
    assert later.room_line().startswith("on this box now: GPU0 has 14.0 of 24.0 GiB free (10.0 other processes, 0.0 sft-tui runs)")
    assert later.room_line().endswith("would wait in the queue for room (sft-tui train run.toml --queue)")
    assert f"## This box when decided\n\n- {later.room_line()}\n" in later.record
    assert later.placement_json()["gpu"] == 0 and later.placement_json()["fits_now"] is False
    assert wizard_files(answers, rec, SPEC, config_dir=tmp_path, cwd=tmp_path).room is None  # no rooms given: no line
    assert "This box" not in wizard_files(answers, rec, SPEC, config_dir=tmp_path, cwd=tmp_path).record


def test_without_a_model_only_the_free_room_is_said(tmp_path):
    from sft_tui.core.runs.placement import gpu_rooms
    from sft_tui.core.runs.sysmon import SystemSampler
    from tests.unit.test_cli_estimate import two_gpu_nvml

    answers = validate_answers(FINETUNE | dict(data="d.jsonl"), SPEC)
    rooms = gpu_rooms(SystemSampler(two_gpu_nvml()).sample_gpus().gpus, [])
    files = wizard_files(answers, recommend(answers, SPEC, 24.0), SPEC, config_dir=tmp_path, cwd=tmp_path, rooms=rooms)
    assert files.room_line().endswith("give a model to know whether the run would start now")
    assert files.placement_json()["fits_now"] is None and files.placement_json()["free_gib"] == 24.0


def test_the_cli_wizard_says_the_room_for_a_detected_gpu_only(cli, tmp_path, monkeypatch):
    import json
    import sys

    from tests.unit.test_cli_estimate import two_gpu_nvml

    monkeypatch.setitem(sys.modules, "pynvml", two_gpu_nvml())
    answers = tmp_path / "answers.toml"
    answers.write_text('goal = "task"\nlabeled_examples = 800\nmodel = "qwen2.5-1.5b"\nseq_len = 512\n')
    # both detected GPUs: one holds the run, so a copy on each (DDP), and both have room for it now
    result = cli("wizard", "--answers", str(answers))
    assert result.code == 0 and "DDP on 2 GPUs" in result.out
    assert "on this box now: 2 of 2 GPUs have" in result.out and "on each of 2) would start now" in result.out
    assert json.loads(cli("wizard", "--answers", str(answers), "--json").out)["placement"]["gpus_with_room"] == [0, 1]
    answers.write_text(answers.read_text() + "gpu_count = 1\n")  # one GPU: the one with the most room
    result = cli("wizard", "--answers", str(answers))
    assert result.code == 0 and "on this box now: GPU1 has 24.0 of 24.0 GiB free" in result.out and "would start now" in result.out
    assert json.loads(cli("wizard", "--answers", str(answers), "--json").out)["placement"]["gpu"] == 1
    answers.write_text(answers.read_text() + "gpu_gib = 80\n")  # answered: maybe another machine's GPU
    assert json.loads(cli("wizard", "--answers", str(answers), "--json").out)["placement"] is None
    assert "on this box now" not in cli("wizard", "--answers", str(answers)).out
