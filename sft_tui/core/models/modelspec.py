"""Architecture numbers of a causal LM, from a shipped preset or any HF config.json.

Everything downstream (parameter counts, the memory estimator, LoRA sizes) works from
a `ModelSpec`, so a model never has to be downloaded or loaded to be reasoned about.
The family traits (sft_tui/core/models/families.py: biases, norms, gated MLP, experts)
follow the transformers modelling code for each `model_type`; tests/unit/test_modelspec.py
checks every preset's parameter count, and tests/unit/test_model_families.py every
family's, against a meta-device model built by transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_tui.core.errors import UserError, did_you_mean
from sft_tui.core.models import hf_cache, presets
from sft_tui.core.models.families import (
    CLOSEST_FAMILY,
    FAMILIES,
    TEXT_WRAPPERS,
    FamilyTraits,
    TextWrapper,
)
from sft_tui.core.models.moe import MoeShape

_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")


@dataclass(frozen=True)
class LinearShape:
    """One linear layer inside a decoder block, as LoRA would see it."""

    name: str
    in_features: int
    out_features: int
    bias: bool
    # which activation feeds it: attn_in (normed hidden), attn_out (attention output),
    # mlp_in (normed hidden), mlp_mid (activated MLP hidden); for an expert:
    # expert_in (the normed hidden of the tokens routed to it, gathered per expert) and
    # expert_mid (its activated hidden). Layers sharing an input share the tensor
    # autograd saves for them (the estimator needs this).
    input_of: str = ""

    @property
    def parameters(self) -> int:
        """Weight plus bias elements."""
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class ParamCount:
    """Exact parameter count, split the way memory estimates need it.

    For a mixture-of-experts model `total` is everything resident (all experts);
    `per_layer` is one sparse layer with all its experts, `experts` all routed-expert
    weights of all layers (what QLoRA quantises beside attention), `router` all router
    weights. `ModelSpec.active_parameters()` gives what one token uses.
    """

    total: int
    embedding: int
    lm_head: int  # 0 when tied to the embedding
    per_layer: int
    num_layers: int
    final_norm: int
    experts: int = 0
    router: int = 0

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
    sliding_window: int = 0  # tokens a sliding-window layer attends to (0 = none)
    layer_types: tuple[str, ...] = ()  # per layer "sliding_attention" | "full_attention"; () = all full
    scope_note: str = ""  # what the count leaves out (a multimodal model's vision tower)

    @property
    def traits(self) -> FamilyTraits:
        """Structural traits of this model's family."""
        return FAMILIES[self.family]

    def attention_linear_shapes(self) -> tuple[LinearShape, ...]:
        """The attention projections of one decoder layer (the same in dense and sparse layers)."""
        h, q, kv = self.hidden_size, self.num_attention_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if self.family == "gpt_neox":
            return (LinearShape("query_key_value", h, q + 2 * kv, self.qkv_bias, "attn_in"), LinearShape("dense", q, h, self.o_bias, "attn_out"))
        if self.family == "phi3":
            return (LinearShape("qkv_proj", h, q + 2 * kv, self.qkv_bias, "attn_in"), LinearShape("o_proj", q, h, self.o_bias, "attn_out"))
        return (
            LinearShape("q_proj", h, q, self.qkv_bias, "attn_in"),
            LinearShape("k_proj", h, kv, self.qkv_bias, "attn_in"),
            LinearShape("v_proj", h, kv, self.qkv_bias, "attn_in"),
            LinearShape("o_proj", q, h, self.o_bias, "attn_out"),
        )

    def mlp_linear_shapes(self) -> tuple[LinearShape, ...]:
        """The MLP of one dense decoder layer (intermediate_size wide).

        In a mixture-of-experts model only its `num_dense_layers` have this MLP (for
        mixtral and gpt_oss none: their intermediate_size is the expert's width).
        """
        h, inter = self.hidden_size, self.intermediate_size
        if self.family == "gpt_neox":
            return (LinearShape("dense_h_to_4h", h, inter, self.mlp_bias, "mlp_in"), LinearShape("dense_4h_to_h", inter, h, self.mlp_bias, "mlp_mid"))
        if self.family == "phi3":
            return (LinearShape("gate_up_proj", h, 2 * inter, self.mlp_bias, "mlp_in"), LinearShape("down_proj", inter, h, self.mlp_bias, "mlp_mid"))
        return (
            LinearShape("gate_proj", h, inter, self.mlp_bias, "mlp_in"),
            LinearShape("up_proj", h, inter, self.mlp_bias, "mlp_in"),
            LinearShape("down_proj", inter, h, self.mlp_bias, "mlp_mid"),
        )

    def linear_shapes(self) -> tuple[LinearShape, ...]:
        """The linear layers of one dense decoder block (what `all-linear` LoRA targets in a dense model).

        Attention plus the dense MLP. For a mixture-of-experts model this is NOT what a
        sparse layer holds: a sparse layer has `attention_linear_shapes()`, a
        `router_shape()` and `moe.num_experts` copies of `expert_linear_shapes()` (plus
        `shared_expert_linear_shapes()`); see `num_sparse_layers` / `num_dense_layers`.
        """
        return self.attention_linear_shapes() + self.mlp_linear_shapes()

    @property
    def num_sparse_layers(self) -> int:
        """Decoder layers with the expert MLP (0 for a dense model)."""
        if self.moe is None:
            return 0
        return sum(1 for layer in range(self.num_layers) if self.moe.is_sparse(layer))

    @property
    def num_dense_layers(self) -> int:
        """Decoder layers with the dense MLP of `mlp_linear_shapes()` (all of them for a dense model)."""
        return self.num_layers - self.num_sparse_layers

    def expert_linear_shapes(self) -> tuple[LinearShape, ...]:
        """The projections of ONE routed expert, as the matmuls see them; () for a dense model.

        transformers 5 stores a layer's experts fused, as 3-D parameters holding all
        experts (`mlp.experts.gate_up_proj` [experts, 2 x expert_intermediate, hidden]
        and `mlp.experts.down_proj`; gpt_oss transposed and with biases), so these are
        not nn.Linear modules. peft 0.21 still adapts them under `all-linear` for mixtral and
        qwen3_moe (it maps its old per-expert names onto the fused parameters: per-expert
        adapters, no dropout), but not for gpt_oss (attention only); the estimator's
        `moe_terms.adapted_linears` says exactly what is adapted. A token runs through
        `moe.experts_per_token` of them; all `moe.num_experts` are resident.
        """
        if self.moe is None:
            return ()
        h, inter, bias = self.hidden_size, self.moe.expert_intermediate_size, self.moe.expert_bias
        return (LinearShape("gate_up_proj", h, 2 * inter, bias, "expert_in"), LinearShape("down_proj", inter, h, bias, "expert_mid"))

    def router_shape(self) -> LinearShape | None:
        """The router of one sparse layer (hidden -> one logit per expert); None for a dense model.

        Every token goes through it. Stored as a plain parameter (`mlp.gate.weight`,
        gpt_oss `mlp.router.weight` + bias), not an nn.Linear; peft's `all-linear` still
        adapts it for mixtral and qwen3_moe (see `moe_terms.adapted_linears`).
        """
        if self.moe is None:
            return None
        name = "router" if self.family == "gpt_oss" else "gate"
        return LinearShape(name, self.hidden_size, self.moe.num_experts, self.moe.router_bias, "mlp_in")

    def shared_expert_linear_shapes(self) -> tuple[LinearShape, ...]:
        """The always-on shared expert of a sparse layer (gate/up/down); () when there is none."""
        if self.moe is None or not self.moe.shared_expert_intermediate_size:
            return ()
        h, inter = self.hidden_size, self.moe.shared_expert_intermediate_size
        return (
            LinearShape("shared_expert.gate_proj", h, inter, False, "mlp_in"),
            LinearShape("shared_expert.up_proj", h, inter, False, "mlp_in"),
            LinearShape("shared_expert.down_proj", inter, h, False, "mlp_mid"),
        )

    def qk_norm_parameters(self) -> int:
        """Weights of one layer's query and key norms (per head_dim, or over the whole projection in OLMo 2)."""
        traits = self.traits
        if not traits.qk_norm:
            return 0
        if traits.qk_norm_per_head:
            return 2 * self.head_dim
        return (self.num_attention_heads + self.num_kv_heads) * self.head_dim

    def _layer_common_parameters(self) -> int:
        """One layer's parameters outside its MLP: attention, its norms, sinks and the layer norms."""
        traits = self.traits
        norm_size = self.hidden_size * (2 if traits.layer_norm else 1)
        sinks = self.num_attention_heads if traits.attention_sinks else 0
        return sum(s.parameters for s in self.attention_linear_shapes()) + self.qk_norm_parameters() + sinks + traits.norms_per_layer * norm_size

    def count_parameters(self) -> ParamCount:
        """Exact parameter count from the closed form (linears + norms + embeddings); for MoE, everything resident."""
        norm_size = self.hidden_size * (2 if self.traits.layer_norm else 1)
        common = self._layer_common_parameters()
        dense_layer = common + sum(s.parameters for s in self.mlp_linear_shapes())
        embedding = self.vocab_size * self.hidden_size
        lm_head = 0 if self.tie_word_embeddings else embedding
        if self.moe is None:
            return ParamCount(embedding + lm_head + self.num_layers * dense_layer + norm_size, embedding, lm_head, dense_layer, self.num_layers, norm_size)
        experts = self.moe.num_experts * sum(s.parameters for s in self.expert_linear_shapes())
        router = self.router_shape().parameters
        sparse_layer = common + experts + router + sum(s.parameters for s in self.shared_expert_linear_shapes())
        sparse, dense = self.num_sparse_layers, self.num_dense_layers
        total = embedding + lm_head + sparse * sparse_layer + dense * dense_layer + norm_size
        return ParamCount(total, embedding, lm_head, sparse_layer, self.num_layers, norm_size, sparse * experts, sparse * router)

    def active_parameters(self, input_embedding: bool = True) -> int:
        """Parameters one token uses: everything except the experts its router did not pick.

        Per sparse layer that is attention, norms, the router, the shared expert and
        `experts_per_token` routed experts; dense layers and the output head count
        whole. The input embedding counts whole too, as Mixtral's and Qwen3's cards
        count it (Mixtral 8x7B: 12.9B of 46.7B; Qwen3-30B-A3B: 3.3B); a token only
        looks up one row of it and spends no FLOPs there, so `input_embedding=False`
        leaves it out, as OpenAI's gpt-oss card does (gpt-oss-20b: 3.6B) and as a FLOP
        count (6 x active x tokens) wants. Equal to `count_parameters().total` (less the
        embedding when asked) for a dense model.
        """
        counts = self.count_parameters()
        active = counts.total - (0 if input_embedding else counts.embedding)
        if self.moe is None:
            return active
        unused = self.moe.num_experts - self.moe.experts_per_token
        return active - self.num_sparse_layers * unused * sum(s.parameters for s in self.expert_linear_shapes())


def spec_from_hf_config(config: dict[str, Any], source: str, name: str = "", defaults: dict[str, Any] | None = None) -> ModelSpec:
    """Build a ModelSpec from a Hugging Face config.json dict; errors name the missing field.

    A multimodal wrapper (gemma3, mistral3) is read through its `text_config`: the spec
    is the language model alone and its `scope_note` says what was left out.
    """
    defaults = defaults or {}
    model_type = config.get("model_type")
    if not model_type:
        raise UserError('missing field "model_type"', source, "this does not look like a Hugging Face causal-LM config.json")
    scope_note = ""
    if model_type in TEXT_WRAPPERS:
        config, scope_note = _text_part(config, TEXT_WRAPPERS[model_type], source)
        model_type = config["model_type"]
    if model_type not in FAMILIES:
        raise UserError(f"model_type {model_type!r} is not supported{_nested_note(config)}{_closest(model_type)}", source,
                        f"supported families: {', '.join(sorted([*FAMILIES, *TEXT_WRAPPERS]))}")
    traits = FAMILIES[model_type]
    cfg = dict(config)
    if model_type == "gpt_neox" and "intermediate_size" not in cfg and "hidden_size" in cfg:
        cfg["intermediate_size"] = 4 * cfg["hidden_size"]  # GPTNeoXConfig's documented default
    for key in _REQUIRED:
        if key not in cfg or cfg[key] is None:
            raise UserError(f'missing field "{key}" (needed for the {model_type} family)', source, "add it from the model card or use a complete config.json")
        _positive_int(cfg[key], key, source)
    heads = cfg["num_attention_heads"]
    kv_heads = (cfg.get("num_key_value_heads") if traits.reads_kv_heads else None) or heads
    _positive_int(kv_heads, "num_key_value_heads", source)
    if heads % kv_heads:
        raise UserError(f"num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})", source, "check both fields")
    head_dim = cfg.get("head_dim") or traits.head_dim_default
    if not head_dim:
        if cfg["hidden_size"] % heads:
            raise UserError(f"hidden_size ({cfg['hidden_size']}) is not divisible by num_attention_heads ({heads}) and no head_dim is given", source, "add head_dim")
        head_dim = cfg["hidden_size"] // heads
    _positive_int(head_dim, "head_dim", source)
    attention_bias = cfg.get("attention_bias") if traits.reads_attention_bias else None
    mlp_bias = cfg.get("mlp_bias") if traits.reads_mlp_bias else None
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
        qkv_bias=traits.qkv_bias if attention_bias is None else bool(attention_bias),
        o_bias=traits.o_bias if attention_bias is None else bool(attention_bias),
        mlp_bias=traits.mlp_bias if mlp_bias is None else bool(mlp_bias),
        hf_repo=str(defaults.get("hf_repo", "")),
        license_note=str(defaults.get("license_note", "")),
        moe=_moe_shape(traits.moe, cfg, source),
        sliding_window=_sliding_window(cfg),
        layer_types=_layer_types(model_type, cfg),
        scope_note=scope_note,
    )


def _text_part(config: dict[str, Any], wrapper: TextWrapper, source: str) -> tuple[dict[str, Any], str]:
    """The language-model config inside a multimodal wrapper, with the defaults transformers fills in."""
    text = config.get("text_config") or {}
    if not isinstance(text, dict):
        raise UserError('field "text_config" must be a JSON object', source, "pass the model's own config.json")
    cfg = {**wrapper.text_defaults, **text}
    cfg.setdefault("model_type", wrapper.text_family)
    if cfg["model_type"] in TEXT_WRAPPERS:
        raise UserError(f"text_config.model_type {cfg['model_type']!r} is itself a multimodal wrapper", source, "pass the model's own config.json")
    # transformers 5 ties the wrapper's lm_head by the wrapper's own tie_word_embeddings (default true)
    cfg["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", True))
    for key in ("dtype", "torch_dtype", "_name_or_path"):
        if key in config and key not in cfg:
            cfg[key] = config[key]
    return cfg, f"text model only: {wrapper.tower} is not counted"


def _nested_note(config: dict[str, Any]) -> str:
    if "text_config" not in config:
        return ""
    return f" (its text model sits under text_config; sft-tui reads that only for {' and '.join(sorted(TEXT_WRAPPERS))})"


def _closest(model_type: str) -> str:
    """' (closest supported: 'qwen3_moe')' by architecture when known, else by spelling."""
    if model_type in CLOSEST_FAMILY:
        return f" (closest supported family: {CLOSEST_FAMILY[model_type]!r})"
    return did_you_mean(model_type, list(FAMILIES) + list(TEXT_WRAPPERS))


def _moe_field(cfg: dict[str, Any], keys: tuple[str, ...], source: str, family: str) -> int:
    """The first of `keys` present in the config, as a positive int; a missing one names the first key."""
    for key in keys:
        if cfg.get(key) is not None:
            _positive_int(cfg[key], key, source)
            return cfg[key]
    raise UserError(f'missing field "{keys[0]}" (needed for the {family} family)', source, "add it from the model card or use a complete config.json")


def _moe_shape(dialect: str, cfg: dict[str, Any], source: str) -> MoeShape | None:
    """The experts of a mixture-of-experts config, following each family's config class."""
    if not dialect:
        return None
    family, layers = cfg["model_type"], cfg["num_hidden_layers"]
    sparse_layers: tuple[int, ...] = ()
    if dialect == "qwen3_moe":
        if cfg.get("num_experts") == 0 or cfg.get("num_local_experts") == 0:
            return None  # Qwen3MoeDecoderLayer then builds a dense MLP everywhere
        experts = _moe_field(cfg, ("num_experts", "num_local_experts"), source, family)  # transformers 5 writes the second
        inter = _moe_field(cfg, ("moe_intermediate_size",), source, family)
        step = cfg.get("decoder_sparse_step") or 1
        dense_only = set(cfg.get("mlp_only_layers") or ())
        sparse = tuple(i for i in range(layers) if i not in dense_only and (i + 1) % step == 0)
        if not sparse:
            return None
        sparse_layers = () if len(sparse) == layers else sparse
    else:  # mixtral, gpt_oss: every layer sparse, intermediate_size is one expert's width
        experts = _moe_field(cfg, ("num_local_experts", "num_experts"), source, family)
        inter = cfg["intermediate_size"]
    top_k = _moe_field(cfg, ("num_experts_per_tok", "experts_per_token"), source, family)
    if top_k > experts:
        raise UserError(f"num_experts_per_tok ({top_k}) is larger than the number of experts ({experts})", source, "check both fields")
    gpt_oss = dialect == "gpt_oss"
    return MoeShape(num_experts=experts, experts_per_token=top_k, expert_intermediate_size=inter, expert_bias=gpt_oss,
                    router_bias=gpt_oss, sparse_layers=sparse_layers, fused_experts=True)


def _sliding_window(cfg: dict[str, Any]) -> int:
    """The sliding-window size the model uses, 0 when it attends to everything."""
    window = cfg.get("sliding_window")
    if cfg.get("use_sliding_window") is False or not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return 0
    return window


def _layer_types(model_type: str, cfg: dict[str, Any]) -> tuple[str, ...]:
    """Per-layer attention kind, as the config lists it or as its config class derives it."""
    layers = cfg["num_hidden_layers"]
    listed = cfg.get("layer_types")
    if isinstance(listed, list) and len(listed) == layers and all(isinstance(x, str) for x in listed):
        return tuple(listed)
    if model_type == "gemma3_text" and _sliding_window(cfg):
        pattern = cfg.get("sliding_window_pattern") or 6  # Gemma3TextConfig: 5 local layers, then a global one
        return tuple("sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers))
    if model_type == "gpt_oss" and _sliding_window(cfg):
        return tuple("sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers))
    return ()


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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if config_path.suffix in (".jsonl", ".csv", ".parquet", ".txt"):
            # a data file given where a model goes (sft-tui estimate train.jsonl): say what is expected
            raise UserError("this is not a model's config.json", str(config_path),
                            "name a model: a preset (sft-tui models list), a model folder, or its config.json") from None
        where = f"{config_path}:{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(config_path)
        raise UserError(f"invalid JSON: {exc.msg if isinstance(exc, json.JSONDecodeError) else 'not UTF-8'}", where,
                        "fix the file or download it again") from None
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
