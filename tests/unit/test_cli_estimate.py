"""`sft-tui estimate` end to end: readable report, JSON contract, run configs, GPU sources, bad input."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_sysmon import FakeNvml


def test_json_report_against_a_named_gpu(cli):
    result = cli("estimate", "llama3.1-8b", "--method", "qlora", "--gpu", "4090", "--tokens", "1e7", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["model"] == "llama3.1-8b" and data["method"] == "qlora" and data["params"] == 8_030_261_248
    assert data["gpu_gib"] == 24.0 and data["fits"] is True and data["max_batch_size"] >= 1
    assert data["tokens_per_s"] > 0 and data["eta_s"] == pytest.approx(1e7 / data["tokens_per_s"], rel=1e-3)
    assert abs(sum(data["breakdown_gib"].values()) - data["peak_gib"]) < 0.01


def test_readable_report_has_a_bar_per_term_and_the_verdict(cli):
    out = cli("estimate", "qwen2.5-7b", "--method", "full", "--gpu", "a100-80gb").out
    for key in ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "overhead", "peak"):
        assert f"  {key}" in out
    assert "does NOT fit" in out and "to make it fit:" in out and "assumptions:" in out


def test_gpu_gib_and_no_gpu(cli):
    data = json.loads(cli("estimate", "smollm2-135m", "--gpu-gib", "8", "--json").out)
    assert data["gpu_gib"] == 8.0 and data["fits"] is True and data["tokens_per_s"] is None  # memory only
    data = json.loads(cli("estimate", "smollm2-135m", "--json").out)  # this machine has no GPU
    assert data["gpu_gib"] is None and data["fits"] is None and data["max_seq_len"] is None


def test_detected_gpu_comes_from_nvml():
    from sft_tui.cli.estimate import resolve_gpu
    from sft_tui.core.runs.sysmon import SystemSampler

    target = resolve_gpu(None, None, sampler=SystemSampler(FakeNvml()))
    assert target.name == "NVIDIA A100-SXM4-80GB" and target.memory_gib == 80.0
    assert target.info.key == "a100-80gb" and target.source == "detected"


def test_run_config_supplies_the_settings_and_options_override(cli, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('recipe = "qlora"\n[model]\nname = "qwen2.5-1.5b"\n[data]\ntrain = "x.jsonl"\n[training]\nmax_seq_length = 3072\nmicro_batch_size = 2\n')
    data = json.loads(cli("estimate", "--config", str(path), "--gpu", "l4", "--json").out)
    assert (data["model"], data["method"], data["seq_len"], data["batch_size"]) == ("qwen2.5-1.5b", "qlora", 3072, 2)
    assert data["settings"]["optimizer"] == "paged_adamw_8bit"
    data = json.loads(cli("estimate", "--config", str(path), "--seq-len", "512", "--json").out)
    assert data["seq_len"] == 512 and data["method"] == "qlora"


def _one_line(result, needle):
    assert result.code == 2, result
    assert result.err.count("\n") == 1 and result.err.startswith("error: ") and needle in result.err
    assert result.out == ""


def test_bad_input_ends_in_one_line(cli, tmp_path):
    _one_line(cli("estimate", "llama-9000"), "unknown model 'llama-9000'")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 8, "vocab_size": 10}')
    _one_line(cli("estimate", str(folder)), 'missing field "hidden_size"')
    _one_line(cli("estimate", "qwen2.5-7b", "--seq-len", "0"), "seq_len must be at least 1")
    _one_line(cli("estimate", "qwen2.5-7b", "--gpu", "rtx9090"), "unknown GPU 'rtx9090'")
    _one_line(cli("estimate", "qwen2.5-7b", "--gpu-gib", "-1"), "--gpu-gib must be more than 0")
    _one_line(cli("estimate", "qwen2.5-7b", "--method", "dora"), "method must be one of full, lora, qlora")
    _one_line(cli("estimate", "phi3-mini", "--lora-targets", "q,v"), "LoRA target 'q' is not a linear layer of phi3-mini")
    _one_line(cli("estimate"), "no model given")
