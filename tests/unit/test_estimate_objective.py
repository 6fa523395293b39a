"""The estimator per training objective: DPO/ORPO's rejected answers, DPO/KTO's reference, checked by hand on a tiny model."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sft_tui.core.estimate import fit
from sft_tui.core.estimate import memory as est
from sft_tui.core.models.modelspec import ModelSpec

GIB = 1024**3
# a Llama-shaped model small enough to count by hand: q 64->64, k/v 64->32, o 64->64, gate/up 64->128, down 128->64
TINY = ModelSpec(name="tiny", family="llama", source="test", hidden_size=64, num_layers=2, num_attention_heads=4, num_kv_heads=2,
                 head_dim=16, intermediate_size=128, vocab_size=50_000, tie_word_embeddings=False, max_position_embeddings=4096,
                 torch_dtype="bfloat16", qkv_bias=False, o_bias=False, mlp_bias=False)
# LoRA r=16 on q and v, no dropout, bf16, checkpointing, padded batches of 2 x 32 tokens
BASE = est.TrainSettings(method="lora", seq_len=32, batch_size=2, lora_r=16, lora_targets=("q_proj", "v_proj"), lora_dropout=0.0)
T = 2 * 32  # tokens of one side (chosen or rejected) per micro-batch
LORA_PARAMS = 2 * 16 * ((64 + 64) + (64 + 32))  # layers x r x (in + out) for q and v = 7,168
SLACK = est.DEFAULT_CALIBRATION.allocator_slack


def phases(e: est.MemoryEstimate) -> dict[str, float]:
    return dict(e.phase_bytes)


def by_name(e: est.MemoryEstimate) -> dict[str, float]:
    return {t.name: t.bytes for t in e.terms}


def test_the_tiny_model_counts_as_the_hand_calculation_says():
    # one layer's saved bytes per token (LoRA, SDPA with a padding mask, bf16): norms 2 x (4h + 4) = 520; attention
    # 2 x 2 x q + k/v repeated 2 x 2 x q + log-sum-exp 4 x heads + float mask 2 x seq = 256 + 256 + 16 + 64 = 592;
    # gated MLP 3 x 2 x 128 = 768; q and v keep their own 16-bit inputs 2 x (64 + 64) = 256; LoRA B inputs 2 x 2 x r x 2 = 128
    assert est._layer_activation_bytes_per_token(TINY, BASE, est.resolve_targets(TINY, BASE.lora_targets), 2) == 2264
    assert est.lora_parameter_count(TINY, BASE) == LORA_PARAMS


# TRL 1.16's fused LM head on N scored positions (LoRA, bf16: no casts), lm_head.py: a min(N, 4096) x 32768 bf16 tile;
# per token the compacted 16-bit hidden state 2 x 64 and, saved, int64 target 8 + log_z 4 + entropy 4 + mask 1 = 145;
# its backward adds the fp32 gradient of the log-probs 4 and of the hidden states 4 x 64, cast back to bf16 2 x 64
def tile(n: int) -> int:
    return min(n, 4096) * 32768 * 2


HEAD_BACKWARD_PER_TOKEN = 145 + 4 + 4 * 64 + 2 * 64  # 533


def test_dpo_is_sft_plus_the_rejected_answers_activations_and_logits():
    sft = est.estimate_memory(TINY, BASE)
    dpo = est.estimate_memory(TINY, replace(BASE, objective="dpo"))
    # the backward starts with the head's own backward: its tile (64 x 32768 x 2 B = 4 MiB) outweighs recomputing a
    # layer of this tiny model (2264 B/token), so that moment is the phase's peak, before any layer is recomputed
    assert sft.phase == "backward start"
    assert "LM head's backward runs first" in next(t.explanation for t in sft.terms if t.key == "activations")
    # rejected answers at that moment: 2 layers x 2h kept + the final norm's fp32 input 4h per token, over T more tokens,
    # and one more boolean mask (2 x 32 x 32)
    rejected_activations = T * (2 * 2 * 64 + 4 * 64) + 2 * 32 * 32
    # chosen and rejected go through one fused head call of 2T positions: the tile doubles (2T < 4096) with the per-token part
    rejected_logits = T * HEAD_BACKWARD_PER_TOKEN + tile(2 * T) - tile(T)
    assert rejected_activations == 34_816 and rejected_logits == 4_228_416
    named = by_name(dpo)
    assert named["rejected answers' activations"] > 0 and named["rejected answers' logits"] > 0
    # the rest of that phase is SFT's; the allocator's slack grows with the temporary memory
    assert phases(dpo)["backward start"] - phases(sft)["backward start"] == pytest.approx((1 + SLACK) * (rejected_activations + rejected_logits))
    # ORPO builds the full logits: its rejected answers add T x vocab x (bf16 logits + fp32 log-probs + two fp32 gradients)
    orpo = by_name(est.estimate_memory(TINY, replace(BASE, objective="orpo")))
    assert orpo["rejected answers' logits"] == T * 50_000 * (2 + 12)


def test_dpo_reference_forward_with_lora_is_a_working_set_and_no_weights():
    dpo = est.estimate_memory(TINY, replace(BASE, objective="dpo"))
    # the peak is now the reference forward (its own 128-token tile beside what the policy kept); no resident copy under LoRA
    assert dpo.phase == "reference forward"
    assert "reference forward (no-grad)" in by_name(dpo) and not any(t.label.startswith("reference model") for t in dpo.terms)
    assert any("adapter switched off" in a for a in dpo.assumptions)
    # the reference forward (no grad) on 2 x 2 x 32 = 128 tokens: per token, residual in and out + normed input (2+2+2) x 64
    # + the larger of attention (q, repeated k/v, output: 2 x 4 x 64 = 512) and the MLP (2 x 3 x 128 = 768) = 1152;
    # the boolean mask 4 x 32 x 32; TRL's fused head: one 128 x 32768 bf16 tile + per token its compacted 16-bit input,
    # int64 target, bool mask and 7 fp32 running statistics
    work = 1152 * 128 + 4 * 32 * 32 + tile(128) + 128 * (2 * 64 + 8 + 1 + 28)
    assert work == 8_561_280
    resident, counted, text = est._reference_terms(TINY, replace(BASE, objective="dpo"), LORA_PARAMS, 73_728, 2, 0.0)
    assert resident == [] and counted == work and "chosen + rejected" in text
    # that phase holds what the policy's forward kept (its forward end minus autocast's LoRA weight copies, 2 B per param),
    # and of the policy's head what it saved plus DPO's four per-token outputs (145 + 13 = 158 per position) instead of the
    # forward's working set (its 16-bit input, target, mask, statistics: 165 per position, and its tile)
    p = phases(dpo)
    head_change = 128 * (158 - 165) - tile(128)
    assert p["reference forward"] - p["forward end"] == pytest.approx((1 + SLACK) * (work - 2 * LORA_PARAMS + head_change))
    assert "reference forward" not in phases(est.estimate_memory(TINY, BASE))


def test_full_fine_tuning_holds_a_frozen_fp32_reference_copy_and_lora_from_an_adapter_a_copy_of_it():
    total = TINY.count_parameters().total
    full = est.estimate_memory(TINY, replace(BASE, method="full", objective="dpo"))
    assert by_name(full)["reference model (frozen fp32 copy)"] == 4 * total
    sft_full = est.estimate_memory(TINY, replace(BASE, method="full"))
    # resident in every phase: the optimizer step (no activations) differs by exactly the copy
    assert phases(full)["optimizer step"] - phases(sft_full)["optimizer step"] == 4 * total
    from_adapter = est.estimate_memory(TINY, replace(BASE, objective="dpo", reference_adapter=True))
    assert by_name(from_adapter)["reference adapter (frozen copy)"] == 4 * LORA_PARAMS
    # full fine-tuning's reference forward also holds autocast's bf16 copies of its block weights (they require grad)
    block_linear = 2 * (64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 3 * 64 * 128)
    _, lora_work, _ = est._reference_terms(TINY, replace(BASE, objective="dpo"), LORA_PARAMS, block_linear, 2, 0.0)
    _, full_work, text = est._reference_terms(TINY, replace(BASE, method="full", objective="dpo"), total, block_linear, 2, 0.0)
    fp32_residual = 128 * 2 * 2 * 64 + 128 * 2 * 64  # residual in/out 4 B instead of 2, and the head's fp32 input
    # the fused head casts the fp32 head weight 32768 rows at a time, and the fp32 hidden states 128 tokens at a time, to bf16
    casts = 32768 * 64 * 2 + 128 * 64 * 2
    assert full_work - lora_work == 2 * block_linear + fp32_residual + casts and "copies of the reference's weights" in text


def test_orpo_has_no_reference_and_kto_no_rejected_answers():
    orpo = est.estimate_memory(TINY, replace(BASE, objective="orpo"))
    assert orpo.breakdown_gib()["reference"] == 0 and "reference forward" not in phases(orpo)
    assert "rejected answers' activations" in by_name(orpo) and any("ORPO needs no reference" in a for a in orpo.assumptions)
    kto = est.estimate_memory(TINY, replace(BASE, objective="kto"))
    sft = est.estimate_memory(TINY, BASE)
    assert not any(t.label.startswith("rejected") for t in kto.terms) and phases(kto)["backward start"] == phases(sft)["backward start"]
    # KTO's reference forward runs one side's tokens (2 x 32): the answers, then the KL pairs, one forward at a time
    _, work, text = est._reference_terms(TINY, replace(BASE, objective="kto"), LORA_PARAMS, 73_728, 2, 0.0)
    assert work == 1152 * 64 + 2 * 32 * 32 + tile(64) + 64 * (2 * 64 + 8 + 1 + 28)
    assert "KL term" in text and "3 such forwards" in text


def test_time_counts_both_answers_and_the_forwards_without_gradients():
    train = fit._trained_flops_per_token(TINY, BASE)
    forward = fit._forward_flops_per_token(TINY, BASE)
    # forward: 2 x block weights + causal attention 2 x seq x heads x head_dim per layer + 2 x the head
    assert forward == 2 * 73_728 + 2 * 2 * 32 * 4 * 16 + 2 * 50_000 * 64
    assert fit.training_flops_per_token(TINY, BASE) == train
    assert fit.training_flops_per_token(TINY, replace(BASE, objective="dpo")) == 2 * train + 2 * forward  # reference on both answers
    assert fit.training_flops_per_token(TINY, replace(BASE, objective="orpo")) == 2 * train
    assert fit.training_flops_per_token(TINY, replace(BASE, objective="kto")) == train + 3 * forward  # reference + two KL forwards
    assert fit.training_flops_per_token(TINY, replace(BASE, objective="kto", loss_type="apo_zero_unpaired")) == train + forward
    assert "+ 2 forwards without gradients" in fit.objective_time_note(replace(BASE, objective="dpo"))


def test_kto_needs_a_micro_batch_of_two():
    gpu = fit.GpuTarget("A100", 80.0, None, "--gpu-gib")
    assert any("at least 2" in n for n in fit.build_estimate(TINY, replace(BASE, objective="kto", batch_size=1), gpu).notes)
    assert not any("at least 2" in n for n in fit.build_estimate(TINY, replace(BASE, objective="kto"), gpu).notes)
    assert not any("at least 2" in n for n in fit.build_estimate(TINY, replace(BASE, objective="kto", batch_size=1,
                                                                                  loss_type="apo_zero_unpaired"), gpu).notes)
    changes = [c for c, _ in fit._candidate_changes(replace(BASE, objective="kto", batch_size=4))]
    assert "micro-batch 2 with gradient accumulation 2 (same effective batch)" in changes


def test_settings_follow_the_run_configs_objective_and_starting_adapter(tmp_path):
    from sft_tui.core.config.load import load_run_config

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "target_modules": ["v_proj", "q_proj"]}))
    path = tmp_path / "run.toml"
    path.write_text(f'recipe = "lora"\n[model]\nname = "qwen2.5-0.5b"\nadapter = "{adapter}"\n[data]\ntrain = "x.jsonl"\n'
                    '[method]\nobjective = "kto"\nloss_type = "apo_zero_unpaired"\n')
    s = est.settings_from_run_config(load_run_config(path).config)
    assert (s.objective, s.loss_type, s.reference_adapter, s.lora_r, s.lora_targets) == ("kto", "apo_zero_unpaired", True, 8, ("q_proj", "v_proj"))
    assert s.padded  # the preference trainers pad (packing them is refused when the config loads: test_batching.py)
    path.write_text('recipe = "lora"\n[model]\nname = "qwen2.5-0.5b"\n[data]\ntrain = "x.jsonl"\n[method]\nobjective = "dpo"\n')
    s = est.settings_from_run_config(load_run_config(path).config)
    assert (s.objective, s.reference_adapter, s.lora_r) == ("dpo", False, 16)


def test_cli_estimate_with_objective_dpo_names_the_terms(cli):
    out = cli("estimate", "qwen2.5-1.5b", "--objective", "dpo", "--gpu", "4090").out
    assert "qwen2.5-1.5b · dpo · lora" in out
    assert "rejected answers' activations:" in out and "rejected answers' logits:" in out
    assert "; reference forward " in out and "base with the LoRA adapter switched off" in out
    assert "DPO: chosen and rejected answers both trained (2x) + 2 forwards without gradients" in out
    dpo = json.loads(cli("estimate", "qwen2.5-1.5b", "--objective", "dpo", "--json").out)
    sft = json.loads(cli("estimate", "qwen2.5-1.5b", "--json").out)
    assert (dpo["objective"], sft["objective"]) == ("dpo", "sft")
    extra = {t["name"]: t["gib"] for t in dpo["terms"] if t["name"].startswith("rejected")}
    assert set(extra) == {"rejected answers' activations", "rejected answers' logits"}
    assert dpo["peak_gib"] > sft["peak_gib"] + sum(extra.values()) - 0.01  # the rest of the difference is allocator slack
    assert "reference forward" in dpo["phases_gib"] and "reference forward" not in sft["phases_gib"]
    full = json.loads(cli("estimate", "qwen2.5-1.5b", "--objective", "dpo", "--method", "full", "--json").out)
    assert full["breakdown_gib"]["reference"] > 5.7  # a frozen fp32 copy of 1.54B params, at least
    result = cli("estimate", "qwen2.5-1.5b", "--objective", "dpx")
    assert result.code == 2 and "objective must be one of sft, dpo, kto, orpo" in result.err and "did you mean 'dpo'" in result.err
