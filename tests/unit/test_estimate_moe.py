"""Mixture-of-experts in the estimator: resident weights, per-expert LoRA, top-k activations, time from active params.

The tiny model below is counted by hand; the CPU checks build tiny qwen3_moe and mixtral
models with transformers 5 and peft and compare parameters, LoRA parameters and the
tensors autograd saves with what the estimator says.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sft_tui.core.errors import UserError
from sft_tui.core.estimate import fit, moe_terms, report
from sft_tui.core.estimate import memory as est
from sft_tui.core.models import modelspec
from sft_tui.core.models.gpus import gpu_by_name
from sft_tui.core.models.modelspec import ModelSpec
from sft_tui.core.models.moe import MoeShape

GIB = 1024**3


@pytest.fixture(autouse=True)
def moe_families(monkeypatch):
    """Until modelspec knows the MoE families, give them their dense relatives' traits (a no-op once it does)."""
    for family, like in (("mixtral", "mistral"), ("qwen3_moe", "qwen3")):
        if family not in modelspec.FAMILIES:
            monkeypatch.setitem(modelspec.FAMILIES, family, modelspec.FAMILIES[like])


def tiny(num_experts: int = 4, top_k: int = 2, fused: bool = True, family: str = "mixtral") -> ModelSpec:
    # per layer: q 64->64, k/v 64->32, o 64->64; router 64->E; each expert gate_up 64->64 (2 x 32) and down 32->64
    return ModelSpec(name="tiny-moe", family=family, source="test", hidden_size=64, num_layers=2, num_attention_heads=4, num_kv_heads=2,
                     head_dim=16, intermediate_size=32, vocab_size=1000, tie_word_embeddings=False, max_position_embeddings=4096,
                     torch_dtype="bfloat16", qkv_bias=False, o_bias=False, mlp_bias=False,
                     moe=MoeShape(num_experts, top_k, 32, fused_experts=fused))


LORA = est.TrainSettings(method="lora", seq_len=32, batch_size=2, lora_r=4, lora_dropout=0.0, gradient_checkpointing=False)


def test_resident_and_active_counts_by_hand():
    counts = moe_terms.moe_counts(tiny())
    # per layer: attention 12,288 + router 256 + 4 experts x (4,096 + 2,048) + two norms 128 = 37,248; x 2 layers,
    # + embedding and head 2 x 64,000 + final norm 64
    assert counts.resident == 2 * 37_248 + 128_000 + 64 == 202_560
    assert counts.experts == 2 * 4 * 6_144
    assert counts.active == counts.resident - 2 * 2 * 6_144  # each token skips 2 of the 4 experts in both layers
    assert counts.line() == "0.2M resident, 0.2M active per token (4 experts, 2 per token)"
    assert moe_terms.moe_counts(tiny().__class__(**{**tiny().__dict__, "moe": None})) is None


def test_per_expert_lora_counts_exactly_what_peft_builds():
    # all-linear on mixtral (peft 0.21.2 maps w1/w3/w2/gate onto the fused stacks): attention r x (in + out)
    # 512 + 384 + 384 + 512; router 4 x (64 + 4); gate_up at rank 2r for each of 4 experts 4 x 8 x (64 + 64); down 4 x 4 x (32 + 64)
    assert est.lora_parameter_count(tiny(), LORA) == 2 * (1_792 + 272 + 4_096 + 1_536) == 15_392
    # named attention targets: no expert adapters
    assert est.lora_parameter_count(tiny(), replace(LORA, lora_targets=("q_proj", "v_proj"))) == 2 * (512 + 384)
    # per-expert nn.Linear (transformers 4 layout): one adapter per expert and projection, rank r
    per_expert = 4 * 4 * ((64 + 32) + (64 + 32) + (32 + 64))
    assert est.lora_parameter_count(tiny(fused=False), LORA) == 2 * (1_792 + 272 + per_expert)


def test_gpt_oss_style_fused_experts_get_attention_only_lora():
    spec = replace(tiny(), family="qwen3")  # a family peft has no v4 expert mapping for, like gpt_oss
    assert est.lora_parameter_count(spec, LORA) == 2 * 1_792
    with pytest.raises(UserError, match="fused parameters peft does not reach"):
        est.lora_parameter_count(spec, replace(LORA, lora_targets=("w1",)))


def test_fused_gate_and_up_go_together():
    with pytest.raises(UserError, match="w1 and w3 go together"):
        est.lora_parameter_count(tiny(), replace(LORA, lora_targets=("w1", "w2")))


def test_activations_scale_with_top_k_not_with_the_number_of_experts():
    tokens = LORA.batch_size * LORA.seq_len
    by_k = [est.saved_activation_bytes(tiny(top_k=k), LORA) for k in (1, 2, 3)]
    # one more expert per token, per layer: gate/up out 2 x 64 + activation 2 x 32 + down out 2 x 64 + the stack's inputs
    # 2 x (64 + 32) (it needs them for the LoRA-folded weight's gradient) + 24 B of indices = 536 B per token
    assert by_k[1] - by_k[0] == by_k[2] - by_k[1] == 2 * tokens * 536
    # 12 more experts at the same top-k: nothing per token but the router's fp32 probabilities (4 B per expert), and per
    # layer the folded bf16 stack copies (2 B x 6,144 per expert) and the bf16 copies of the adapters, which grow with E
    # (per expert: router 4, gate_up 8 x (64 + 64), down 4 x (32 + 64) LoRA params)
    few, many = est.saved_activation_bytes(tiny(4), LORA), est.saved_activation_bytes(tiny(16), LORA)
    assert many - few == 2 * tokens * 4 * 12 + 2 * 12 * 2 * 6_144 + 2 * 12 * 2 * (4 + 8 * 128 + 4 * 96)


def test_qlora_keeps_fused_experts_fp32_and_quantises_per_expert_linears():
    s = replace(LORA, method="qlora", gradient_checkpointing=True)
    fused, linear = est.estimate_memory(tiny(), s), est.estimate_memory(tiny(fused=False), s)
    experts = 2 * 4 * 6_144
    named = {t.name: t.bytes for t in fused.terms}
    assert named["experts' weights (all resident, fp32)"] == 4 * experts
    weights = sum(t.bytes for t in linear.terms if t.key == "weights")
    quantised = 2 * (12_288 + 4 * 6_144 + 256)  # attention, every expert and the router are nn.Linear there
    constants = quantised / est.NF4_BLOCK * (1 + 4 / est.DQ_BLOCK)
    assert weights == pytest.approx(0.5 * quantised + constants + 4 * (202_560 - quantised))


def test_time_uses_active_parameters():
    s = replace(LORA, lora_targets=("q_proj",))
    # a dense model with the same attention and one gated MLP the size of the top-2 experts together (3 x 64 x 64)
    dense = ModelSpec(**{**tiny().__dict__, "family": "mistral", "intermediate_size": 64, "moe": None})
    moe = tiny()
    assert fit._active_linear(moe) == 2 * (12_288 + 256 + 2 * 6_144) == fit._active_linear(dense) + 2 * 256
    flops = fit.training_flops_per_token
    router = 2 * 256  # the router's matmul is the only extra active weight
    assert flops(moe, s) - flops(dense, s) == pytest.approx(2 * router + 2 * router)  # forward + input gradients, no checkpointing
    assert flops(tiny(num_experts=64), s) - flops(moe, s) == pytest.approx(4 * 2 * 60 * 64)  # the router grows with E, nothing else


def test_moe_beside_a_dense_model_of_the_same_active_size():
    dense = ModelSpec(**{**tiny().__dict__, "family": "mistral", "intermediate_size": 64, "moe": None})
    s = replace(LORA, lora_targets=("q_proj", "v_proj"))
    m, d = est.estimate_memory(tiny(), s), est.estimate_memory(dense, s)
    weights = lambda e: sum(t.bytes for t in e.terms if t.key == "weights")
    assert weights(m) - weights(d) == 2 * (2 * 2 * 6_144 + 2 * 256)  # bf16: the 2 experts a token skips, and the router
    assert m.active_params == d.params + 2 * 256 and m.params > d.params
    assert m.trainable_params == d.trainable_params


def test_the_report_and_json_say_resident_and_active():
    s = replace(LORA, gradient_checkpointing=True)
    e = fit.build_estimate(tiny(), s, fit.GpuTarget("H100", 80.0, gpu_by_name("h100"), "--gpu"))
    text = report.render_estimate(e)
    assert "0.2M resident, 0.2M active per token (4 experts, 2 per token)" in text
    assert "experts' weights (all resident, bf16)" in text
    assert "from the 0.20M parameters a token goes through" not in text and "parameters a token goes through (its 2 experts)" in text
    out = json.loads(json.dumps(e.to_json()))
    assert out["moe"]["resident_params"] == 202_560 and out["moe"]["active_params"] == 202_560 - 2 * 2 * 6_144
    assert out["moe"]["num_experts"] == 4 and out["moe"]["experts_per_token"] == 2 and out["active_params"] == out["moe"]["active_params"]
    dense = fit.build_estimate(ModelSpec(**{**tiny().__dict__, "moe": None, "family": "mistral"}), s, None).to_json()
    assert dense["moe"] is None and dense["active_params"] == dense["params"]


def test_dropout_on_fused_expert_adapters_is_flagged():
    e = fit.build_estimate(tiny(), replace(LORA, lora_dropout=0.05), None)
    assert any("set lora_dropout = 0" in n for n in e.notes)
    assert not fit.build_estimate(tiny(), replace(LORA, lora_dropout=0.05, lora_targets=("q_proj",)), None).notes


def test_checkpointing_holds_one_layers_folded_stacks():
    # full logits: their gradients stay through the layers' backward, so the peak's activations are the layers' own (with
    # TRL's fused head this tiny model peaks during the head's backward, one 4 MiB tile, before any layer is recomputed)
    s = replace(LORA, gradient_checkpointing=True, full_logits=True)
    e = est.estimate_memory(tiny(), s)
    off = est.estimate_memory(tiny(), replace(s, lora_targets=("q_proj", "v_proj", "k_proj", "o_proj", "gate")))
    stacks, grad = 2 * 4 * (64 * 64 + 32 * 64), 2 * 4 * 64 * 64
    named = lambda m: next(t.bytes for t in m.terms if t.key == "activations")
    assert named(e) - named(off) > stacks + grad  # one layer's folded copy and its gradient, plus the stacks' inputs


# --- the same on real transformers 5 / peft modules, on the CPU ---------------------------------------------------

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("trl.trainer.utils")
from tests.unit.test_estimator_activations import saved_bytes  # noqa: E402  (needs the ML stack above)

BASE = {"hidden_size": 256, "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 3000, "tie_word_embeddings": False,
        "num_hidden_layers": 3, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
CONFIGS = {
    "qwen3_moe": {"model_type": "qwen3_moe", "head_dim": 32, "intermediate_size": 704, "moe_intermediate_size": 128, "num_experts": 16,
                  "num_experts_per_tok": 4},
    "mixtral": {"model_type": "mixtral", "intermediate_size": 128, "num_local_experts": 8, "num_experts_per_tok": 2},
}


def spec_of(config: dict) -> ModelSpec:
    experts = config.get("num_experts") or config["num_local_experts"]
    return ModelSpec(name="tiny", family=config["model_type"], source="test", hidden_size=256, num_layers=3, num_attention_heads=8,
                     num_kv_heads=2, head_dim=config.get("head_dim", 32), intermediate_size=config["intermediate_size"], vocab_size=3000,
                     tie_word_embeddings=False, max_position_embeddings=4096, torch_dtype="bfloat16", qkv_bias=False, o_bias=False,
                     mlp_bias=False, moe=MoeShape(experts, config["num_experts_per_tok"], config.get("moe_intermediate_size") or config["intermediate_size"],
                                                  fused_experts=True))


def _measure(config: dict, s: est.TrainSettings) -> tuple[int, int, int]:
    torch.manual_seed(0)
    hf = transformers.AutoConfig.for_model(**{**BASE, **config})
    hf._attn_implementation = est.effective_attention(spec_of(config), s)
    model = transformers.AutoModelForCausalLM.from_config(hf, dtype=torch.float32 if s.method == "full" else torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    if s.method != "full":
        targets = "all-linear" if "all-linear" in s.lora_targets else list(s.lora_targets)
        model = peft.get_peft_model(model, peft.LoraConfig(r=s.lora_r, lora_alpha=2 * s.lora_r, lora_dropout=0.0, target_modules=targets))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.train()
    ids = torch.randint(3, 3000, (s.batch_size, s.seq_len))
    mask = torch.ones_like(ids)
    mask[0, -s.seq_len // 4:] = 0
    return params, trainable, saved_bytes(model, ids, mask, fused=True)  # the loss through TRL's fused LM head, as SFT takes it


CASES = [(family, kw) for family in CONFIGS for kw in ({"method": "lora"}, {"method": "lora", "lora_targets": ("q_proj", "v_proj")}, {"method": "full"})]


@pytest.mark.parametrize("family, settings", CASES, ids=[f"{f}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for f, kw in CASES])
def test_counts_and_saved_activations_match_transformers_and_peft(family, settings):
    s = est.TrainSettings(**{"seq_len": 128, "batch_size": 2, "gradient_checkpointing": False, "lora_dropout": 0.0, "lora_r": 8, **settings})
    spec = spec_of(CONFIGS[family])
    params, trainable, saved = _measure(CONFIGS[family], s)
    assert moe_terms.resident_parameters(spec) == params
    assert (params if s.method == "full" else est.lora_parameter_count(spec, s)) == trainable
    assert est.saved_activation_bytes(spec, s) == pytest.approx(saved, rel=0.05)


def test_bitsandbytes_leaves_fused_experts_for_peft_to_cast_to_fp32(tmp_path):
    """What the QLoRA weights term assumes, on the installed transformers / bitsandbytes / peft (CPU 4-bit)."""
    pytest.importorskip("bitsandbytes")
    config = transformers.AutoConfig.for_model(**{**BASE, **CONFIGS["qwen3_moe"], "num_hidden_layers": 1})
    transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(tmp_path)
    quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                            bnb_4bit_compute_dtype=torch.bfloat16)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16, quantization_config=quant, device_map={"": "cpu"})
    except (RuntimeError, ValueError, ImportError, NotImplementedError) as exc:  # a bitsandbytes build without CPU 4-bit
        pytest.skip(f"no CPU 4-bit here: {exc}")
    model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    dtypes = {name.split(".layers.0.")[-1]: (type(p).__name__, p.dtype) for name, p in model.named_parameters() if ".layers.0." in name}
    assert dtypes["self_attn.q_proj.weight"][0] == "Params4bit"  # nn.Linear: 4-bit
    assert dtypes["mlp.experts.gate_up_proj"] == dtypes["mlp.experts.down_proj"] == ("Parameter", torch.float32)  # not 4-bit, then fp32
    with pytest.raises(ValueError, match="lora_dropout"):
        peft.get_peft_model(model, peft.LoraConfig(r=8, lora_dropout=0.05, target_modules="all-linear"))


def test_suggestions_for_moe_offer_what_works_and_never_the_qlora_launch_refuses():
    from sft_tui.core.estimate.fit import suggest
    from sft_tui.core.models.modelspec import spec_from_preset

    qwen = spec_from_preset("qwen3-30b-a3b")
    lora = est.TrainSettings(method="lora")
    peak = est.estimate_memory(qwen, lora).peak_gib
    found = suggest(qwen, lora, peak - 0.2)  # just over: the adapters' optimizer state is what to cut
    assert found and found[0].change == "8-bit AdamW optimizer (adamw_8bit)" and found[0].fits
    assert not any("QLoRA" in s.change for s in found)
    gpt = spec_from_preset("gpt-oss-20b")
    qlora = est.TrainSettings(method="qlora", optimizer="paged_adamw_8bit")
    back = suggest(gpt, qlora, est.estimate_memory(gpt, replace(qlora, method="lora", optimizer="adamw_torch")).peak_gib + 1)
    assert back[0].change.startswith("LoRA instead of QLoRA") and back[0].fits
