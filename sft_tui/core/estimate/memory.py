"""Peak GPU memory of a fine-tuning run, from the model's config alone (no weights, no torch).

The model follows what PyTorch, transformers, peft and bitsandbytes allocate for the
recipes sft-tui runs, term by term, in three phases of a steady-state training step
(step >= 2, so the optimizer state exists):

  forward end     weights + optimizer state + saved activations + logits and the fp32
                  copy the loss makes (+ autocast's 16-bit weight cache in full fine-tuning)
  backward start  saved activations (one layer recomputed when checkpointing) + logits,
                  fp32 log-probs and their gradient: usually the peak
  optimizer step  weights + gradients + optimizer state + the update's temporary buffers

Peak = the largest phase + CUDA context + allocator slack. Sources: Korthikanti et al.
2022 (activations), Dettmers et al. 2023 (NF4, double quantisation), transformers'
ForCausalLMLoss (`logits.float()`), peft's prepare_model_for_kbit_training (non-4-bit
weights cast to fp32) and autocast_adapter_dtype (adapters in fp32). Numbers that
measurements should set live in `Calibration`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sft_tui.core.config.schema import METHODS, OPTIMIZERS, RunConfig
from sft_tui.core.errors import UserError, did_you_mean
from sft_tui.core.units import GIB
from sft_tui.core.models.modelspec import LinearShape, ModelSpec

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

    def validate(self) -> None:
        """Raise UserError for values no run can have."""
        for name, value, choices in (("method", self.method, METHODS), ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("precision", self.precision, PRECISIONS), ("attention", self.attention, ATTENTIONS),
                                     ("quant_type", self.quant_type, QUANT_TYPES)):
            if value not in choices:
                raise UserError(f"{name} must be one of {', '.join(choices)}; got {value!r}{did_you_mean(value, choices)}", f"--{name.replace('_', '-')}")
        for name, value in (("seq_len", self.seq_len), ("batch_size", self.batch_size), ("grad_accum", self.grad_accum), ("lora_r", self.lora_r)):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}", f"--{name.replace('_', '-')}", "use a positive number")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise UserError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}", "--lora-dropout")


@dataclass(frozen=True)
class Term:
    """One line of the breakdown: contract key, bytes, and why."""

    key: str
    bytes: float
    explanation: str


BREAKDOWN_KEYS = ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "overhead")


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
    """The linear layers LoRA adapts: 'all-linear' or names (q, v, q_proj, ...); unknown names raise."""
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
    """Exact LoRA A/B parameter count: r x (in + out) per adapted layer, in every block."""
    return spec.num_layers * sum(settings.lora_r * (s.in_features + s.out_features) for s in resolve_targets(spec, settings.lora_targets))


def effective_attention(spec: ModelSpec, settings: TrainSettings) -> str:
    """The attention kernel the run really gets: transformers 5 has no SDPA path for Gemma 2."""
    if spec.family == "gemma2" and settings.attention == "sdpa":
        return "eager"
    return settings.attention


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
    """
    h, a, hd, inter = spec.hidden_size, spec.num_attention_heads, spec.head_dim, spec.intermediate_size
    q, kv = a * hd, spec.num_kv_heads * hd
    full = settings.method == "full"
    norms = spec.traits.norms_per_layer * (4 * h + (4 * h if full else 0) + 4)
    if spec.traits.qk_norm:
        norms += 4 * (q + kv)  # Qwen3's per-head norms keep fp32 queries and keys
    if effective_attention(spec, settings) == "eager":
        attention = compute_bytes * q + 2 * compute_bytes * q + (4 + compute_bytes) * a * settings.seq_len  # q, repeated k and v, probabilities
        if spec.family == "gemma2":
            attention += compute_bytes * a * settings.seq_len  # soft-capping keeps tanh(scores / cap) too
    else:
        kv_kept = 2 * compute_bytes * (q if (settings.padded or kv == q) else kv)
        mask = compute_bytes * settings.seq_len if settings.padded else 0  # SDPA turns the boolean mask into a float one per call
        attention = 2 * compute_bytes * q + kv_kept + 4 * a + mask
    mlp = 3 * compute_bytes * inter if spec.traits.gated_mlp else compute_bytes * inter
    trained = spec.linear_shapes() if full else targets
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


def _activation_parts(spec: ModelSpec, settings: TrainSettings, targets: tuple[LinearShape, ...], trainable: int) -> _ActivationParts:
    compute_bytes = 4 if settings.precision == "fp32" else 2
    full = settings.method == "full"
    h = spec.hidden_size
    autocast = compute_bytes == 2  # 16-bit runs compute under autocast, which casts each trained weight once per forward
    block_linear = spec.num_layers * sum(x.in_features * x.out_features for x in spec.linear_shapes())
    return _ActivationParts(
        per_layer_token=_layer_activation_bytes_per_token(spec, settings, targets, compute_bytes),
        kept_per_token=(4 if full else compute_bytes) * h,  # under fp32 master weights the residual stream is fp32
        copies_blocks=(compute_bytes * block_linear if full else compute_bytes * trainable) if autocast else 0.0,
        copies_head=compute_bytes * spec.vocab_size * h if (full and autocast) else 0.0,
        # final norm (+ lm_head input when it trains); Gemma 2's logit soft-capping keeps tanh(logits / cap)
        head_inputs_per_token=4 * h + (4 * h + compute_bytes * h if full else 0) + (compute_bytes * spec.vocab_size if spec.family == "gemma2" else 0),
    )


def saved_activation_bytes(spec: ModelSpec, settings: TrainSettings) -> float:
    """Bytes autograd holds at the end of the forward pass, weights excluded (what tests measure on CPU).

    The layers' saved tensors (or, with checkpointing, each layer's input), autocast's
    weight copies, the head's inputs and the fp32 log-probabilities the loss keeps.
    """
    targets = spec.linear_shapes() if settings.method == "full" else resolve_targets(spec, settings.lora_targets)
    trainable = spec.count_parameters().total if settings.method == "full" else lora_parameter_count(spec, settings)
    parts = _activation_parts(spec, settings, targets, trainable)
    tokens = settings.batch_size * settings.seq_len
    per_token = parts.kept_per_token if settings.gradient_checkpointing else parts.per_layer_token
    copies = 0.0 if settings.gradient_checkpointing else parts.copies_blocks
    return (spec.num_layers * per_token * tokens + copies + parts.copies_head
            + parts.head_inputs_per_token * tokens + 4 * tokens * spec.vocab_size)


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
        matrices = [(x.in_features, x.out_features) for x in spec.linear_shapes()] * spec.num_layers
        matrices += [(spec.vocab_size, spec.hidden_size)] * (1 if spec.tie_word_embeddings else 2)  # embedding (+ untied head)
        vectors = trainable - sum(i * o for i, o in matrices)  # norms and biases keep a full second moment
    else:
        matrices = [(t.in_features, settings.lora_r) for t in targets] * spec.num_layers + [(settings.lora_r, t.out_features) for t in targets] * spec.num_layers
        vectors = 0
    state = 4.0 * (sum(i + o for i, o in matrices) + max(vectors, 0))
    return state, 0.0, "Adafactor: factored second moments (a row and a column per matrix)"


def estimate_memory(spec: ModelSpec, settings: TrainSettings, calibration: Calibration = DEFAULT_CALIBRATION) -> MemoryEstimate:
    """Peak GPU memory of one training step of `spec` with `settings`, broken down."""
    settings.validate()
    full, qlora = settings.method == "full", settings.method == "qlora"
    compute_bytes = 4 if settings.precision == "fp32" else 2
    dtype = "fp32" if compute_bytes == 4 else settings.precision
    counts = spec.count_parameters()
    total = counts.total
    shapes = spec.linear_shapes()
    layers, hidden, vocab = spec.num_layers, spec.hidden_size, spec.vocab_size
    block_linear = layers * sum(x.in_features * x.out_features for x in shapes)
    targets = shapes if full else resolve_targets(spec, settings.lora_targets)
    trainable = total if full else lora_parameter_count(spec, settings)
    tokens = settings.batch_size * settings.seq_len
    assumptions = ["steady state (step 2 on): the optimizer state exists"]

    # weights
    if full:
        weights = Term("weights", 4.0 * total, f"fp32 weights, {_n(total)} params x 4 B (the master copy; matmuls run in {dtype} under autocast)" if compute_bytes == 2 else f"fp32 weights, {_n(total)} params x 4 B")
        assumptions.append("full fine-tuning keeps fp32 master weights and fp32 gradients (mixed precision)")
    elif qlora:
        constants = block_linear / NF4_BLOCK * (1 + 4 / DQ_BLOCK) if settings.double_quant else block_linear / NF4_BLOCK * 4
        other = total - block_linear
        weights = Term("weights", 0.5 * block_linear + constants + 4.0 * other,
                       f"{settings.quant_type.upper()} linears {_n(block_linear)} x 0.5 B + constants {_g(constants)} GiB; "
                       f"{_n(other)} other params (embeddings, head, norms) in fp32")
        assumptions.append("QLoRA: peft's prepare_model_for_kbit_training casts every non-4-bit weight to fp32")
    else:
        weights = Term("weights", compute_bytes * total, f"{dtype} frozen base weights, {_n(total)} params x {compute_bytes} B")
    trainable_term = Term("trainable", 0.0 if full else 4.0 * trainable,
                          "none extra: every weight trains (the fp32 weights are the master copy)" if full else
                          f"LoRA A/B on {len(targets)} layer types x {layers} blocks, r={settings.lora_r}: {_n(trainable)} params x 4 B (fp32)")
    if not full:
        assumptions.append("LoRA adapters, their gradients and optimizer state are fp32 (peft upcasts adapters)")

    state, update_tmp, opt_text = _optimizer_bytes(spec, settings, trainable, targets)
    grads_all = 4.0 * trainable

    # activations
    attention = effective_attention(spec, settings)
    if attention != settings.attention:
        assumptions.append(f"{spec.family} runs {attention} attention in transformers 5 (no SDPA path): seq x seq scores per head")
    parts = _activation_parts(spec, settings, targets, trainable)
    per_layer_token = parts.per_layer_token * calibration.activation_scale
    head_inputs = parts.head_inputs_per_token * tokens
    copies_blocks, copies_head = parts.copies_blocks, parts.copies_head
    bool_mask = settings.batch_size * settings.seq_len * settings.seq_len if settings.padded else 0  # the model-level boolean mask
    dequant = max(x.in_features * x.out_features for x in shapes) * compute_bytes if qlora else 0  # one weight dequantised at a time
    head_params = vocab * hidden
    if settings.gradient_checkpointing:
        kept = layers * parts.kept_per_token * tokens
        act_fwd = kept + bool_mask + head_inputs + dequant + copies_blocks + copies_head  # autocast's cache at its fullest
        act_bwd = kept + per_layer_token * tokens + copies_blocks / layers + copies_head + bool_mask + head_inputs + dequant
        act_text = f"{layers} layer inputs kept + one layer recomputed in backward ({_kib(per_layer_token)} KiB/token)"
    else:
        act_fwd = act_bwd = layers * per_layer_token * tokens + copies_blocks + copies_head + bool_mask + head_inputs + dequant
        act_text = f"{layers} layers x {_kib(per_layer_token)} KiB per token x {tokens:,} tokens"
    autocast_cache = copies_blocks + copies_head if full else 0.0
    if autocast_cache:
        act_text += f" + autocast's {dtype} weight copies {_g(autocast_cache)} GiB"
    if attention == "eager":
        act_text += " (eager attention keeps seq x seq probabilities per head)"

    # logits: the head's output, the fp32 copy the loss makes, log-probs; backward adds their gradients
    upcast = 0 if compute_bytes == 4 else 4
    logits_fwd = tokens * vocab * (compute_bytes + upcast + 4)
    logits_bwd = tokens * vocab * (compute_bytes + 12)
    assumptions.append("the loss upcasts logits to fp32 (transformers' ForCausalLMLoss); batches are padded to seq_len")

    grads_bwd = grads_all if (not full or settings.grad_accum > 1) else 4.0 * head_params
    grads_bwd_text = "fp32 gradients of the trainable params" if grads_bwd == grads_all else "the head's gradient (the others appear as activations are freed)"
    phases = {
        "forward end": [Term("gradients", grads_all if settings.grad_accum > 1 else 0.0, "gradients accumulated over micro-batches" if settings.grad_accum > 1 else "none yet"),
                        Term("optimizer", state, opt_text), Term("activations", act_fwd, act_text),
                        Term("logits", logits_fwd, f"{tokens:,} tokens x {vocab:,} vocab: {dtype} logits + fp32 copy + fp32 log-probs")],
        "backward start": [Term("gradients", grads_bwd, grads_bwd_text), Term("optimizer", state, opt_text),
                           Term("activations", act_bwd, act_text),
                           Term("logits", logits_bwd, f"{tokens:,} tokens x {vocab:,} vocab: {dtype} logits + fp32 log-probs + two fp32 gradients")],
        "optimizer step": [Term("gradients", grads_all, "fp32 gradients of every trainable parameter"),
                           Term("optimizer", state + update_tmp, opt_text + (" + one fp32 buffer per parameter during the update" if update_tmp else "")),
                           Term("activations", 0.0, "freed after backward"), Term("logits", 0.0, "freed after backward")],
    }
    best_phase, best_terms, best_total = "", [], -1.0
    for phase, terms in phases.items():
        dynamic = sum(t.bytes for t in terms if t.key in ("activations", "logits")) + (update_tmp if phase == "optimizer step" else 0)
        overhead = Term("overhead", calibration.cuda_context_gib * GIB + calibration.allocator_slack * dynamic,
                        f"CUDA context {calibration.cuda_context_gib:g} GiB + allocator slack {calibration.allocator_slack:.0%} of the temporary memory")
        all_terms = [weights, trainable_term, *terms, overhead]
        peak = sum(t.bytes for t in all_terms)
        if peak > best_total:
            best_phase, best_terms, best_total = phase, all_terms, peak
    assumptions.append(f"CUDA context {calibration.cuda_context_gib:g} GiB and allocator slack {calibration.allocator_slack:.0%}; "
                       "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True lowers the slack")
    assumptions.append(f"calibrated on {calibration.calibrated_on}" if calibration.calibrated_on else
                       "saved activations match autograd within 5% (measured on CPU); the peak itself "
                       "(allocator, CUDA context, temporaries) is not yet calibrated on a GPU")
    ordered = tuple(sorted(best_terms, key=lambda t: BREAKDOWN_KEYS.index(t.key)))
    return MemoryEstimate(spec.name, settings, total, trainable, best_phase, ordered, tuple(assumptions))


def _n(count: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return f"{count:.0f}"


def _g(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.2f}"


def _kib(n_bytes: float) -> str:
    return f"{n_bytes / 1024:.1f}"


def settings_from_run_config(config: RunConfig, bf16_available: bool | None = None) -> TrainSettings:
    """The estimator's settings for a validated run config, so `estimate --config` matches `train`.

    precision 'auto' becomes bf16 where the GPU has it (or when no GPU is known), else fp16.
    """
    precision = config.training.precision
    if precision == "auto":
        precision = "bf16" if bf16_available in (True, None) else "fp16"
    return TrainSettings(
        method=config.method.name, seq_len=config.training.max_seq_length, batch_size=config.training.micro_batch_size,
        grad_accum=config.training.gradient_accumulation_steps, gradient_checkpointing=config.training.gradient_checkpointing,
        optimizer=config.training.optimizer, precision=precision, attention=config.training.attention,
        lora_r=config.method.lora_r, lora_targets=tuple(config.method.target_modules), lora_dropout=config.method.lora_dropout,
        quant_type=config.method.quant_type, double_quant=config.method.double_quant, padded=not config.data.packing,
    )
