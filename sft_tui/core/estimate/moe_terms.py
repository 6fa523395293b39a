"""Mixture-of-experts terms for the estimator: what is resident, what a token goes through, what LoRA adapts.

Every expert's weights are resident; a token's activations and FLOPs follow only the
top-k experts its router picks (plus the router and any shared expert). How the weights
are stored decides the rest, and transformers 5.23 stores mixtral, qwen3_moe and gpt_oss
experts as fused 3-D parameters (`experts.gate_up_proj` [E, 2I, h], `experts.down_proj`
[E, h, I]) run by `grouped_mm`; the router is a parameter too, not an `nn.Linear`:

- bitsandbytes 4-bit (transformers' integration) replaces `nn.Linear` modules only, so
  QLoRA leaves fused experts in the load dtype, and peft's prepare_model_for_kbit_training
  then casts every 16-bit parameter that is not `Params4bit` to fp32: fused experts are
  4 bytes a parameter under QLoRA, not 0.5 (bitsandbytes issue #1849).
- peft 0.21.2's `all-linear` reaches the attention `nn.Linear`s; for the families
  transformers renamed from v4 (mixtral, the qwen2_moe group with qwen3_moe and olmoe) it
  also maps the v4 names onto `target_parameters`: the router `gate.weight` and both
  expert stacks, with gate_up at rank 2r (w1 and w3 fused). A `ParamWrapper` adapter on a
  stack holds lora_A [in -> r*E] and lora_B [r*E -> out] and folds itself into a copy of
  the whole stack on every forward (`baddbmm(W, B, A)`), which autograd keeps for
  backward with the expert inputs. gpt_oss has no such mapping: all-linear adapts its
  attention only. ParamWrapper refuses lora_dropout > 0.
- grouped_mm is not autocast-enabled (`input.to(weight.dtype)`), so the experts compute in
  their weights' dtype: bf16 under LoRA, fp32 under full fine-tuning and fused QLoRA.

`MoeShape.fused_experts` False models per-expert `nn.Linear` modules (transformers 4.x):
NF4 under QLoRA, one adapter per expert and projection, autocast like any linear.
Whether `ModelSpec` has MoE-aware counts yet or not, everything here works from
`ModelSpec.moe` and the dense fields, so the two can land in either order.
"""

from __future__ import annotations

from dataclasses import dataclass

from sft_tui.core.errors import UserError, did_you_mean
from sft_tui.core.models.modelspec import FAMILIES, LinearShape, ModelSpec

# peft 0.21.2 utils/transformers_weight_conversion.py: v4 module names -> v5 fused parameter, per family group
_PEFT_V4_NAMES = {
    "mixtral": {"gate": "router", "w1": "gate_up_proj", "w3": "gate_up_proj", "w2": "down_proj"},
    "qwen2_moe": {"gate": "router", "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj", "down_proj": "down_proj"},
}
_PEFT_GROUP = {"mixtral": "mixtral", "qwen2_moe": "qwen2_moe", "qwen3_moe": "qwen2_moe", "olmoe": "qwen2_moe"}
_ATTENTION = ("attn_in", "attn_out")
ROUTER_BYTES_PER_SLOT = 24  # int64 expert index kept by the gather, the sort and the un-permute, per (token, expert) pair


@dataclass(frozen=True)
class BlockLinear:
    """A weight matrix of the decoder blocks, with how often it exists and how often a token goes through it."""

    shape: LinearShape
    layers: int  # decoder layers that hold it
    copies: int = 1  # per layer: num_experts for an expert projection
    per_token: int = 1  # copies a token goes through: top-k for an expert projection
    expert: bool = False
    fused: bool = False  # a 3-D (or router) nn.Parameter, not an nn.Linear: no bnb 4-bit, no autocast
    rank_factor: int = 1  # peft's rank multiplier when it adapts it (2 for the fused gate_up of w1 + w3)

    @property
    def params(self) -> int:
        """Weight parameters (biases excluded), all layers and copies."""
        return self.layers * self.copies * self.shape.in_features * self.shape.out_features

    @property
    def params_per_token(self) -> int:
        """Weight parameters a token multiplies with, all layers."""
        return self.layers * self.per_token * self.shape.in_features * self.shape.out_features


@dataclass(frozen=True)
class MoeCounts:
    """Resident and per-token parameter counts of a mixture-of-experts model."""

    resident: int  # every parameter, all experts
    active: int  # what one token goes through: all but the experts its router skips
    experts: int  # all experts' parameters, all layers
    num_experts: int
    experts_per_token: int

    def line(self) -> str:
        """`30.53B resident, 3.35B active per token (128 experts, 8 per token)`."""
        return (f"{_b(self.resident)} resident, {_b(self.active)} active per token "
                f"({self.num_experts} experts, {self.experts_per_token} per token)")


def _b(count: int) -> str:
    return f"{count / 1e9:.2f}B" if count >= 1e9 else f"{count / 1e6:.1f}M"


def sparse_layer_count(spec: ModelSpec) -> int:
    """Decoder layers with the expert MLP (the others have a dense MLP of intermediate_size)."""
    return sum(spec.moe.is_sparse(i) for i in range(spec.num_layers)) if spec.moe else 0


def _gated(spec: ModelSpec) -> bool:
    traits = FAMILIES.get(spec.family)
    return traits.gated_mlp if traits else True  # every MoE family we know gates its MLPs


def _dense_mlp_shapes(spec: ModelSpec, size: int, prefix: str = "") -> tuple[LinearShape, ...]:
    h, bias = spec.hidden_size, spec.mlp_bias
    shapes = (LinearShape(f"{prefix}up_proj", h, size, bias, "mlp_in"), LinearShape(f"{prefix}down_proj", size, h, bias, "mlp_mid"))
    return ((LinearShape(f"{prefix}gate_proj", h, size, bias, "mlp_in"),) + shapes) if _gated(spec) else shapes


def expert_shapes(spec: ModelSpec) -> tuple[LinearShape, ...]:
    """One expert's projections: the fused gate_up [h -> 2I] and down [I -> h], or per-expert gate/up/down linears."""
    moe = spec.moe
    h, inter, bias = spec.hidden_size, moe.expert_intermediate_size, moe.expert_bias
    if moe.fused_experts:
        return (LinearShape("gate_up_proj", h, 2 * inter, bias, "mlp_in"), LinearShape("down_proj", inter, h, bias, "mlp_mid"))
    if spec.family == "mixtral":
        return (LinearShape("w1", h, inter, bias, "mlp_in"), LinearShape("w3", h, inter, bias, "mlp_in"), LinearShape("w2", inter, h, bias, "mlp_mid"))
    return _dense_mlp_shapes(spec, inter)


def block_linears(spec: ModelSpec) -> tuple[BlockLinear, ...]:
    """Every weight matrix of the decoder blocks: attention, dense MLPs, and for MoE the router, experts and shared expert."""
    if spec.moe is None:
        return tuple(BlockLinear(s, spec.num_layers) for s in spec.linear_shapes())
    moe, sparse = spec.moe, sparse_layer_count(spec)
    out = [BlockLinear(s, spec.num_layers) for s in spec.linear_shapes() if s.input_of in _ATTENTION]
    if spec.num_layers - sparse:
        out += [BlockLinear(s, spec.num_layers - sparse) for s in _dense_mlp_shapes(spec, spec.intermediate_size)]
    out.append(BlockLinear(LinearShape("gate", spec.hidden_size, moe.num_experts, moe.router_bias, "mlp_in"), sparse,
                           fused=moe.fused_experts))
    out += [BlockLinear(s, sparse, moe.num_experts, moe.experts_per_token, True, moe.fused_experts) for s in expert_shapes(spec)]
    if moe.shared_expert_intermediate_size:
        out += [BlockLinear(s, sparse) for s in _dense_mlp_shapes(spec, moe.shared_expert_intermediate_size, "shared_expert.")]
    return tuple(out)


def _bias_params(spec: ModelSpec) -> tuple[int, int]:
    """(all block linears' bias parameters, those a token goes through)."""
    total = active = 0
    for x in block_linears(spec):
        if x.shape.bias:
            total += x.layers * x.copies * x.shape.out_features
            active += x.layers * x.per_token * x.shape.out_features
    return total, active


def moe_counts(spec: ModelSpec) -> MoeCounts | None:
    """Resident, active-per-token and expert parameter counts (None for a dense model).

    The rest of the model (embeddings, head, norms, attention) comes from the dense count,
    with its dense MLP swapped for the sparse layers' router, experts and shared expert; a
    ModelSpec whose count_parameters() already knows MoE (it has active_parameters()) is used as it is.
    """
    if spec.moe is None:
        return None
    linears = block_linears(spec)
    weights = sum(x.params for x in linears)
    active_weights = sum(x.params_per_token for x in linears)
    bias, active_bias = _bias_params(spec)
    expert = sum(x.params for x in linears if x.expert) + sum(x.layers * x.copies * x.shape.out_features for x in linears if x.expert and x.shape.bias)
    if hasattr(spec, "active_parameters"):  # modelspec's MoE-exact count has landed
        resident = spec.count_parameters().total
    else:
        dense = spec.count_parameters()
        dense_linears = sum(s.in_features * s.out_features + (s.out_features if s.bias else 0) for s in spec.linear_shapes())
        resident = dense.total - spec.num_layers * dense_linears + weights + bias
    skipped = (weights + bias) - (active_weights + active_bias)
    return MoeCounts(resident, resident - skipped, expert, spec.moe.num_experts, spec.moe.experts_per_token)


def resident_parameters(spec: ModelSpec) -> int:
    """Every parameter of the model (all experts for MoE): what sits in memory."""
    counts = moe_counts(spec)
    return counts.resident if counts else spec.count_parameters().total


def peft_adapts_fused(spec: ModelSpec) -> bool:
    """Whether peft 0.21.2 maps LoRA names onto this family's fused experts and router (mixtral, qwen2_moe group)."""
    return spec.moe is not None and spec.moe.fused_experts and spec.family in _PEFT_GROUP


def adapted_linears(spec: ModelSpec, targets: tuple[str, ...]) -> tuple[BlockLinear, ...]:
    """The block matrices LoRA adapts on a MoE model, as peft 0.21.2 with transformers 5.23 resolves `targets`.

    all-linear: the nn.Linear modules (attention, dense and shared MLPs; per-expert linears
    and the router when experts are nn.Linear), plus the fused experts and router where
    peft maps them (mixtral, qwen3_moe). Names: a module's own name, or the v4 expert names
    peft maps (qwen3_moe gate_proj + up_proj, down_proj, gate; mixtral w1 + w3, w2, gate).
    """
    linears = block_linears(spec)
    fused_map = _PEFT_V4_NAMES[_PEFT_GROUP[spec.family]] if peft_adapts_fused(spec) else {}

    def with_rank(x: BlockLinear) -> BlockLinear:
        if x.fused and x.shape.name == "gate_up_proj":
            return BlockLinear(x.shape, x.layers, x.copies, x.per_token, x.expert, x.fused, 2)  # w1 + w3 at rank 2r
        return x

    if "all-linear" in targets:
        return tuple(with_rank(x) for x in linears if not x.fused or fused_map)
    chosen: list[BlockLinear] = []
    known = sorted({x.shape.name for x in linears if not x.fused} | set(fused_map))
    for target in targets:
        name = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj"}.get(target, target)
        if name not in known:
            fused = " (its experts and router are fused parameters peft does not reach by name)" if spec.moe.fused_experts and not fused_map else ""
            raise UserError(f"LoRA target {target!r} is not a linear layer of {spec.name}{fused}{did_you_mean(name, known)}",
                            "--lora-targets", f"its layers are {', '.join(known)} (or use all-linear)")
        hits = [x for x in linears if not x.fused and (x.shape.name == name or x.shape.name.endswith("." + name))]
        if name in fused_map:
            wanted = fused_map[name]
            hits += [x for x in linears if x.fused and (x.shape.name == wanted or (wanted == "router" and not x.expert))]
        for x in hits:
            if x not in chosen:
                chosen.append(x)
    fused_names = [n for n, p in fused_map.items() if p == "gate_up_proj"]
    named = [n for n in fused_names if n in targets]
    if 0 < len(named) < len(fused_names):
        raise UserError(f"LoRA targets {' and '.join(fused_names)} go together on {spec.name}: peft fuses them into one gate_up adapter",
                        "--lora-targets", f"add {', '.join(n for n in fused_names if n not in named)}")
    return tuple(with_rank(x) for x in chosen)


def lora_parameter_count(spec: ModelSpec, r: int, targets: tuple[str, ...]) -> int:
    """Exact LoRA parameters on a MoE model: r x (in + out) per adapted matrix and expert (peft's ParamWrapper on a
    fused stack holds A [in -> r*E] and B [r*E -> out]: the same count)."""
    return sum(x.layers * x.copies * x.rank_factor * r * (x.shape.in_features + x.shape.out_features) for x in adapted_linears(spec, targets))


def lora_flops_params(spec: ModelSpec, r: int, targets: tuple[str, ...]) -> int:
    """LoRA parameters a token goes through (its top-k experts' adapters, not all of them)."""
    return sum(x.layers * x.per_token * x.rank_factor * r * (x.shape.in_features + x.shape.out_features) for x in adapted_linears(spec, targets))


def expert_compute_bytes(spec: ModelSpec, method: str, compute_bytes: int) -> int:
    """Bytes per element of the expert tensors: fused experts compute in their weights' dtype (grouped_mm is not autocast)."""
    if not (spec.moe and spec.moe.fused_experts):
        return compute_bytes
    return compute_bytes if method == "lora" else 4  # full: fp32 master weights; QLoRA: prepare_model_for_kbit_training's fp32


def quantised_params(spec: ModelSpec) -> int:
    """Block weights bitsandbytes turns into 4-bit: nn.Linear only (fused experts and the router parameter stay)."""
    return sum(x.params for x in block_linears(spec) if not x.fused)


def largest_quantised_matrix(spec: ModelSpec) -> int:
    """The largest 4-bit weight QLoRA dequantises at a time."""
    return max(x.shape.in_features * x.shape.out_features for x in block_linears(spec) if not x.fused)


@dataclass(frozen=True)
class MoeActivations:
    """Saved-for-backward bytes of the MLP side of a MoE model."""

    mlp_per_token: float  # all layers' MLP-side bytes per token (router, top-k expert slots, dense/shared MLPs, adapter inputs)
    merged_stacks_per_layer: float  # peft's LoRA-folded copy of a sparse layer's expert stacks (kept for backward)
    merged_grad: float  # the largest folded stack's gradient, alive in backward
    sparse_layers: int


def moe_activations(spec: ModelSpec, method: str, lora_r: int, targets: tuple[str, ...], dropout: bool, compute_bytes: int) -> MoeActivations:
    """What autograd keeps on the MLP side of every layer, per token, and the per-layer folded stacks.

    Per (token, expert) slot (grouped_mm, or per-expert linears): the gate/up output (kept by
    the activation through its view), the activation, the down output (kept by the routing
    weight's multiply) and the int64 indices; when the stack's weight needs a gradient (full
    fine-tuning, or a LoRA fold) grouped_mm also keeps its two inputs (the gathered token and
    the activated hidden). Router: fp32 softmax probabilities over all experts. Dense and
    shared MLPs as in a dense layer. Adapted nn.Linears keep their own input copy and the
    LoRA B input, as in a dense layer.
    """
    moe, full = spec.moe, method == "full"
    sparse, h = sparse_layer_count(spec), spec.hidden_size
    ce = expert_compute_bytes(spec, method, compute_bytes)
    adapted = block_linears(spec) if full else adapted_linears(spec, targets)
    stacks = [x for x in adapted if x.expert and x.fused]
    inter = moe.expert_intermediate_size
    slot = ce * (2 * inter + inter + h) + ROUTER_BYTES_PER_SLOT
    if (full and moe.fused_experts) or stacks:
        slot += ce * (h + inter)  # grouped_mm keeps its inputs when the stack's weight needs a gradient
    router = 4 * moe.num_experts + (compute_bytes * h if any(not x.expert and x.fused for x in adapted) else 0)
    gated = 3 if _gated(spec) else 1
    shared = compute_bytes * gated * moe.shared_expert_intermediate_size
    per_token = sparse * (router + moe.experts_per_token * slot + shared)
    per_token += (spec.num_layers - sparse) * compute_bytes * gated * spec.intermediate_size
    for x in adapted:
        if x.shape.input_of in _ATTENTION or x.fused:
            continue  # attention inputs are counted with the attention; fused stacks above
        uses = x.layers * x.per_token
        per_token += uses * compute_bytes * x.shape.in_features
        if not full:
            per_token += uses * (2 * compute_bytes * lora_r * x.rank_factor + (x.shape.in_features if dropout else 0))
    merged = sum(ce * x.copies * x.shape.in_features * x.shape.out_features for x in stacks)  # one sparse layer's stacks
    grad = max((ce * x.copies * x.shape.in_features * x.shape.out_features for x in stacks), default=0)
    return MoeActivations(per_token, merged, grad, sparse)
