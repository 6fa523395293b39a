"""Liger Kernel's layer kernels, batching and padding in the estimate: what Liger saves, what a run config's speed plan says.

Liger's kernels need CUDA/Triton, so what they keep for backward is read from liger-kernel
0.8.5's ops (rms_norm.py, swiglu.py, geglu.py, rope.py; see lm_head.py) and counted by hand
here on a tiny Llama-shaped model.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sft_tui.core.config.load import load_run_config
from sft_tui.core.data.batching import BatchingPlan
from sft_tui.core.estimate import fit
from sft_tui.core.estimate import memory as est
from sft_tui.core.models.gpus import gpu_by_name
from sft_tui.core.models.kernels import KernelPlan
from sft_tui.core.models.modelspec import ModelSpec
from sft_tui.core.runs.speed import SpeedPlan

# q 64->64, k/v 64->32, o 64->64, gate/up 64->128, down 128->64
TINY = ModelSpec(name="tiny", family="llama", source="test", hidden_size=64, num_layers=2, num_attention_heads=4, num_kv_heads=2,
                 head_dim=16, intermediate_size=128, vocab_size=50_000, tie_word_embeddings=False, max_position_embeddings=4096,
                 torch_dtype="bfloat16", qkv_bias=False, o_bias=False, mlp_bias=False)
BASE = est.TrainSettings(method="lora", seq_len=32, batch_size=2, lora_r=16, lora_targets=("q_proj", "v_proj"), lora_dropout=0.0,
                         gradient_checkpointing=False)


def per_layer(s: est.TrainSettings, spec: ModelSpec = TINY) -> float:
    return est._layer_activation_bytes_per_token(spec, s, spec.linear_shapes() if s.method == "full" else est.resolve_targets(spec, s.lora_targets),
                                                 4 if s.precision == "fp32" else 2)


def test_liger_keeps_less_per_layer_by_the_hand_count():
    # LoRA, bf16 residual: transformers' RMSNorm keeps an fp32 copy of its input (4h) + rsqrt; Liger's keeps the bf16 input
    # itself (2h) + an fp32 rstd: 2 norms x 2 x 64 = 256 less. SwiGLU: gate, SiLU(gate), up (3 x 2 x 128) -> gate, up: 256 less
    assert per_layer(BASE) == 2264
    assert per_layer(replace(BASE, liger=True)) == 2264 - 256 - 256
    # full fine-tuning, fp32 residual: transformers keeps the fp32 input and the fp32 normalised value (its weight trains),
    # Liger the input and the rstd only: 2 norms x 4 x 64 = 512 less; the MLP as above
    full = replace(BASE, method="full")
    assert per_layer(full) - per_layer(replace(full, liger=True)) == 512 + 256


def activations(e: est.MemoryEstimate) -> float:
    return sum(t.bytes for t in e.terms if t.key == "activations")


def test_activations_are_smaller_with_liger_and_the_logits_term_stays_tiled():
    for s in (BASE, replace(BASE, gradient_checkpointing=True), replace(BASE, method="full"), replace(BASE, objective="dpo")):
        off, on = est.estimate_memory(TINY, s), est.estimate_memory(TINY, replace(s, liger=True))
        # the forward's end and the backward's start hold the activations (full fine-tuning peaks at the optimizer step)
        for phase in ("forward end", "backward start"):
            assert dict(on.phase_bytes)[phase] < dict(off.phase_bytes)[phase], (s, phase)
        if s.method != "full":
            assert activations(on) < activations(off) and on.peak_bytes < off.peak_bytes
        logits = sum(t.bytes for t in on.terms if t.key == "logits")
        assert logits < 2 * s.batch_size * s.seq_len * TINY.vocab_size  # never a full tokens x vocab tensor
        assert any(a.startswith("Liger kernels:") for a in on.assumptions)


def test_liger_changes_nothing_where_it_does_not_apply():
    neox, s = replace(TINY, family="gpt_neox"), replace(BASE, lora_targets=("all-linear",))  # liger-kernel 0.8.5 has no kernels for it
    e = est.estimate_memory(neox, replace(s, liger=True))
    assert e.peak_bytes == est.estimate_memory(neox, s).peak_bytes
    assert any("no kernels for gpt_neox" in a for a in e.assumptions)
    orpo = est.estimate_memory(TINY, replace(BASE, objective="orpo", liger=True))  # TRL's experimental ORPO trainer skips it
    assert orpo.peak_bytes == est.estimate_memory(TINY, replace(BASE, objective="orpo")).peak_bytes
    assert any("ORPO's trainer does not apply Liger" in a for a in orpo.assumptions)


def test_the_batching_assumption_is_stated():
    assert "padded batches with an attention mask, every row counted at seq_len" in est.estimate_memory(TINY, BASE).assumptions
    assert "packed rows, no padding mask" in est.estimate_memory(TINY, replace(BASE, padded=False)).assumptions


# --- time: the compute rate and the useful one ---------------------------------------------------------------------

def test_padding_slows_the_eta_not_the_compute_rate():
    gpu = gpu_by_name("4090")
    plain = fit.estimate_time(TINY, BASE, gpu, tokens=1e9)
    padded = fit.estimate_time(TINY, replace(BASE, padding_share=0.12), gpu, tokens=1e9)
    assert padded.tokens_per_s == plain.tokens_per_s
    assert padded.useful_tokens_per_s == pytest.approx(0.88 * plain.tokens_per_s)
    assert padded.eta_s == pytest.approx(plain.eta_s / 0.88)
    assert padded.padding_note().startswith("12% of batch tokens are padding")
    assert plain.padding_note() == ""
    out = fit.build_estimate(TINY, replace(BASE, padding_share=0.12), fit.GpuTarget(gpu.name, gpu.memory_gib, gpu, "--gpu"), 1e9).to_json()
    out = json.loads(json.dumps(out))
    assert out["padding_share"] == 0.12 and out["useful_tokens_per_s"] == pytest.approx(0.88 * out["tokens_per_s"], rel=1e-3)
    assert any("12% of batch tokens are padding" in a for a in out["assumptions"])
    with pytest.raises(Exception, match="padding_share"):
        est.estimate_memory(TINY, replace(BASE, padding_share=1.0))


# --- a run config's speed plan -------------------------------------------------------------------------------------

def config(tmp_path, data: str = "", training: str = "", method: str = ""):
    path = tmp_path / "run.toml"
    path.write_text(f'[model]\nname = "qwen2.5-0.5b"\n[method]\n{method}[data]\ntrain = "x.jsonl"\n{data}[training]\n{training}')
    return load_run_config(path).config


def test_settings_from_a_run_config_follow_its_speed_plan(tmp_path):
    # packing "auto" (the default, a truthy string): SDPA on CUDA gets length-grouped padded batches, so a padding mask
    auto = est.settings_from_run_config(config(tmp_path))
    assert auto.padded is True and auto.liger is False
    assert est.settings_from_run_config(config(tmp_path, training='attention = "flash_attention_2"\n')).padded is False  # packs
    # packed rows under SDPA still carry a mask (block-diagonal, built from the position ids); flash-attention needs none
    assert est.settings_from_run_config(config(tmp_path, data='packing = "on"\n')).padded is True
    assert est.settings_from_run_config(config(tmp_path, data='packing = "on"\n', training='attention = "flash_attention_2"\n')).padded is False
    assert est.settings_from_run_config(config(tmp_path, data="packing = false\n")).padded is True
    # Liger: only when forced on (with no model family known, speed_plan would refuse "on": never raised here)
    assert est.settings_from_run_config(config(tmp_path, training='liger = "on"\n')).liger is True
    assert est.settings_from_run_config(config(tmp_path, training='liger = "auto"\n')).liger is False
    # the preference trainers pad their pairs
    assert est.settings_from_run_config(config(tmp_path, method='objective = "dpo"\n')).padded is True
    # a resolved plan wins
    plan = SpeedPlan(BatchingPlan("packed", "test"), KernelPlan(True, "test"))
    from_plan = est.settings_from_run_config(config(tmp_path, training='attention = "flash_attention_2"\n'), plan=plan)
    assert from_plan.padded is False and from_plan.liger is True


def test_the_cli_takes_liger_and_states_the_assumptions(cli, tmp_path):
    out = cli("estimate", "qwen2.5-0.5b", "--liger", "--gpu-gib", "24").out
    assert "Liger kernels:" in out and "padded batches with an attention mask" in out and " · Liger" in out
    packed = cli("estimate", "qwen2.5-0.5b", "--packing", "--attention", "flash_attention_2", "--gpu-gib", "24").out
    assert "packed rows, no padding mask" in packed and "Liger kernels:" not in packed
    masked = cli("estimate", "qwen2.5-0.5b", "--packing", "--gpu-gib", "24").out  # SDPA: a block-diagonal mask stays
    assert "packed rows, no padding mask" not in masked
    refused = cli("estimate", "qwen2.5-0.5b", "--packing", "--objective", "dpo")
    assert refused.code == 2 and "TRL's DPO trainer pads its pairs" in refused.err
    path = tmp_path / "run.toml"
    path.write_text('[model]\nname = "qwen2.5-0.5b"\n[data]\ntrain = "x.jsonl"\n[training]\nliger = "on"\n')
    data = json.loads(cli("estimate", "--config", str(path), "--json").out)
    assert data["settings"]["liger"] is True
    assert json.loads(cli("estimate", "--config", str(path), "--no-liger", "--json").out)["settings"]["liger"] is False
