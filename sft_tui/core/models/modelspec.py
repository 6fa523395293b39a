"""Architecture numbers of a causal LM, from a shipped preset or any HF config.json.

Everything downstream (parameter counts, the memory estimator, LoRA sizes) works from
a `ModelSpec`, so a model never has to be downloaded or loaded to be reasoned about.
The family traits below (biases, norms, gated MLP) follow the transformers modelling
code for each `model_type`; tests/unit/test_modelspec.py checks the parameter count of
every preset against a meta-device model built by transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_tui.core.models import hf_cache
from sft_tui.core.models import presets
from sft_tui.core.models.moe import MoeShape
from sft_tui.core.errors import UserError, did_you_mean


@dataclass(frozen=True)
class FamilyTraits:
    """What differs between the supported decoder families, as far as sizes go."""

    gated_mlp: bool  # gate/up/down (SwiGLU, GeGLU) vs up/down
    qkv_bias: bool  # default when the config has no attention_bias
    o_bias: bool
    mlp_bias: bool
    layer_norm: bool  # LayerNorm (weight + bias) instead of RMSNorm (weight only)
    norms_per_layer: int
    qk_norm: bool  # per-head RMSNorm on queries and keys (Qwen3)
    tie_default: bool
    fused_names: bool  # phi3 / gpt_neox name their projections differently


FAMILIES: dict[str, FamilyTraits] = {
    "llama": FamilyTraits(True, False, False, False, False, 2, False, False, False),
    "mistral": FamilyTraits(True, False, False, False, False, 2, False, False, False),
    "qwen2": FamilyTraits(True, True, False, False, False, 2, False, False, False),
    "qwen3": FamilyTraits(True, False, False, False, False, 2, True, False, False),
    "gemma": FamilyTraits(True, False, False, False, False, 2, False, True, False),
    "gemma2": FamilyTraits(True, False, False, False, False, 4, False, True, False),
    "phi3": FamilyTraits(True, False, False, False, False, 2, False, False, True),
    "gpt_neox": FamilyTraits(False, True, True, True, True, 2, False, False, True),
}

_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")


@dataclass(frozen=True)
class LinearShape:
    """One linear layer inside a decoder block, as LoRA would see it."""

    name: str
    in_features: int
    out_features: int
    bias: bool
    # which activation feeds it: attn_in (normed hidden), attn_out (attention output),
    # mlp_in (normed hidden), mlp_mid (activated MLP hidden). Layers sharing an input
    # share the tensor autograd saves for them (the estimator needs this).
    input_of: str = ""


@dataclass(frozen=True)
class ParamCount:
    """Exact parameter count, split the way memory estimates need it."""

    total: int
    embedding: int
    lm_head: int  # 0 when tied to the embedding
    per_layer: int
    num_layers: int
    final_norm: int

    @property
    def non_embedding(self) -> int:
        """Parameters outside the embedding and the (untied) output head."""
        return self.total - self.embedding - self.lm_head


@dataclass(frozen=True)
class ModelSpec:
    """Architecture numbers of one model; enough to count parameters and estimate memory."""

    name: str
    family: str
    source: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    torch_dtype: str
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    hf_repo: str = ""
    license_note: str = ""
    moe: MoeShape | None = None  # mixture-of-experts models: the sparse MLP (None = dense)

    @property
    def traits(self) -> FamilyTraits:
        """Structural traits of this model's family."""
        return FAMILIES[self.family]

    def linear_shapes(self) -> tuple[LinearShape, ...]:
        """The linear layers of one decoder block (what `all-linear` LoRA targets)."""
        h, q, kv, inter = self.hidden_size, self.num_attention_heads * self.head_dim, self.num_kv_heads * self.head_dim, self.intermediate_size
        if self.family == "gpt_neox":
            return (
                LinearShape("query_key_value", h, q + 2 * kv, self.qkv_bias, "attn_in"),
                LinearShape("dense", q, h, self.o_bias, "attn_out"),
                LinearShape("dense_h_to_4h", h, inter, self.mlp_bias, "mlp_in"),
                LinearShape("dense_4h_to_h", inter, h, self.mlp_bias, "mlp_mid"),
            )
        if self.family == "phi3":
            return (
                LinearShape("qkv_proj", h, q + 2 * kv, self.qkv_bias, "attn_in"),
                LinearShape("o_proj", q, h, self.o_bias, "attn_out"),
                LinearShape("gate_up_proj", h, 2 * inter, self.mlp_bias, "mlp_in"),
                LinearShape("down_proj", inter, h, self.mlp_bias, "mlp_mid"),
            )
        return (
            LinearShape("q_proj", h, q, self.qkv_bias, "attn_in"),
            LinearShape("k_proj", h, kv, self.qkv_bias, "attn_in"),
            LinearShape("v_proj", h, kv, self.qkv_bias, "attn_in"),
            LinearShape("o_proj", q, h, self.o_bias, "attn_out"),
            LinearShape("gate_proj", h, inter, self.mlp_bias, "mlp_in"),
            LinearShape("up_proj", h, inter, self.mlp_bias, "mlp_in"),
            LinearShape("down_proj", inter, h, self.mlp_bias, "mlp_mid"),
        )

    def count_parameters(self) -> ParamCount:
        """Exact parameter count from the closed form (linears + norms + embeddings)."""
        traits = self.traits
        norm_size = self.hidden_size * (2 if traits.layer_norm else 1)
        linears = sum(s.in_features * s.out_features + (s.out_features if s.bias else 0) for s in self.linear_shapes())
        per_layer = linears + traits.norms_per_layer * norm_size + (2 * self.head_dim if traits.qk_norm else 0)
        embedding = self.vocab_size * self.hidden_size
        lm_head = 0 if self.tie_word_embeddings else embedding
        total = embedding + lm_head + self.num_layers * per_layer + norm_size
        return ParamCount(total, embedding, lm_head, per_layer, self.num_layers, norm_size)


def spec_from_hf_config(config: dict[str, Any], source: str, name: str = "", defaults: dict[str, Any] | None = None) -> ModelSpec:
    """Build a ModelSpec from a Hugging Face config.json dict; errors name the missing field."""
    defaults = defaults or {}
    model_type = config.get("model_type")
    if not model_type:
        raise UserError('missing field "model_type"', source, "this does not look like a Hugging Face causal-LM config.json")
    if model_type not in FAMILIES:
        nested = " (its text model sits under text_config, which is not supported yet)" if "text_config" in config else ""
        raise UserError(
            f"model_type {model_type!r} is not supported{nested}{did_you_mean(model_type, FAMILIES)}",
            source,
            f"supported families: {', '.join(sorted(FAMILIES))}",
        )
    traits = FAMILIES[model_type]
    cfg = dict(config)
    if model_type == "gpt_neox" and "intermediate_size" not in cfg and "hidden_size" in cfg:
        cfg["intermediate_size"] = 4 * cfg["hidden_size"]  # GPTNeoXConfig's documented default
    for key in _REQUIRED:
        if key not in cfg or cfg[key] is None:
            raise UserError(f'missing field "{key}" (needed for the {model_type} family)', source, "add it from the model card or use a complete config.json")
        _positive_int(cfg[key], key, source)
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    _positive_int(kv_heads, "num_key_value_heads", source)
    if heads % kv_heads:
        raise UserError(f"num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})", source, "check both fields")
    head_dim = cfg.get("head_dim")
    if head_dim is None:
        if cfg["hidden_size"] % heads:
            raise UserError(f"hidden_size ({cfg['hidden_size']}) is not divisible by num_attention_heads ({heads}) and no head_dim is given", source, "add head_dim")
        head_dim = cfg["hidden_size"] // heads
    _positive_int(head_dim, "head_dim", source)
    attention_bias = cfg.get("attention_bias")
    if model_type == "gpt_neox":
        attention_bias = cfg.get("attention_bias", True)
    qkv_bias = traits.qkv_bias if attention_bias is None or model_type == "qwen2" else bool(attention_bias)
    o_bias = traits.o_bias if attention_bias is None or model_type == "qwen2" else bool(attention_bias)
    return ModelSpec(
        name=name or str(cfg.get("_name_or_path") or Path(source).parent.name),
        family=model_type,
        source=source,
        hidden_size=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"],
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=cfg["intermediate_size"],
        vocab_size=cfg["vocab_size"],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", traits.tie_default)),
        max_position_embeddings=int(cfg.get("max_position_embeddings") or 0),
        torch_dtype=str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32"),
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_bias=bool(cfg.get("mlp_bias", traits.mlp_bias)),
        hf_repo=str(defaults.get("hf_repo", "")),
        license_note=str(defaults.get("license_note", "")),
    )


def _positive_int(value: Any, key: str, source: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f'field "{key}" must be a positive integer, got {value!r}', source, "fix the value")


def spec_from_preset(name: str) -> ModelSpec:
    """The ModelSpec of a shipped model preset (`sft-tui models list`)."""
    data = presets.load_model_preset(name)
    path = presets.presets_dir() / "models" / f"{data.get('name', name)}.toml"
    arch = dict(data.get("architecture", {}))
    arch["model_type"] = data.get("family")
    return spec_from_hf_config(arch, str(path), name=data.get("name", name), defaults=data)


def spec_from_config_file(path: Path) -> ModelSpec:
    """The ModelSpec of a config.json file or of a model folder that holds one."""
    config_path = path / "config.json" if path.is_dir() else path
    if not config_path.is_file():
        raise UserError("no config.json in this folder", str(path), "pass a Hugging Face model folder or its config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"invalid JSON: {exc.msg}", f"{config_path}:{exc.lineno}", "fix the file or download it again") from None
    if not isinstance(config, dict):
        raise UserError("config.json does not hold a JSON object", str(config_path), "pass a Hugging Face config.json")
    name = config_path.parent.name if path.is_dir() or config_path.name == "config.json" else config_path.stem
    return spec_from_hf_config(config, str(config_path), name=name)


def _preset_index() -> dict[str, str]:
    """Lower-cased preset names and HF repo ids -> preset name."""
    index: dict[str, str] = {}
    for preset in presets.list_model_presets():
        data = presets.load_model_preset(preset.name)
        index[preset.name.lower()] = preset.name
        for key in ("hf_repo", "hf_repo_instruct"):
            if data.get(key):
                index[str(data[key]).lower()] = preset.name
    return index


def resolve_model(ref: str, cache_dir: Path | None = None) -> ModelSpec:
    """A ModelSpec from a preset name, a config.json / model folder path, or a cached repo id.

    Order: an existing path wins (a team's own checkpoint), then presets (by name or HF
    repo id), then the local Hugging Face cache. Never touches the network.
    """
    path = Path(ref).expanduser()
    if path.exists():
        return spec_from_config_file(path)
    index = _preset_index()
    if ref.lower() in index:
        return spec_from_preset(index[ref.lower()])
    if hf_cache.looks_like_repo_id(ref):
        snapshot = hf_cache.cached_snapshot(ref, cache_dir)
        if snapshot is not None:
            spec = spec_from_config_file(snapshot)
            return ModelSpec(**{**spec.__dict__, "name": ref, "hf_repo": ref})
    cache = cache_dir or hf_cache.hf_hub_cache_dir()
    names = [p.name for p in presets.list_model_presets()]
    raise UserError(
        f"unknown model {ref!r}{did_you_mean(ref.lower(), names)}: not a preset, an existing path, or a repo id in the local Hugging Face cache ({cache})",
        fix="`sft-tui models list` shows the presets; or pass a folder holding config.json",
    )
