"""Every supported family's closed-form parameter count equals the model transformers builds.

For each family (dense and mixture-of-experts, not a sample) a small config is written
by transformers' own config class, read back through `sft-tui`'s config.json reader,
and compared with a meta-device model (no memory, no weights). Variants switch on the
options that change sizes: biases, tied embeddings, dense layers inside an MoE model.
"""

from __future__ import annotations

import json

import pytest

from sft_tui.core.errors import UserError
from sft_tui.core.models import modelspec
from sft_tui.core.models.families import FAMILIES, TEXT_WRAPPERS

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SMALL = {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 512}
NO_TOKENS = {"pad_token_id": None, "bos_token_id": None, "eos_token_id": None}  # family defaults lie outside a 512-token vocabulary
MOE = {"num_experts_per_tok": 2}

# (family, extra config fields); every family in FAMILIES appears at least once (checked below)
CASES = [
    ("llama", {}),
    ("llama", {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True}),
    ("mistral", {}),
    ("qwen2", {}),
    ("qwen3", {}),
    ("qwen3", {"head_dim": 24, "tie_word_embeddings": True}),
    ("gemma", {"head_dim": 16}),
    ("gemma2", {"head_dim": 16}),
    ("gemma3_text", {"head_dim": 16}),
    ("gemma3_text", {"head_dim": 32, "tie_word_embeddings": False}),
    ("phi3", {}),
    ("phi3", {"tie_word_embeddings": True}),  # Phi-4-mini ties its embeddings
    ("gpt_neox", {}),
    ("olmo2", {}),
    ("olmo2", {"attention_bias": True}),
    ("smollm3", {}),
    ("smollm3", {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": False}),
    ("granite", {}),
    ("granite", {"mlp_bias": True, "attention_bias": True}),
    ("mixtral", {**MOE, "num_local_experts": 4}),
    ("qwen3_moe", {**MOE, "num_experts": 6, "moe_intermediate_size": 40}),
    ("qwen3_moe", {**MOE, "num_experts": 6, "moe_intermediate_size": 40, "mlp_only_layers": [0], "head_dim": 32}),
    ("qwen3_moe", {**MOE, "num_experts": 4, "moe_intermediate_size": 40, "decoder_sparse_step": 2}),
    ("gpt_oss", {**MOE, "num_local_experts": 4, "head_dim": 16}),
    ("gpt_oss", {**MOE, "num_local_experts": 4, "head_dim": 16, "attention_bias": False}),
]


def _meta_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _written_by_transformers(tmp_path, config) -> modelspec.ModelSpec:
    config.save_pretrained(tmp_path)
    return modelspec.resolve_model(str(tmp_path))


def test_every_family_has_a_case():
    assert {family for family, _ in CASES} == set(FAMILIES)


@pytest.mark.parametrize("family, extra", CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CASES)])
def test_closed_form_count_equals_the_meta_device_model(tmp_path, family, extra, cli):
    config = transformers.AutoConfig.for_model(family, **{**SMALL, **NO_TOKENS, **extra})
    spec = _written_by_transformers(tmp_path, config)
    assert spec.family == family
    estimated = cli("estimate", str(tmp_path / "config.json"), "--json")  # the estimator takes every family's config.json
    assert estimated.code == 0, estimated.err
    assert json.loads(estimated.out)["params"] == spec.count_parameters().total
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert spec.count_parameters().total == _meta_count(model)
    if spec.moe is not None:
        experts = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
        assert spec.count_parameters().experts == experts


WRAPPERS = [
    ("gemma3", {"head_dim": 16, "vocab_size": 512}, {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                                     "num_attention_heads": 2, "image_size": 28, "patch_size": 14}),
    ("mistral3", {}, {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                      "head_dim": 16, "image_size": 28, "patch_size": 14}),
]


@pytest.mark.parametrize("wrapper, text_extra, vision", WRAPPERS, ids=[w for w, _, _ in WRAPPERS])
@pytest.mark.parametrize("tie", [True, False])
def test_multimodal_wrapper_counts_its_language_model(tmp_path, wrapper, text_extra, vision, tie):
    family = TEXT_WRAPPERS[wrapper].text_family
    text = transformers.AutoConfig.for_model(family, **{**SMALL, **NO_TOKENS, **text_extra}).to_dict()
    config = transformers.AutoConfig.for_model(wrapper, text_config=text, vision_config=vision, tie_word_embeddings=tie)
    spec = _written_by_transformers(tmp_path, config)
    assert spec.family == family and "vision tower" in spec.scope_note
    with torch.device("meta"):
        model = transformers.AutoModelForImageTextToText.from_config(config)
    language = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("model.vision_tower", "model.multi_modal_projector")))
    assert spec.count_parameters().total == language


def test_a_hub_style_gemma3_config_relies_on_the_text_defaults(tmp_path):
    # Gemma 3 4B's config.json lists only these text fields; the rest are Gemma3TextConfig defaults
    config = {"model_type": "gemma3", "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                                                      "num_hidden_layers": 34, "sliding_window": 1024}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = modelspec.resolve_model(str(tmp_path))
    assert (spec.vocab_size, spec.num_attention_heads, spec.num_kv_heads, spec.head_dim) == (262_208, 8, 4, 256)
    assert spec.tie_word_embeddings and spec.sliding_window == 1024
    assert spec.layer_types[:6] == ("sliding_attention",) * 5 + ("full_attention",)  # five local layers, then a global one


def test_active_parameters_by_hand_for_a_small_qwen3_moe():
    config = {"model_type": "qwen3_moe", **SMALL, "head_dim": 16, "num_experts": 8, "num_experts_per_tok": 2,
              "moe_intermediate_size": 24, "mlp_only_layers": [1], "tie_word_embeddings": False}
    spec = modelspec.spec_from_hf_config(config, "test")
    h, vocab = 64, 512
    attention = h * 4 * 16 + 2 * h * 2 * 16 + 4 * 16 * h  # q, k and v, o
    common = attention + 2 * 16 + 2 * h  # + per-head q/k norms + two layer norms
    expert = 3 * h * 24  # gate, up, down of one expert
    router = 8 * h
    dense_mlp = 3 * h * 96  # layer 1 is dense (mlp_only_layers)
    # per token: two sparse layers with 2 of their 8 experts, one dense layer, embedding, head, final norm
    assert spec.active_parameters() == 2 * (common + router + 2 * expert) + (common + dense_mlp) + 2 * vocab * h + h
    assert spec.count_parameters().total == spec.active_parameters() + 2 * 6 * expert
    assert (spec.num_sparse_layers, spec.num_dense_layers, spec.moe.sparse_layers) == (2, 1, (0, 2))


def test_dense_models_use_every_parameter():
    spec = modelspec.spec_from_preset("qwen3-8b")
    assert spec.active_parameters() == spec.count_parameters().total
    assert spec.expert_linear_shapes() == () and spec.router_shape() is None and spec.num_dense_layers == spec.num_layers


def test_linear_shapes_keep_meaning_one_dense_block():
    spec = modelspec.spec_from_hf_config({"model_type": "mixtral", **SMALL, "num_local_experts": 4, "num_experts_per_tok": 2}, "test")
    assert [s.name for s in spec.linear_shapes()] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert [s.name for s in spec.expert_linear_shapes()] == ["gate_up_proj", "down_proj"]
    assert spec.router_shape().out_features == 4 and spec.num_dense_layers == 0


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"model_type": "qwen2_moe"}, "closest supported family: 'qwen3_moe'"),
        ({"model_type": "olmo"}, "closest supported family: 'olmo2'"),
        ({"model_type": "gemma3_txt"}, "did you mean 'gemma3_text'"),
        ({"model_type": "qwen3_moe", **SMALL, "num_experts_per_tok": 2, "moe_intermediate_size": 8}, 'missing field "num_experts"'),
        ({"model_type": "mixtral", **SMALL, "num_local_experts": 2, "num_experts_per_tok": 4}, "larger than the number of experts"),
        ({"model_type": "gemma3", "text_config": "oops"}, "text_config"),
    ],
)
def test_unsupported_or_broken_configs_give_one_line(fields, message):
    with pytest.raises(UserError) as err:
        modelspec.spec_from_hf_config(fields, "x/config.json")
    assert message in err.value.line() and "\n" not in err.value.line()
