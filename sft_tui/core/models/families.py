"""What differs between the supported decoder families, as far as sizes go.

Each entry follows the transformers 5 modelling code of its `model_type` (read under
`transformers/models/<family>/modeling_<family>.py`): which projections carry biases and
whether the config can switch them, how many norms a layer holds, per-head or whole-
projection query/key norms, tied embeddings, and how a mixture-of-experts config names
its experts. tests/unit/test_model_families.py builds a small config of every family
with transformers' own config class and checks the closed-form parameter count against
the meta-device model, so a wrong trait here fails a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FamilyTraits:
    """Structural traits of one decoder family."""

    gated_mlp: bool = True  # gate/up/down (SwiGLU, GeGLU) vs up/down
    qkv_bias: bool = False  # default when the config has no attention_bias
    o_bias: bool = False
    mlp_bias: bool = False  # default when the config has no mlp_bias
    layer_norm: bool = False  # LayerNorm (weight + bias) instead of RMSNorm (weight only)
    norms_per_layer: int = 2
    qk_norm: bool = False  # RMSNorm on queries and keys (Qwen3, Gemma 3, OLMo 2)
    tie_default: bool = False
    fused_names: bool = False  # phi3 / gpt_neox name their projections differently
    qk_norm_per_head: bool = True  # False: OLMo 2 normalises the whole q / k projection
    reads_attention_bias: bool = True  # the modelling code honours config.attention_bias
    reads_mlp_bias: bool = False  # the modelling code honours config.mlp_bias
    attention_sinks: bool = False  # gpt_oss: one learned sink logit per head per layer
    moe: str = ""  # mixture-of-experts config dialect: "qwen3_moe" | "mixtral" | "gpt_oss"
    head_dim_default: int = 0  # the config class's head_dim default (0: hidden / heads)
    reads_kv_heads: bool = True  # False: GPT-NeoX has no grouped-query attention, whatever the config says


FAMILIES: dict[str, FamilyTraits] = {
    "llama": FamilyTraits(reads_mlp_bias=True),
    "mistral": FamilyTraits(reads_attention_bias=False),
    "qwen2": FamilyTraits(qkv_bias=True, reads_attention_bias=False),
    "qwen3": FamilyTraits(qk_norm=True, head_dim_default=128),
    "gemma": FamilyTraits(tie_default=True, head_dim_default=256),
    "gemma2": FamilyTraits(norms_per_layer=4, tie_default=True, head_dim_default=256),
    "gemma3_text": FamilyTraits(norms_per_layer=4, qk_norm=True, tie_default=True, head_dim_default=256),
    "phi3": FamilyTraits(fused_names=True, reads_attention_bias=False),
    "gpt_neox": FamilyTraits(gated_mlp=False, qkv_bias=True, o_bias=True, mlp_bias=True, layer_norm=True, fused_names=True,
                             reads_kv_heads=False),
    "olmo2": FamilyTraits(qk_norm=True, qk_norm_per_head=False),
    "smollm3": FamilyTraits(tie_default=True, reads_mlp_bias=True),
    "granite": FamilyTraits(reads_mlp_bias=True),
    "qwen3_moe": FamilyTraits(qk_norm=True, moe="qwen3_moe"),
    "mixtral": FamilyTraits(reads_attention_bias=False, moe="mixtral"),
    "gpt_oss": FamilyTraits(qkv_bias=True, o_bias=True, attention_sinks=True, moe="gpt_oss", head_dim_default=64),
}


@dataclass(frozen=True)
class TextWrapper:
    """A multimodal config whose language model sits under `text_config`."""

    text_family: str  # the model_type its text part uses when text_config omits one
    text_defaults: dict[str, Any]  # the text config class's defaults the Hub configs rely on
    tower: str  # what is left out, for the scope note


# Hub configs of Gemma 3 4B/12B/27B list only a few text fields and rely on these
# Gemma3TextConfig defaults (transformers/models/gemma3/configuration_gemma3.py).
_GEMMA3_TEXT_DEFAULTS = {
    "vocab_size": 262_208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 131_072,
}
# Mistral3Config's text_config defaults (Mistral Small 3.1's text model).
_MISTRAL3_TEXT_DEFAULTS = {
    "head_dim": 128, "hidden_size": 5120, "intermediate_size": 32768, "max_position_embeddings": 131_072,
    "num_attention_heads": 32, "num_hidden_layers": 40, "num_key_value_heads": 8, "vocab_size": 131_072,
}

TEXT_WRAPPERS: dict[str, TextWrapper] = {
    "gemma3": TextWrapper("gemma3_text", _GEMMA3_TEXT_DEFAULTS, "the SigLIP vision tower and its projector (about 0.42B params)"),
    "mistral3": TextWrapper("mistral", _MISTRAL3_TEXT_DEFAULTS, "the Pixtral vision tower and its projector"),
}

# Unsupported model types -> the supported family built the same way, for the error line.
# Chosen by architecture, not spelling: qwen2_moe is Qwen3-MoE's router and experts plus
# a shared expert; olmo is OLMo 2 without the query/key norms; phi is Phi-3 unfused.
CLOSEST_FAMILY: dict[str, str] = {
    "qwen2_moe": "qwen3_moe", "olmoe": "qwen3_moe", "qwen3_next": "qwen3_moe", "deepseek_v2": "qwen3_moe",
    "deepseek_v3": "qwen3_moe", "granitemoe": "granite", "olmo": "olmo2", "olmo3": "olmo2", "phi": "phi3",
    "phimoe": "mixtral", "ministral": "mistral", "gemma3n": "gemma3_text", "gemma3n_text": "gemma3_text",
    "llama4": "llama", "llama4_text": "llama", "qwen3_vl": "qwen3", "cohere": "llama", "starcoder2": "gpt_neox",
}
