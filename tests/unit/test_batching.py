"""The batching choice (core/data/batching.py), Liger's (core/models/kernels.py) and the config fields behind them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sft_tui.core.config.load import load_run_config
from sft_tui.core.data.batching import (GROUP_WHEN_PADDING, PACKING_UNSAFE_FAMILIES, BatchingPlan, batch_order,
                                        choose_batching, padding_share)
from sft_tui.core.errors import UserError
from sft_tui.core.models.kernels import LIGER_FAMILIES, choose_kernels
from sft_tui.core.runs.speed import batching_line, speed_plan


def test_auto_groups_by_length_on_the_cpu_when_random_batches_pad_heavily():
    plan = choose_batching("auto", True, "sft", "cpu", "sdpa", "llama", random_padding=0.46)
    assert plan.mode == "grouped" and plan.padded and not plan.packs
    assert plan.trainer_args() == {"packing": False, "train_sampling_strategy": "group_by_length"}
    assert "packing measured slower" in plan.line()


def test_auto_keeps_random_batches_when_they_pad_little():
    # the demo pads 16% at random: grouping made its held-out loss worse for little speed
    plan = choose_batching("auto", True, "sft", "cpu", "sdpa", "llama", random_padding=GROUP_WHEN_PADDING - 0.01)
    assert plan.mode == "padded"
    assert plan.trainer_args()["train_sampling_strategy"] == "random"


def test_auto_packs_only_with_varlen_attention_on_cuda():
    assert choose_batching("auto", True, "sft", "cuda", "flash_attention_2", "qwen3", 0.5).mode == "packed"
    assert choose_batching("auto", True, "sft", "cuda", "sdpa", "qwen3", 0.5).mode == "grouped"
    assert choose_batching("auto", True, "sft", "cpu", "flash_attention_2", "qwen3", 0.5).mode == "grouped"
    # a family whose packed rows leak across examples is never packed by auto
    assert choose_batching("auto", True, "sft", "cuda", "flash_attention_2", "gpt_oss", 0.5).mode == "grouped"


def test_forced_settings_win_and_wrong_ones_are_refused():
    assert choose_batching("on", True, "sft", "cpu", "sdpa").trainer_args() == {"packing": True, "packing_strategy": "bfd"}
    assert choose_batching("on", True, "sft", "cpu", "sdpa").mode == "packed"
    assert choose_batching("wrapped", True, "sft", "cpu", "sdpa").trainer_args()["packing_strategy"] == "wrapped"
    assert choose_batching("off", True, "sft", "cuda", "flash_attention_2").mode == "grouped"
    assert choose_batching("off", False, "sft", "cuda", "flash_attention_2").mode == "padded"
    assert choose_batching("auto", False, "sft", "cpu", "sdpa", random_padding=0.5).mode == "padded"
    with pytest.raises(ValueError, match="objective = sft only"):
        choose_batching("on", True, "dpo", "cpu", "sdpa")
    assert "gpt_oss" in PACKING_UNSAFE_FAMILIES
    with pytest.raises(ValueError, match="gpt_oss"):
        choose_batching("on", True, "sft", "cuda", "flash_attention_2", "gpt_oss")


def test_preference_objectives_pad():
    plan = choose_batching("auto", True, "kto", "cuda", "flash_attention_2", "llama", 0.6)
    assert plan.mode == "padded" and "KTO" in plan.reason


def test_padding_share_of_random_and_grouped_batches():
    rng = random.Random(0)
    lengths = [rng.choice([20, 40, 300, 500]) for _ in range(800)]
    random_share = padding_share(lengths, 8, "padded", 512)
    grouped_share = padding_share(lengths, 8, "grouped", 512)
    assert random_share > 0.4 and grouped_share < 0.05
    assert padding_share(lengths, 8, "packed", 512) == 0.0
    assert padding_share([10] * 64, 8, "padded", 512) == 0.0
    # truncation: lengths past max_length count as max_length
    assert padding_share([1000, 100], 2, "padded", 100) == 0.0


def test_grouped_order_keeps_every_example_once_and_puts_the_longest_step_first():
    lengths = list(range(1, 401))
    batches = batch_order(lengths, 4, "grouped", seed=3, accumulation=2)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(400))
    within = [lengths[i] for i in batches[0]]
    assert within == sorted(within, reverse=True)


def test_liger_on_cuda_for_supported_families_when_installed():
    assert choose_kernels("auto", "cuda", "qwen3", installed=True).liger
    assert not choose_kernels("auto", "cpu", "qwen3", installed=True).liger
    assert "not installed" in choose_kernels("auto", "cuda", "qwen3", installed=False).reason
    assert "gpt_neox" not in LIGER_FAMILIES and not choose_kernels("auto", "cuda", "gpt_neox", installed=True).liger
    assert not choose_kernels("auto", "cuda", "llama", installed=True, objective="orpo").liger
    assert choose_kernels("on", "cuda", "llama", installed=True).reason == "training.liger = on"
    with pytest.raises(ValueError, match="CUDA only"):
        choose_kernels("on", "cpu", "llama", installed=True)


def _config(tmp_path: Path, data: str = "", training: str = ""):
    (tmp_path / "t.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    (tmp_path / "run.toml").write_text(f'[model]\nname = "tiny"\n[data]\ntrain = "t.jsonl"\n{data}\n[training]\n{training}\n')
    return load_run_config(tmp_path / "run.toml").config


def test_config_reads_booleans_and_words(tmp_path):
    assert _config(tmp_path).data.packing == "auto" and _config(tmp_path).training.liger == "auto"
    assert _config(tmp_path, "packing = true").data.packing == "on"
    assert _config(tmp_path, "packing = false").data.packing == "off"
    assert _config(tmp_path, 'packing = "wrapped"').data.packing == "wrapped"
    assert _config(tmp_path, training="liger = false").training.liger == "off"
    with pytest.raises(UserError, match=r"data.packing must be one of auto, on, off, wrapped \(or true/false\)"):
        _config(tmp_path, 'packing = "yes"')
    with pytest.raises(UserError, match=r"must be one of auto, on, off, wrapped \(or true/false\), got 1"):
        _config(tmp_path, "packing = 1")


def test_packing_a_preference_run_is_refused_when_the_config_loads(tmp_path):
    _config(tmp_path)  # writes the files
    with pytest.raises(UserError, match="packs SFT rows, but method.objective is 'dpo'") as raised:
        load_run_config(tmp_path / "run.toml", ["data.packing=on", "method.objective=dpo"])
    assert raised.value.where == "--set"


def test_speed_plan_names_the_field_it_refuses(tmp_path):
    with pytest.raises(UserError) as raised:
        speed_plan(_config(tmp_path, training='liger = "on"'), "cpu", "llama", installed=True)
    assert raised.value.where == "training.liger" and "CUDA only" in str(raised.value)
    config = _config(tmp_path, training="micro_batch_size = 8\ngradient_accumulation_steps = 1\nmax_seq_length = 512")
    lengths = [20, 500] * 100
    plan = speed_plan(config, "cpu", "llama", installed=False, lengths=lengths)
    assert plan.batching == BatchingPlan("grouped", "auto: sdpa on CPU, packing measured slower")
    line = batching_line(config, plan, lengths)
    assert line == "batching: length-grouped padded batches (auto: sdpa on CPU, packing measured slower); 16% padding (random order: 48%)"


def _model_folder(tmp_path: Path, **config) -> Path:
    import json
    import struct

    model = tmp_path / "model"
    model.mkdir()
    base = dict(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=128, vocab_size=500)
    (model / "config.json").write_text(json.dumps(base | config))
    (model / "tokenizer.json").write_text("{}")  # not a tokenizer: preflight counts tokens approximately then
    (model / "model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
    rows = [{"instruction": "a " * (1 + (i % 3) * 200), "output": "b"} for i in range(40)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "run.toml").write_text('[model]\nname = "model"\n[data]\ntrain = "d.jsonl"\n[training]\nmicro_batch_size = 8\n')
    return model


def _preflight(tmp_path: Path, overrides=()):
    from sft_tui.core.runs.preflight import preflight
    from sft_tui.core.runs.store import RunStore
    from sft_tui.core.runs.sysmon import SystemSampler
    from tests.unit.test_sysmon import FakeNvml

    notes: list[str] = []
    preflight(tmp_path / "run.toml", list(overrides), False, notes.append, store=RunStore(tmp_path / "home"),
              sampler=SystemSampler(FakeNvml(fail_init="no GPU")))
    return notes


def test_preflight_names_the_batching_and_kernels_before_the_run(tmp_path):
    _model_folder(tmp_path)
    notes = _preflight(tmp_path)
    batching = next(n for n in notes if n.startswith("batching:"))
    assert batching.startswith("batching: length-grouped padded batches (auto: sdpa on CPU") and "(random order:" in batching
    assert "kernels: PyTorch + TRL's fused LM head (auto: Liger runs on CUDA only)" in notes
    with pytest.raises(UserError, match="CUDA only"):
        _preflight(tmp_path, ["training.liger=on"])
    # rows longer than max_seq_length are named before the launch (the trainer cuts them without a word)
    cut = [n for n in _preflight(tmp_path, ["training.max_seq_length=64"]) if "will be cut" in n]
    assert cut and cut[0].startswith("note: about ") and "training.max_seq_length = 64 tokens" in cut[0]


def test_preflight_refuses_an_image_text_checkpoint_in_one_line(tmp_path):
    text = dict(model_type="mistral", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=128, vocab_size=500, head_dim=16)
    _model_folder(tmp_path, model_type="mistral3", text_config=text)
    with pytest.raises(UserError, match="Mistral 3 image-text model") as raised:
        _preflight(tmp_path)
    assert raised.value.where == "model.name"


def test_estimate_with_a_config_counts_the_padding_its_batching_leaves_on_the_data(tmp_path):
    from sft_tui.cli.estimate import data_padding
    from sft_tui.core.estimate.memory import settings_from_run_config

    rows = [{"instruction": "word " * (5 + (i % 4) * 150), "output": "ok"} for i in range(800)]
    import json

    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "run.toml").write_text('[model]\nname = "qwen2.5-1.5b"\n[data]\ntrain = "t.jsonl"\n[training]\n'
                                       'micro_batch_size = 8\ngradient_accumulation_steps = 1\nmax_seq_length = 2048\n')
    config = load_run_config(tmp_path / "run.toml").config
    grouped = data_padding(config, settings_from_run_config(config), None)
    assert grouped.padded and 0.0 < grouped.padding_share < 0.1  # length-grouped: little padding left
    forced = load_run_config(tmp_path / "run.toml", ["data.packing=off", "data.group_by_length=false"]).config
    assert data_padding(forced, settings_from_run_config(forced), None).padding_share > 0.4  # random order pads heavily
    packed = load_run_config(tmp_path / "run.toml", ["data.packing=on"]).config
    assert data_padding(packed, settings_from_run_config(packed), None).padding_share == 0.0
