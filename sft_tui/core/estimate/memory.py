"""Peak GPU memory of a fine-tuning run, from the model's config alone (no weights, no torch).

The model follows what PyTorch, transformers, peft and bitsandbytes allocate for the
recipes sft-tui runs, term by term, in three phases of a steady-state training step
(step >= 2, so the optimizer state exists):

  forward end     weights + optimizer state + saved activations + logits and the fp32
                  copy the loss makes (+ autocast's 16-bit weight cache in full fine-tuning)
  backward start  saved activations (one layer recomputed when checkpointing) + logits,
                  fp32 log-probs and their gradient: usually the peak
  optimizer step  weights + gradients + optimizer state + the update's temporary buffers

Preference objectives (TRL 1.16) add to this: DPO and ORPO put each example's chosen and
rejected answers through the model together (twice the sequences, so twice the saved
activations and logits); DPO and KTO run a reference model's forward without gradients
after the policy's forward, a fourth phase ("reference forward") in which the policy's
saved tensors and the reference's working tensors are alive together. Under LoRA the
reference is the base with the adapter switched off (no extra weights), or a frozen "ref"
copy of the adapter when training on from one; full fine-tuning loads a frozen copy of
the whole model in the policy's dtype (fp32 here). KTO's KL term adds no-grad forwards on
mismatched prompt/answer pairs: time, and the same working set, one forward at a time.

On several GPUs (TrainSettings.gpus > 1) every figure is one GPU's: DDP adds its gradient
buckets to a whole replica, FSDP full shard divides weights, gradients and optimizer state
by N and adds the gathered units and the gradient reduce-scatter (sharding.py); one GPU is
exactly the estimate without them.

Peak = the largest phase + CUDA context + allocator slack. Sources: Korthikanti et al.
2022 (activations), Dettmers et al. 2023 (NF4, double quantisation), transformers'
ForCausalLMLoss (`logits.float()`), peft's prepare_model_for_kbit_training (non-4-bit
weights cast to fp32) and autocast_adapter_dtype (adapters in fp32). Numbers that
measurements should set live in `Calibration`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from sft_tui.core.config.gpus import gpu_count
from sft_tui.core.config.schema import METHODS, OBJECTIVES, OPTIMIZERS, RunConfig
from sft_tui.core.data.batching import has_mask
from sft_tui.core.errors import UserError, did_you_mean
from sft_tui.core.estimate import moe_terms, sharding
from sft_tui.core.estimate.lm_head import (
    HeadMemory,
    full_logits,
    fused_head,
    gated_mlp_saved,
    liger_norm_bytes,
)
from sft_tui.core.estimate.moe_terms import MoeCounts
from sft_tui.core.models.kernels import LIGER_FAMILIES
from sft_tui.core.models.modelspec import LinearShape, ModelSpec
from sft_tui.core.units import GIB

PRECISIONS = ("bf16", "fp16", "fp32")
ATTENTIONS = ("sdpa", "flash_attention_2", "eager")
QUANT_TYPES = ("nf4", "fp4")
NF4_BLOCK = 64  # values per absmax constant (bitsandbytes 4-bit default)
DQ_BLOCK = 256  # first-level constants per second-level fp32 constant (double quantisation)
_SHORT_TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}


@dataclass(frozen=True)
class Calibration:
    """Numbers the first-principles count cannot know; GPU measurements fit them."""

    cuda_context_gib: float = 0.6  # CUDA context + cuBLAS workspace as NVML sees it: 0.3-1 GiB by GPU/driver
    allocator_slack: float = 0.10  # reserved beyond allocated, as a share of the dynamic memory
    activation_scale: float = 1.0  # 1.0 = the counted saved tensors
    calibrated_on: str = ""  # GPU and date of the measurements these came from; empty = not calibrated


DEFAULT_CALIBRATION = Calibration()


@dataclass(frozen=True)
class TrainSettings:
    """Everything about a run that changes its memory, besides the model."""

    method: str = "lora"
    seq_len: int = 2048
    batch_size: int = 1
    grad_accum: int = 1
    gradient_checkpointing: bool = True
    optimizer: str = "adamw_torch"
    precision: str = "bf16"
    attention: str = "sdpa"
    lora_r: int = 16
    lora_targets: tuple[str, ...] = ("all-linear",)
    lora_dropout: float = 0.05
    quant_type: str = "nf4"
    double_quant: bool = True
    padded: bool = True  # batches padded to seq_len with an attention mask (no packing)
    objective: str = "sft"  # sft | dpo | kto | orpo (config.method.objective)
    loss_type: str = ""  # TRL's loss variant; KTO's apo_zero_unpaired has no KL term
    reference_adapter: bool = False  # training on from an adapter: DPO/KTO keep a frozen copy of it as the reference
    liger: bool = False  # Liger Kernel's RMSNorm, RoPE and SwiGLU/GeGLU (training.liger): less kept for backward
    padding_share: float = 0.0  # share of the batches' tokens that are padding (time only: memory counts full rows)
    full_logits: bool = False  # the loss builds the full logits (a trainer other than TRL 1.16's SFT/DPO/KTO; ORPO always does)
    gpus: int = 1  # GPUs the run trains on, one process each ([distributed] gpus): the estimate is per GPU
    strategy: str = "ddp"  # ddp (a replica per GPU) | fsdp (full shard); nothing changes on one GPU

    def validate(self) -> None:
        """Raise UserError for values no run can have."""
        for name, value, choices in (("method", self.method, METHODS), ("objective", self.objective, OBJECTIVES),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("precision", self.precision, PRECISIONS), ("attention", self.attention, ATTENTIONS),
                                     ("quant_type", self.quant_type, QUANT_TYPES), ("strategy", self.strategy, sharding.STRATEGIES)):
            if value not in choices:
                raise UserError(f"{name} must be one of {', '.join(choices)}; got {value!r}{did_you_mean(value, choices)}", f"--{name.replace('_', '-')}")
        for name, value in (("seq_len", self.seq_len), ("batch_size", self.batch_size), ("grad_accum", self.grad_accum), ("lora_r", self.lora_r),
                            ("gpus", self.gpus)):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}", f"--{name.replace('_', '-')}", "use a positive number")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise UserError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}", "--lora-dropout")
        if not 0.0 <= self.padding_share < 1.0:
            raise UserError(f"padding_share must be in [0, 1), got {self.padding_share}", "padding_share")


@dataclass(frozen=True)
class Term:
    """One line of the breakdown: contract key, bytes, and why."""

    key: str
    bytes: float
    explanation: str
    label: str = ""  # a plain name when the key alone does not say it ("rejected answers' activations")

    @property
    def name(self) -> str:
        """What the report calls this term: its label, else its key."""
        return self.label or self.key


BREAKDOWN_KEYS = ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "reference", "overhead")
REFERENCE_OBJECTIVES = ("dpo", "kto")  # the objectives with a reference model (ORPO has none)


def sequences_per_example(settings: TrainSettings) -> int:
    """Sequences one example puts through the policy with gradients: DPO and ORPO run chosen and rejected together."""
    return 2 if settings.objective in ("dpo", "orpo") else 1


def kto_has_kl(settings: TrainSettings) -> bool:
    """KTO's default loss estimates a KL term from mismatched prompt/answer pairs (apo_zero_unpaired does not)."""
    return settings.objective == "kto" and settings.loss_type != "apo_zero_unpaired"


def no_grad_forwards(settings: TrainSettings) -> tuple[int, int]:
    """(forwards without gradients per micro-step, sequences in each) that TRL 1.16 runs besides the policy's.

    DPO: the reference on chosen and rejected (one forward of 2 x micro-batch sequences).
    KTO: the reference on the answers, and with the KL term the policy and the reference on
    the mismatched pairs (each micro-batch sequences, one after another).
    """
    if settings.objective == "dpo":
        return 1, 2 * settings.batch_size
    if settings.objective == "kto":
        return (3 if kto_has_kl(settings) else 1), settings.batch_size
    return 0, 0


@dataclass(frozen=True)
class MemoryEstimate:
    """The peak phase's breakdown; terms sum to the peak."""

    model: str
    settings: TrainSettings
    params: int
    trainable_params: int
    phase: str
    terms: tuple[Term, ...]
    assumptions: tuple[str, ...]
    phase_bytes: tuple[tuple[str, float], ...] = ()  # every phase's total, in order: the peak is the largest
    moe: MoeCounts | None = None  # mixture-of-experts: resident vs active-per-token parameters (params is the resident count)

    @property
    def active_params(self) -> int:
        """Parameters one token goes through (all of them for a dense model)."""
        return self.moe.active if self.moe else self.params

    @property
    def peak_bytes(self) -> float:
        """Estimated peak reserved GPU memory plus CUDA context, in bytes."""
        return sum(t.bytes for t in self.terms)

    @property
    def peak_gib(self) -> float:
        """Estimated peak in GiB."""
        return self.peak_bytes / GIB

    def breakdown_gib(self) -> dict[str, float]:
        """Contract keys -> GiB (every key present)."""
        out = dict.fromkeys(BREAKDOWN_KEYS, 0.0)
        for term in self.terms:
            out[term.key] += term.bytes / GIB
        return out


def resolve_targets(spec: ModelSpec, targets: tuple[str, ...]) -> tuple[LinearShape, ...]:
    """The linear layers LoRA adapts: 'all-linear' or names (q, v, q_proj, ...); unknown names raise.

    For a mixture-of-experts model: the adapted attention layers (the MLP side, experts and
    router, is moe_terms.adapted_linears'), after checking every name against the whole block.
    """
    if spec.moe is not None:
        adapted = moe_terms.adapted_linears(spec, targets)
        return tuple(dict.fromkeys(x.shape for x in adapted if x.shape.input_of in ("attn_in", "attn_out")))
    shapes = spec.linear_shapes()
    if "all-linear" in targets:
        return shapes
    names = {s.name: s for s in shapes}
    chosen = []
    for target in targets:
        name = target if target in names else _SHORT_TARGETS.get(target, target)
        if name not in names:
            raise UserError(f"LoRA target {target!r} is not a linear layer of {spec.name}{did_you_mean(name, names)}",
                            "--lora-targets", f"its layers are {', '.join(names)} (or use all-linear)")
        if names[name] not in chosen:
            chosen.append(names[name])
    return tuple(chosen)


def lora_parameter_count(spec: ModelSpec, settings: TrainSettings) -> int:
    """Exact LoRA A/B parameter count: r x (in + out) per adapted layer, in every block (and every expert)."""
    if spec.moe is not None:
        return moe_terms.lora_parameter_count(spec, settings.lora_r, settings.lora_targets)
    return spec.num_layers * sum(settings.lora_r * (s.in_features + s.out_features) for s in resolve_targets(spec, settings.lora_targets))


def effective_attention(spec: ModelSpec, settings: TrainSettings) -> str:
    """The attention kernel the run really gets: transformers 5 has no SDPA path for Gemma 2 or gpt-oss (its attention sinks)."""
    if spec.family in ("gemma2", "gpt_oss") and settings.attention == "sdpa":
        return "eager"
    return settings.attention


def uses_fused_head(settings: TrainSettings) -> bool:
    """Whether the loss runs through TRL 1.16's fused LM head (SFT, DPO, KTO) instead of full logits (ORPO)."""
    return settings.objective != "orpo" and not settings.full_logits


def liger_applies(spec: ModelSpec, settings: TrainSettings) -> bool:
    """Whether Liger's layer kernels replace transformers' here: asked for, a family Liger patches, a trainer that applies it."""
    return settings.liger and spec.family in LIGER_FAMILIES and settings.objective != "orpo"


def _layer_activation_bytes_per_token(spec: ModelSpec, settings: TrainSettings, targets: tuple[LinearShape, ...], compute_bytes: int) -> float:
    """Bytes autograd keeps per token for one decoder layer (no checkpointing).

    Counted from what transformers + peft save for backward under autocast, checked
    against torch's saved-tensor hooks in tests/unit/test_estimator_activations.py:
    RMSNorm keeps its fp32 input (and, when its weight trains, the fp32 normalised value;
    the residual stream is fp32 under fp32 master weights); every trained or adapted
    linear keeps its own 16-bit copy of its input (autocast casts per call, so q/k/v do
    not share one); SDPA keeps q, k/v (repeated to every head when a padding mask is
    used), its output, the log-sum-exp and a float copy of the mask; eager attention
    keeps fp32 probabilities and a 16-bit copy (seq per head); a gated MLP keeps the
    gate output, its activation and the up branch.

    With Liger (lm_head.py): each RMSNorm keeps its input in the residual's own dtype and
    an fp32 rstd per row, nothing else; the fused SwiGLU/GeGLU keeps the gate and up
    outputs only. RoPE keeps the same cos/sin either way.
    """
    h, a, hd, inter = spec.hidden_size, spec.num_attention_heads, spec.head_dim, spec.intermediate_size
    q, kv = a * hd, spec.num_kv_heads * hd
    full = settings.method == "full"
    liger = liger_applies(spec, settings)
    if liger:
        norms = spec.traits.norms_per_layer * liger_norm_bytes(h, 4 if full else compute_bytes)
    else:
        norms = spec.traits.norms_per_layer * (4 * h + (4 * h if full else 0) + 4)
    if spec.traits.qk_norm:  # Qwen3's per-head norms: fp32 queries and keys, or (Liger) the 16-bit ones + an rstd per head
        norms += (compute_bytes * (q + kv) + 4 * (a + spec.num_kv_heads)) if liger else 4 * (q + kv)
    if effective_attention(spec, settings) == "eager":
        attention = compute_bytes * q + 2 * compute_bytes * q + (4 + compute_bytes) * a * settings.seq_len  # q, repeated k and v, probabilities
        if spec.family == "gemma2":
            attention += compute_bytes * a * settings.seq_len  # soft-capping keeps tanh(scores / cap) too
    else:
        kv_kept = 2 * compute_bytes * (q if (settings.padded or kv == q) else kv)
        mask = compute_bytes * settings.seq_len if settings.padded else 0  # SDPA turns the boolean mask into a float one per call
        attention = 2 * compute_bytes * q + kv_kept + 4 * a + mask
    mlp = gated_mlp_saved(inter, compute_bytes, liger) if spec.traits.gated_mlp else compute_bytes * inter
    trained = spec.linear_shapes() if full else targets
    if spec.moe is not None:  # the MLP side (router, top-k experts, adapters there) averaged over the layers
        mlp = moe_terms.moe_activations(spec, settings.method, settings.lora_r, settings.lora_targets, settings.lora_dropout > 0,
                                        compute_bytes).mlp_per_token / spec.num_layers
        trained = tuple(s for s in trained if s.input_of in ("attn_in", "attn_out"))
    inputs = compute_bytes * sum(t.in_features for t in trained)
    if not full and settings.lora_dropout > 0:
        inputs += sum(t.in_features for t in targets)  # CUDA dropout keeps a one-byte mask per element
    lora_b = 0 if full else 2 * compute_bytes * settings.lora_r * len(targets)
    return norms + attention + mlp + inputs + lora_b


@dataclass(frozen=True)
class _ActivationParts:
    per_layer_token: float  # bytes per token of one layer, all saved tensors
    kept_per_token: float  # bytes per token checkpointing keeps per layer (its input)
    copies_blocks: float  # autocast's 16-bit copies of the trained block weights (all layers)
    copies_head: float  # ... of the output head (full fine-tuning)
    head_inputs_per_token: float  # final norm (+ lm_head input when it trains)
    stacks_per_layer: float = 0.0  # MoE under LoRA: peft's adapter-folded copy of one sparse layer's expert stacks
    stack_grad: float = 0.0  # ... and the largest stack's gradient in backward
    sparse_layers: int = 0


def _activation_parts(spec: ModelSpec, settings: TrainSettings, targets: tuple[LinearShape, ...], trainable: int) -> _ActivationParts:
    compute_bytes = 4 if settings.precision == "fp32" else 2
    full = settings.method == "full"
    h = spec.hidden_size
    autocast = compute_bytes == 2  # 16-bit runs compute under autocast, which casts each trained weight once per forward
    block_linear = sum(x.params for x in moe_terms.block_linears(spec) if not x.fused)  # autocast casts nn.Linear weights only
    stacks = moe_terms.moe_activations(spec, settings.method, settings.lora_r, settings.lora_targets, settings.lora_dropout > 0,
                                       compute_bytes) if spec.moe is not None and not full else None
    fused = uses_fused_head(settings)
    return _ActivationParts(
        per_layer_token=_layer_activation_bytes_per_token(spec, settings, targets, compute_bytes),
        kept_per_token=(4 if full else compute_bytes) * h,  # under fp32 master weights the residual stream is fp32
        copies_blocks=(compute_bytes * block_linear if full else compute_bytes * trainable) if autocast else 0.0,
        # full logits only: the head runs as an nn.Linear under autocast (TRL's fused head casts weight slices per tile)
        copies_head=compute_bytes * spec.vocab_size * h if (full and autocast and not fused) else 0.0,
        head_inputs_per_token=_head_inputs_per_token(spec, settings, compute_bytes, fused),
        stacks_per_layer=stacks.merged_stacks_per_layer if stacks else 0.0,
        stack_grad=stacks.merged_grad if stacks else 0.0,
        sparse_layers=stacks.sparse_layers if stacks else 0,
    )


def _head_inputs_per_token(spec: ModelSpec, settings: TrainSettings, compute_bytes: int, fused: bool) -> float:
    """Per token, what the final norm keeps (and, with full logits, the head's input and Gemma 2's tanh(logits / cap)).

    Under TRL's fused head the head's saved input is the head's own term (lm_head.py), and
    the soft-capping happens inside its tiles.
    """
    h, full = spec.hidden_size, settings.method == "full"
    if liger_applies(spec, settings):
        norm = liger_norm_bytes(h, 4 if full else compute_bytes)
    else:
        norm = 4 * h + (4 * h if full else 0)  # fp32 input (+ the fp32 normalised value when its weight trains)
    if fused:
        return norm
    return norm + (compute_bytes * h if full else 0) + (compute_bytes * spec.vocab_size if spec.family == "gemma2" else 0)


def head_memory(spec: ModelSpec, settings: TrainSettings, tokens: int) -> HeadMemory:
    """The loss's memory at the output for `tokens` positions: TRL's fused head (SFT, DPO, KTO) or full logits (ORPO).

    The final hidden states are fp32 when the final norm's weight is (full fine-tuning's
    master weights, QLoRA's k-bit preparation); so is the head's weight, whose slices the
    fused head casts tile by tile.
    """
    compute_bytes = 4 if settings.precision == "fp32" else 2
    if not uses_fused_head(settings):
        return full_logits(tokens, spec.vocab_size, compute_bytes)
    fp32_head = settings.method in ("full", "qlora") or compute_bytes == 4
    weight_grad_temp = settings.method == "full" and settings.grad_accum > 1  # else the fresh gradient is the head's .grad
    return fused_head(tokens, spec.hidden_size, spec.vocab_size, compute_bytes, 4 if fp32_head else compute_bytes,
                      4 if fp32_head else compute_bytes, settings.objective, weight_grad_temp)


def saved_activation_bytes(spec: ModelSpec, settings: TrainSettings) -> float:
    """Bytes autograd holds at the end of the forward pass, weights excluded (what tests measure on CPU).

    The layers' saved tensors (or, with checkpointing, each layer's input), autocast's
    weight copies, the final norm's saved tensors, and what the loss keeps: TRL's fused
    head's saved tensors, or with full logits the fp32 log-probabilities.
    """
    targets = spec.linear_shapes() if settings.method == "full" else resolve_targets(spec, settings.lora_targets)
    trainable = moe_terms.resident_parameters(spec) if settings.method == "full" else lora_parameter_count(spec, settings)
    parts = _activation_parts(spec, settings, targets, trainable)
    tokens = settings.batch_size * settings.seq_len
    per_token = parts.kept_per_token if settings.gradient_checkpointing else parts.per_layer_token
    copies = 0.0 if settings.gradient_checkpointing else parts.copies_blocks + parts.sparse_layers * parts.stacks_per_layer
    head = head_memory(spec, settings, tokens)
    return spec.num_layers * per_token * tokens + copies + parts.copies_head + parts.head_inputs_per_token * tokens + head.saved


PHASES = ("forward end", "backward start", "optimizer step", "reference forward")


def _policy_activations(parts: _ActivationParts, settings: TrainSettings, layers: int, per_layer_token: float,
                        dequant: float, batch: int) -> tuple[float, float, float]:
    """(at the forward's fullest, kept after the forward, at the backward start) for `batch` sequences of seq_len.

    With checkpointing, autocast's weight copies live only inside the forward (its cache is
    cleared when the forward returns) and one layer's in backward; the dequantised QLoRA
    weight is a temporary of whichever forward runs. Under MoE LoRA, peft folds the adapters
    into a copy of each sparse layer's expert stacks, kept for backward: every layer's
    without checkpointing, one layer's (with its gradient in backward) with it.
    """
    tokens = batch * settings.seq_len
    stacks, stack_grad = parts.stacks_per_layer, parts.stack_grad
    bool_mask = batch * settings.seq_len * settings.seq_len if settings.padded else 0  # the model-level boolean mask
    head_inputs = parts.head_inputs_per_token * tokens
    if settings.gradient_checkpointing:
        kept = layers * parts.kept_per_token * tokens
        fwd = kept + bool_mask + head_inputs + dequant + parts.copies_blocks + parts.copies_head + stacks  # autocast's cache at its fullest
        after = kept + bool_mask + head_inputs + parts.copies_head
        bwd = (kept + per_layer_token * tokens + parts.copies_blocks / layers + parts.copies_head + bool_mask + head_inputs + dequant
               + stacks + stack_grad)
        return fwd, after, bwd
    saved = (layers * per_layer_token * tokens + parts.copies_blocks + parts.copies_head + bool_mask + head_inputs
             + parts.sparse_layers * stacks)
    return saved + dequant, saved, saved + dequant + stack_grad


def _reference_terms(spec: ModelSpec, settings: TrainSettings, trainable: int, block_linear: int, compute_bytes: int,
                     dequant: float) -> tuple[list[Term], float, str]:
    """(resident reference weights, the reference forward's working bytes, why) for DPO and KTO as TRL 1.16 runs them.

    The reference forward runs under no_grad after the policy's, so it keeps nothing for
    backward: one layer's tensors at a time (the residual stream in and out, the normed
    input, then the larger of attention's q/k/v/output and the MLP's branches), the
    model-level mask, and TRL's fused LM head (log-probs in 4096 x 32768 tiles, no full
    logits; lm_head.py). Full fine-tuning's reference is a second model (TRL loads it in the policy's
    dtype: fp32 here); its weights require grad, so autocast caches a 16-bit copy of each
    block weight until the reference's forward returns.
    """
    full = settings.method == "full"
    h, inter, a = spec.hidden_size, spec.intermediate_size, spec.num_attention_heads
    q, kv = a * spec.head_dim, spec.num_kv_heads * spec.head_dim
    count, batch = no_grad_forwards(settings)
    tokens = batch * settings.seq_len
    resident = []
    if full:
        resident.append(Term("reference", 4.0 * moe_terms.resident_parameters(spec),
                             f"a frozen copy of the whole model in fp32, {_n(moe_terms.resident_parameters(spec))} params x 4 B "
                             "(TRL loads it in the policy's dtype; LoRA would need none)", "reference model (frozen fp32 copy)"))
    elif settings.reference_adapter:
        resident.append(Term("reference", 4.0 * trainable, f"TRL's frozen 'ref' copy of the starting adapter, {_n(trainable)} params x 4 B (fp32)",
                             "reference adapter (frozen copy)"))
    resid = 4 if full else compute_bytes  # the residual stream is fp32 under fp32 master weights
    kv_live = 2 * (q if (settings.padded or kv == q) else kv)  # k/v repeated to every head when a padding mask is used
    attention = compute_bytes * (2 * q + kv_live)  # q, k, v, output
    if effective_attention(spec, settings) == "eager":
        attention += (4 + compute_bytes) * a * settings.seq_len  # scores per head (fp32 softmax + its 16-bit copy)
    mlp = compute_bytes * (3 if spec.traits.gated_mlp else 2) * inter
    if spec.moe is not None:  # a token's top-k experts: gate/up, activation, down output; the router's probabilities
        moe = spec.moe
        ce = moe_terms.expert_compute_bytes(spec, settings.method, compute_bytes)
        mlp = max(mlp if moe_terms.sparse_layer_count(spec) < spec.num_layers else 0,
                  moe.experts_per_token * ce * (4 * moe.expert_intermediate_size + h) + 4 * moe.num_experts)
    layer = (2 * resid + compute_bytes) * h + max(attention, mlp)
    mask = batch * settings.seq_len * settings.seq_len if settings.padded else 0
    head = head_memory(spec, settings, tokens).no_grad  # the reference's own head: fused, like the policy's (TRL patches both)
    cache = compute_bytes * block_linear if (full and compute_bytes == 2) else 0.0
    work = layer * tokens + mask + head + dequant + cache
    what = ("chosen + rejected answers" if settings.objective == "dpo" else
            "the answers; the KL term's mismatched prompt/answer pairs run the same way, one forward at a time" if kto_has_kl(settings)
            else "the answers")
    text = (f"{tokens:,} tokens ({what}) without gradients after the policy's forward: one layer's tensors at a time "
            f"({_kib(layer)} KiB/token) + log-probs in tiles (TRL's fused head)")
    if cache:
        text += f" + autocast's {'bf16' if settings.precision == 'bf16' else 'fp16'} copies of the reference's weights {_g(cache)} GiB"
    if kto_has_kl(settings):
        text += f"; {count} such forwards per micro-batch (the policy's KL forward runs before its own, with nothing saved yet)"
    return resident, work, text


def _optimizer_bytes(spec: ModelSpec, settings: TrainSettings, trainable: int, targets: tuple[LinearShape, ...]) -> tuple[float, float, str]:
    """(state bytes, temporary bytes during the update, explanation)."""
    if settings.optimizer == "adamw_torch":
        # the trainer runs torch's fused AdamW (transformers' adamw_torch_fused): it updates in
        # place, without the full-size temporaries of the multi-tensor (foreach) version
        return 8.0 * trainable, 0.0, "AdamW (fused): two fp32 moments per trainable parameter"
    if settings.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        paged = " (paged: can spill to CPU memory when the GPU is full)" if settings.optimizer.startswith("paged") else ""
        return 2.0 * trainable, 0.0, f"8-bit AdamW: two 8-bit moments per trainable parameter{paged}"
    if settings.optimizer == "sgd":
        return 0.0, 0.0, "SGD without momentum keeps no state"
    # Adafactor keeps factored second moments: one row and one column vector per matrix
    if settings.method == "full":
        # a fused expert stack [E, out, in] keeps a row and a column per expert
        matrices = [(x.shape.in_features, x.shape.out_features) for x in moe_terms.block_linears(spec) for _ in range(x.layers * x.copies)]
        matrices += [(spec.vocab_size, spec.hidden_size)] * (1 if spec.tie_word_embeddings else 2)  # embedding (+ untied head)
        vectors = trainable - sum(i * o for i, o in matrices)  # norms and biases keep a full second moment
    elif spec.moe is not None:  # peft's A [in -> r'E] and B [r'E -> out] per adapted matrix
        matrices = [pair for x in moe_terms.adapted_linears(spec, settings.lora_targets) for _ in range(x.layers)
                    for pair in ((x.shape.in_features, x.copies * x.rank_factor * settings.lora_r),
                                 (x.copies * x.rank_factor * settings.lora_r, x.shape.out_features))]
        vectors = 0
    else:
        matrices = [(t.in_features, settings.lora_r) for t in targets] * spec.num_layers + [(settings.lora_r, t.out_features) for t in targets] * spec.num_layers
        vectors = 0
    state = 4.0 * (sum(i + o for i, o in matrices) + max(vectors, 0))
    return state, 0.0, "Adafactor: factored second moments (a row and a column per matrix)"


def estimate_memory(spec: ModelSpec, settings: TrainSettings, calibration: Calibration = DEFAULT_CALIBRATION) -> MemoryEstimate:
    """Peak GPU memory of one training step of `spec` with `settings`, broken down: per GPU when settings.gpus > 1."""
    settings.validate()
    full, qlora = settings.method == "full", settings.method == "qlora"
    compute_bytes = 4 if settings.precision == "fp32" else 2
    dtype = "fp32" if compute_bytes == 4 else settings.precision
    moe = moe_terms.moe_counts(spec)
    total = moe.resident if moe else spec.count_parameters().total
    shapes = spec.linear_shapes()
    layers, hidden, vocab = spec.num_layers, spec.hidden_size, spec.vocab_size
    block_linear = moe_terms.quantised_params(spec)  # the nn.Linear weights of the blocks (what bitsandbytes quantises)
    targets = shapes if full else resolve_targets(spec, settings.lora_targets)
    trainable = total if full else lora_parameter_count(spec, settings)
    tokens = settings.batch_size * settings.seq_len
    assumptions = ["steady state (step 2 on): the optimizer state exists"]
    experts_term = None  # MoE: all experts' weights, resident, as a line of their own
    if moe:
        assumptions.append(f"mixture of experts: {moe.line()}; every expert's weights are resident, a token's activations and FLOPs "
                           "follow its top-k experts and the router")

    # weights
    if full:
        weights = Term("weights", 4.0 * total, f"fp32 weights, {_n(total)} params x 4 B (the master copy; matmuls run in {dtype} under autocast)" if compute_bytes == 2 else f"fp32 weights, {_n(total)} params x 4 B")
        assumptions.append("full fine-tuning keeps fp32 master weights and fp32 gradients (mixed precision)")
    elif qlora:
        constants = block_linear / NF4_BLOCK * (1 + 4 / DQ_BLOCK) if settings.double_quant else block_linear / NF4_BLOCK * 4
        if sharding.spread(settings) == "fsdp":
            assumptions.append("QLoRA under FSDP: the 4-bit weights are stored in the compute dtype (bnb_4bit_quant_storage), "
                               "so FSDP shards them like any other tensor")
        other = total - block_linear
        fused = moe.experts if (moe and spec.moe.fused_experts) else 0  # fused expert stacks: not nn.Linear, so not 4-bit
        weights = Term("weights", 0.5 * block_linear + constants + 4.0 * (other - fused),
                       f"{settings.quant_type.upper()} linears {_n(block_linear)} x 0.5 B + constants {_g(constants)} GiB; "
                       f"{_n(other - fused)} other params (embeddings, head, norms{', routers' if moe else ''}) in fp32")
        if fused:
            experts_term = Term("weights", 4.0 * fused,
                                f"all {moe.num_experts} experts x {moe_terms.sparse_layer_count(spec)} layers, {_n(fused)} params x 4 B: "
                                "fused 3-D tensors that bitsandbytes 4-bit does not quantise (it replaces nn.Linear only); "
                                "prepare_model_for_kbit_training casts them to fp32", "experts' weights (all resident, fp32)")
            assumptions.append("QLoRA on fused experts (transformers 5): bitsandbytes leaves the expert stacks unquantised and peft casts "
                               "them to fp32; quantising them (bitsandbytes' replace_parameter_4bit) would make them 0.5 B a parameter")
        elif moe:
            assumptions.append(f"QLoRA: every expert is an nn.Linear, in {settings.quant_type.upper()} like the other linears")
        assumptions.append("QLoRA: peft's prepare_model_for_kbit_training casts every non-4-bit weight to fp32")
    elif moe:
        weights = Term("weights", compute_bytes * (total - moe.experts),
                       f"{dtype} frozen base weights outside the experts (attention, routers, embeddings, head, norms), "
                       f"{_n(total - moe.experts)} params x {compute_bytes} B")
        experts_term = Term("weights", compute_bytes * moe.experts,
                            f"all {moe.num_experts} experts x {moe_terms.sparse_layer_count(spec)} layers, {_n(moe.experts)} params x "
                            f"{compute_bytes} B: resident although a token uses {moe.experts_per_token}", f"experts' weights (all resident, {dtype})")
    else:
        weights = Term("weights", compute_bytes * total, f"{dtype} frozen base weights, {_n(total)} params x {compute_bytes} B")
    trainable_term = Term("trainable", 0.0 if full else 4.0 * trainable,
                          "none extra: every weight trains (the fp32 weights are the master copy)" if full else
                          f"LoRA A/B on {_adapted_text(spec, settings, targets)}, r={settings.lora_r}: {_n(trainable)} params x 4 B (fp32)")
    if not full:
        assumptions.append("LoRA adapters, their gradients and optimizer state are fp32 (peft upcasts adapters)")

    spread = sharding.spread_for(spec, settings, trainable, compute_bytes, block_linear // layers)
    runs = sharding.optimizer_that_runs(settings)
    if runs != settings.optimizer:
        assumptions.append(f"{settings.optimizer} runs as {runs} under FSDP: bitsandbytes' 8-bit optimizers cannot step sharded "
                           "parameters (the trainer swaps it; its state is sharded instead)")
    state, update_tmp, opt_text = _optimizer_bytes(spec, replace(settings, optimizer=runs), trainable, targets)
    grads_all = 4.0 * trainable
    if spread is not None and spread.sharded:  # weights, gradients and optimizer state split over the GPUs
        n = spread.gpus
        kept = constants if qlora else 0.0
        weights = replace(weights, bytes=spread.share(weights.bytes, kept), label=f"sharded weights / {n}",
                          explanation=weights.explanation + f"; / {n} GPUs" + (" (the quantisation constants, not parameters, "
                                                                               "stay whole on every GPU)" if kept else ""))
        if experts_term:
            experts_term = replace(experts_term, bytes=spread.share(experts_term.bytes), label=f"{experts_term.label} / {n}")
        if not full:
            trainable_term = replace(trainable_term, bytes=spread.share(trainable_term.bytes), label=f"sharded adapters / {n}",
                                     explanation=trainable_term.explanation + f"; / {n} GPUs")
        state, update_tmp, opt_text = spread.share(state), spread.share(update_tmp), f"{opt_text}; sharded / {n} GPUs"
        assumptions += spread.assumptions()
    elif spread is not None:
        assumptions += spread.assumptions()

    # activations (per sequence the policy runs: DPO and ORPO run each example's chosen and rejected answers)
    attention = effective_attention(spec, settings)
    if attention != settings.attention:
        assumptions.append(f"{spec.family} runs {attention} attention in transformers 5 (no SDPA path): seq x seq scores per head")
    parts = _activation_parts(spec, settings, targets, trainable)
    if spread is not None and spread.sharded:  # the gathered 16-bit units are what the layers compute with: autocast caches nothing
        parts = replace(parts, copies_blocks=0.0, copies_head=0.0)
    per_layer_token = parts.per_layer_token * calibration.activation_scale
    dequant = moe_terms.largest_quantised_matrix(spec) * compute_bytes if qlora else 0  # one weight dequantised at a time
    head_params = vocab * hidden
    act = _policy_activations(parts, settings, layers, per_layer_token, dequant, settings.batch_size)
    if settings.gradient_checkpointing:
        act_text = f"{layers} layer inputs kept + one layer recomputed in backward ({_kib(per_layer_token)} KiB/token)"
    else:
        act_text = f"{layers} layers x {_kib(per_layer_token)} KiB per token x {tokens:,} tokens"
    autocast_cache = parts.copies_blocks + parts.copies_head if full else 0.0
    if autocast_cache:
        act_text += f" + autocast's {dtype} weight copies {_g(autocast_cache)} GiB"
    if attention == "eager":
        act_text += " (eager attention keeps seq x seq probabilities per head)"
    if moe:
        act_text += f"; each token through {moe.experts_per_token} of {moe.num_experts} experts"
        if parts.stacks_per_layer:
            kept = "every sparse layer's" if not settings.gradient_checkpointing else "one layer's"
            act_text += (f" + {kept} LoRA-folded expert copy ({_g(parts.stacks_per_layer)} GiB a layer: peft adds the adapters "
                         "to a copy of the expert weights each forward)")
            assumptions.append("peft folds LoRA on fused experts into a copy of each layer's expert weights every forward "
                               "(kept for backward, with its gradient in backward); it refuses lora_dropout > 0 there")

    # the loss at the model's output (lm_head.py): TRL's fused LM head in tiles, or ORPO's full logits
    pairs = sequences_per_example(settings) == 2
    sequences = (2 if pairs else 1) * settings.batch_size
    head = head_memory(spec, settings, tokens)
    head_all = head_memory(spec, settings, sequences * settings.seq_len) if pairs else head
    act_all = _policy_activations(parts, settings, layers, per_layer_token, dequant, sequences) if pairs else act
    # the backward runs the head's own backward first, then the layers' (the last one recomputed with checkpointing): the
    # larger moment is the phase's peak; with full logits their gradients stay through the layers', so they add up
    head_first = head_all.fused and act_all[1] + head_all.backward >= act_all[2] + head_all.after_backward

    def at_backward(act_t: tuple[float, float, float], h: HeadMemory) -> tuple[float, float]:
        if not h.fused:
            return act_t[2], h.backward
        return (act_t[1], h.backward) if head_first else (act_t[2], h.after_backward)

    bwd_moment = "backward start" if head_first or not head.fused else "layers' backward"
    bwd_act, bwd_logits = at_backward(act, head)
    bwd_act_text = f"what the forward kept, while the LM head's backward runs first ({act_text})" if head_first else act_text
    if head.fused:
        assumptions.append("TRL 1.16's fused LM head takes the loss in tiles of 4,096 tokens x 32,768 vocab: the full logits "
                           "are never built; every position counted as scored (a completion-only loss scores fewer)")
    else:
        assumptions.append("the loss builds the full logits and upcasts them to fp32 (transformers' ForCausalLMLoss"
                           + (", as ORPO's trainer runs it)" if settings.objective == "orpo" else ")"))
    assumptions.append("padded batches with an attention mask, every row counted at seq_len" if settings.padded
                       else "packed rows, no padding mask")
    if liger_applies(spec, settings):
        assumptions.append("Liger kernels: each RMSNorm keeps its input + one fp32 rstd per row, the fused SwiGLU/GeGLU keeps "
                           "the gate and up outputs (RoPE keeps the same cos/sin)"
                           + ("; the experts' MLP is counted as transformers runs it" if moe else ""))
    elif settings.liger:
        why = "ORPO's trainer does not apply Liger" if settings.objective == "orpo" else f"Liger has no kernels for {spec.family}"
        assumptions.append(f"Liger asked for, but {why}: counted without it")

    extra: dict[str, list[Term]] = {phase: [] for phase in PHASES}  # the objective's own terms, per phase
    if pairs:
        act_text = f"chosen answers: {act_text}"
        bwd_act_text = f"chosen answers: {bwd_act_text}"
        why = f"{tokens:,} more tokens: each example's rejected answer goes through the model with its chosen one"
        all_bwd_act, all_bwd_logits = at_backward(act_all, head_all)
        for phase, size in (("forward end", act_all[0] - act[0]), ("backward start", all_bwd_act - bwd_act),
                            ("reference forward", act_all[1] - act[1])):
            extra[phase].append(Term("activations", size, why, "rejected answers' activations"))
        logits_why = (f"{tokens:,} more scored positions in the same tiles (their hidden states, statistics, gradients)" if head.fused
                      else f"{tokens:,} more tokens x {vocab:,} vocab, as for the chosen answers")
        for phase, size in (("forward end", head_all.forward - head.forward), ("backward start", all_bwd_logits - bwd_logits),
                            ("reference forward", head_all.held - head.held)):
            extra[phase].append(Term("logits", size, logits_why, "rejected answers' logits"))
        assumptions.append(f"{settings.objective.upper()}: chosen and rejected answers run through the model together "
                           "(2 x micro-batch sequences, each up to seq_len)")
    if settings.objective == "orpo":
        assumptions.append("ORPO needs no reference model: its odds ratio compares the policy's own chosen and rejected answers")

    resident: list[Term] = []  # held in every phase
    ref_work = 0.0
    if settings.objective in REFERENCE_OBJECTIVES:
        sharded = spread is not None and spread.sharded  # FSDP wraps the reference like the policy: no autocast copies
        resident, work, ref_text = _reference_terms(spec, settings, trainable, 0 if sharded else block_linear, compute_bytes, dequant)
        if sharded:
            resident = [replace(t, bytes=spread.share(t.bytes), label=f"{t.label} / {spread.gpus}") for t in resident]
        ref_work = work
        extra["reference forward"].append(Term("reference", work, ref_text, "reference forward (no-grad)"))
        assumptions.append("reference model: a frozen copy of the whole model, in fp32 like the policy (TRL loads it in the policy's dtype)" if full
                           else "reference model: TRL's frozen 'ref' copy of the adapter training starts from" if settings.reference_adapter
                           else "reference model: the base with the LoRA adapter switched off (TRL), so no extra weights")

    grads_all = spread.share(grads_all) if spread is not None else grads_all
    head_grad = spread.share(4.0 * head_params) if spread is not None else 4.0 * head_params
    grads_bwd = grads_all if (not full or settings.grad_accum > 1) else head_grad
    grads_bwd_text = "fp32 gradients of the trainable params" if grads_bwd == grads_all else "the head's gradient (the others appear as activations are freed)"
    grads_fwd = Term("gradients", grads_all if settings.grad_accum > 1 else 0.0, "gradients accumulated over micro-batches" if settings.grad_accum > 1 else "none yet")
    phases = {
        "forward end": [grads_fwd, Term("optimizer", state, opt_text), Term("activations", act[0], act_text),
                        Term("logits", head.forward, head.text("forward end", vocab, dtype))],
        "backward start": [Term("gradients", grads_bwd, grads_bwd_text), Term("optimizer", state, opt_text),
                           Term("activations", bwd_act, bwd_act_text), Term("logits", bwd_logits, head.text(bwd_moment, vocab, dtype))],
        "optimizer step": [Term("gradients", grads_all, "fp32 gradients of every trainable parameter"),
                           Term("optimizer", state + update_tmp, opt_text + (" + one fp32 buffer per parameter during the update" if update_tmp else "")),
                           Term("activations", 0.0, "freed after backward"), Term("logits", 0.0, "freed after backward")],
    }
    if settings.objective in REFERENCE_OBJECTIVES:
        # after the policy's forward: what it saved for backward stays while the reference runs
        kept_text = (f"{layers} layer inputs" if settings.gradient_checkpointing else f"{layers} layers x {_kib(per_layer_token)} KiB per token") + \
            (" + the head's autocast copy" if parts.copies_head else "")
        phases["reference forward"] = [grads_fwd, Term("optimizer", state, opt_text),
                                       Term("activations", act[1], f"{'chosen answers: ' if pairs else ''}what the policy's forward saved for "
                                                                   f"backward ({kept_text}), held while the reference runs"),
                                       Term("logits", head.held, head.text("reference forward", vocab, dtype))]
    best_phase, best_terms, best_total = "", [], -1.0
    totals = []
    for phase, terms in phases.items():
        if spread is not None and spread.sharded:
            terms = [replace(t, explanation=f"{t.explanation}; sharded / {spread.gpus} GPUs") if t.key == "gradients" and t.bytes else t
                     for t in terms]
        terms = terms + extra[phase] + _spread_terms(spread, phase, dtype)
        dynamic = (sum(t.bytes for t in terms if t.key in ("activations", "logits") or t.label in _SPREAD_TEMPORARY)
                   + (update_tmp if phase == "optimizer step" else 0) + (ref_work if phase == "reference forward" else 0))
        nccl = spread.communication() if spread is not None else 0.0
        overhead = Term("overhead", calibration.cuda_context_gib * GIB + nccl + calibration.allocator_slack * dynamic,
                        f"CUDA context {calibration.cuda_context_gib:g} GiB" + (f" + NCCL buffers {nccl / GIB:g} GiB" if nccl else "")
                        + f" + allocator slack {calibration.allocator_slack:.0%} of the temporary memory")
        all_terms = [weights, *([experts_term] if experts_term else []), trainable_term, *resident, *terms, overhead]
        peak = sum(t.bytes for t in all_terms)
        totals.append((phase, peak))
        if peak > best_total:
            best_phase, best_terms, best_total = phase, all_terms, peak
    assumptions.append(f"CUDA context {calibration.cuda_context_gib:g} GiB and allocator slack {calibration.allocator_slack:.0%}; "
                       "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True lowers the slack")
    assumptions.append(f"calibrated on {calibration.calibrated_on}" if calibration.calibrated_on else
                       "saved activations match autograd within 5% (measured on CPU); the peak itself "
                       "(allocator, CUDA context, temporaries) is not yet calibrated on a GPU")
    ordered = tuple(sorted(best_terms, key=lambda t: BREAKDOWN_KEYS.index(t.key)))
    return MemoryEstimate(spec.name, settings, total, trainable, best_phase, ordered, tuple(assumptions), tuple(totals), moe)


_SPREAD_TEMPORARY = ("gathered layers (FSDP)", "gradient reduce-scatter (FSDP)")  # allocated and freed every layer


def _spread_terms(spread: sharding.Spread | None, phase: str, dtype: str) -> list[Term]:
    """What several GPUs add to `phase`: DDP's gradient buckets; FSDP's gathered units and the gradient reduce-scatter."""
    if spread is None:
        return []
    if not spread.sharded:
        return [Term("gradients", spread.buckets, f"a flat copy of every trainable gradient ({_n(spread.buckets / 4)} params x 4 B) "
                     f"in {sharding.DDP_BUCKET_CAP_MB} MB buckets, all-reduced over {spread.gpus} GPUs", "DDP gradient buckets")]
    units = spread.units
    out = []
    gathered = spread.gathered(phase)
    if gathered:
        out.append(Term("weights", gathered, f"two decoder layers in {dtype} ({_g(units.layer)} GiB each: computing + prefetched) "
                        f"+ the tail (norm + lm_head, {_g(units.tail)} GiB), kept from its forward to its backward",
                        _SPREAD_TEMPORARY[0]))
    scatter = spread.reduce_scatter(phase)
    if scatter:
        out.append(Term("gradients", scatter, f"one unit's {dtype} gradients + the flat buffer they are reduced from, its "
                        f"1/{spread.gpus} result and that in fp32", _SPREAD_TEMPORARY[1]))
    return out


def _adapted_text(spec: ModelSpec, settings: TrainSettings, targets: tuple[LinearShape, ...]) -> str:
    """`7 layer types x 32 blocks`, or for MoE what peft adapts: `attention (4 types) + router + every expert's gate_up, down`."""
    if spec.moe is None:
        return f"{len(targets)} layer types x {spec.num_layers} blocks"
    adapted = moe_terms.adapted_linears(spec, settings.lora_targets)
    parts = [f"attention ({len(targets)} types)"] if targets else []
    other = [x for x in adapted if x.shape.input_of not in ("attn_in", "attn_out")]
    if any(not x.expert and x.shape.name == "gate" for x in other):
        parts.append("router")
    experts = [x.shape.name for x in other if x.expert]
    if experts:
        parts.append(f"every expert's {', '.join(experts)}")
    dense = [x.shape.name for x in other if not x.expert and x.shape.name != "gate"]
    if dense:
        parts.append(f"MLP {', '.join(dense)}")
    where = " + ".join(parts) or "nothing"
    if not experts and spec.moe.fused_experts:
        where += " (not the experts: peft reaches them for mixtral and qwen3_moe only)" if "all-linear" in settings.lora_targets else ""
    return f"{where} x {spec.num_layers} blocks"


def _n(count: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return f"{count:.0f}"


def _g(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.2f}"


def _kib(n_bytes: float) -> str:
    return f"{n_bytes / 1024:.1f}"


def settings_from_run_config(config: RunConfig, bf16_available: bool | None = None, plan=None, *,
                             visible_gpus: int | None = None) -> TrainSettings:
    """The estimator's settings for a validated run config, so `estimate --config` matches `train`.

    precision 'auto' becomes bf16 where the GPU has it (or when no GPU is known), else fp16.
    Training on from an adapter ([model] adapter, a folder once preflight resolved it) trains
    that adapter: its own rank and layers, read from its adapter_config.json when there.
    `plan` (a sft_tui.core.runs.speed.SpeedPlan, as preflight or the trainer resolved it)
    says whether batches are padded and Liger is on; without one, the run as it would go on
    a CUDA GPU (see _gpu_speed_settings).
    [distributed] gives the GPUs and the strategy, so the estimate is per GPU: `gpus = "all"`
    counts `visible_gpus` (1 when not known). CPU processes ([distributed] processes) change
    nothing here: the GPU estimate is for one process.
    """

    padded, liger = (plan.batching.padded, plan.kernels.liger) if plan is not None else _gpu_speed_settings(config)
    padded = has_mask(padded, config.training.attention)  # the estimator's `padded` counts the mask terms
    precision = config.training.precision
    if precision == "auto":
        precision = "bf16" if bf16_available in (True, None) else "fp16"
    lora_r, targets = config.method.lora_r, tuple(config.method.target_modules)
    adapter = config.model.adapter and config.method.name != "full"
    if adapter:
        lora_r, targets = _adapter_shape(config.model.adapter) or (lora_r, targets)
    return TrainSettings(
        method=config.method.name, seq_len=config.training.max_seq_length, batch_size=config.training.micro_batch_size,
        grad_accum=config.training.gradient_accumulation_steps, gradient_checkpointing=config.training.gradient_checkpointing,
        optimizer=config.training.optimizer, precision=precision, attention=config.training.attention,
        lora_r=lora_r, lora_targets=targets, lora_dropout=config.method.lora_dropout,
        quant_type=config.method.quant_type, double_quant=config.method.double_quant,
        padded=padded, objective=config.method.objective, loss_type=config.method.loss_type, reference_adapter=bool(adapter),
        liger=liger, gpus=gpu_count(config.distributed.gpus, visible_gpus), strategy=config.distributed.strategy,
    )


def _gpu_speed_settings(config: RunConfig) -> tuple[bool, bool]:
    """(padded, liger) for `config` on a CUDA GPU of an unknown family: the estimator's view of a GPU run, never raising.

    Liger counts only when forced on (whether "auto" finds it installed is the training
    machine's business). Batching follows speed_plan, which cannot refuse here: with liger
    set aside and no family known, its only refusal (packing a preference run) is made
    when the config loads.
    """
    from sft_tui.core.runs.speed import speed_plan  # here, not at the top: core.runs imports the estimator

    off = replace(config, training=replace(config.training, liger="off"))
    return speed_plan(off, "cuda", None, installed=False).batching.padded, config.training.liger == "on"


def _adapter_shape(folder: str) -> tuple[int, tuple[str, ...]] | None:
    """(rank, target layers) from a LoRA adapter's adapter_config.json; None when it is not there or not plain LoRA."""
    try:
        data = json.loads((Path(folder) / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return None  # a run id not yet resolved, or no readable config: the [method] section's values stand
    r, targets = data.get("r"), data.get("target_modules")
    if isinstance(targets, str):
        targets = [targets] if targets == "all-linear" else None
    if not isinstance(r, int) or r < 1 or not targets or not all(isinstance(t, str) for t in targets):
        return None
    return r, tuple(sorted(targets))
