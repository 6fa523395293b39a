"""Fit an estimate to a GPU: headroom, the largest batch and sequence, what to change, how long.

Memory grows monotonically with micro-batch and sequence length, so the largest values
that fit come from a binary search over `estimate_memory`. Suggestions apply one
change at a time to the user's settings, then all of them together; each carries its
own new estimate. Time comes from training FLOPs and an assumed utilisation of the
GPU's peak, stated as an assumption, never presented as a measurement. On several GPUs
(settings.gpus) the budget is each GPU's memory, the peaks and limits are per GPU, and the
time counts N micro-batches at once at an assumed scaling efficiency (sharding.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sft_tui.core.estimate import moe_terms, sharding
from sft_tui.core.estimate.memory import (
    DEFAULT_CALIBRATION,
    Calibration,
    MemoryEstimate,
    TrainSettings,
    estimate_memory,
    kto_has_kl,
    no_grad_forwards,
    resolve_targets,
    sequences_per_example,
)
from sft_tui.core.models.gpus import GpuInfo
from sft_tui.core.models.modelspec import ModelSpec
from sft_tui.core.runs.placement import GpuRoom, most_room, roomiest
from sft_tui.core.units import GIB

# Share of peak dense throughput a single-GPU transformers run typically reaches; an
# assumption (the calibration bench replaces it with measured tokens/s).
ASSUMED_UTILISATION = {"full": 0.40, "lora": 0.40, "qlora": 0.28}
MAX_BATCH = 4096
SEQ_STEP = 64


@dataclass(frozen=True)
class GpuTarget:
    """The memory budget and, when known, the GPU type (for throughput)."""

    name: str
    memory_gib: float
    info: GpuInfo | None = None
    source: str = "detected"  # detected | --gpu | --gpu-gib


@dataclass(frozen=True)
class Suggestion:
    """One change to the settings and what it does to the peak."""

    change: str
    settings: TrainSettings
    peak_gib: float
    fits: bool | None
    model: str = ""  # set when the suggestion is another model


@dataclass(frozen=True)
class TimeEstimate:
    """Training throughput and ETA from FLOPs and an assumed utilisation."""

    flops_per_token: float
    peak_tflops: float
    utilisation: float
    tokens_per_s: float  # the compute rate: batch tokens, padding included
    eta_s: float | None  # for `tokens` (real tokens, no padding), when given, at the useful rate
    objective_note: str = ""  # what the objective adds per example token (DPO: both answers, the reference's forward)
    padding_share: float = 0.0  # share of the batches' tokens that are padding
    gpus: int = 1  # tokens_per_s is the whole run's, over this many GPUs
    scaling: float = 1.0  # share of gpus x one GPU's rate kept (assumed: sharding.SCALING_EFFICIENCY)

    def spread_note(self) -> str:
        """'on 4 GPUs at an assumed 85% scaling' ('' on one GPU)."""
        return f"on {self.gpus} GPUs at an assumed {self.scaling:.0%} scaling" if self.gpus > 1 else ""

    @property
    def useful_tokens_per_s(self) -> float:
        """Real (non-padding) tokens a second: the compute rate less the share padding takes."""
        return self.tokens_per_s * (1.0 - self.padding_share)

    def padding_note(self) -> str:
        """'12% of batch tokens are padding: ... real tokens/s' ('' without padding)."""
        if self.padding_share <= 0:
            return ""
        return f"{self.padding_share:.0%} of batch tokens are padding: about {self.useful_tokens_per_s:,.0f} real tokens/s"


@dataclass(frozen=True)
class RoomNow:
    """The GPU a run started now would get on this box (the most free room, as `sft-tui train` places it) and whether it fits there now.

    Free room is the queue's (core/runs/placement.py): the GPU's total minus other
    processes minus what admitted sft-tui runs will take. The fit against the GPU's total
    (Estimate.fits) says whether the run can ever fit; this says whether it starts now.
    """

    gpu: int
    name: str
    total_gib: float
    free_gib: float
    other_gib: float  # where NVML hides who holds what (or lists no process): what is in use beyond sft-tui runs
    reserved_gib: float
    used_gib: float
    attributed: bool  # NVML says which process holds what
    need_gib: float
    fits_now: bool
    empty_fit: int | None  # a GPU whose whole memory holds the run (this one when it can), None: none here does

    def where(self) -> str:
        """`GPU1 has 18.2 of 24.0 GiB free (5.8 other processes, 0.0 sft-tui runs)`."""
        return (f"GPU{self.gpu} has {self.free_gib:.1f} of {self.total_gib:.1f} GiB free "
                f"({self.other_gib:.1f} other processes, {self.reserved_gib:.1f} sft-tui runs)")

    def outlook(self, config: str = "CONFIG") -> str:
        """`fits now`, or why not and what to do (queue it, or nothing here holds it)."""
        if self.fits_now:
            return "fits now"
        if self.empty_fit is None:
            return "does not fit now, nor on any GPU here when empty"
        gpu = "the GPU" if self.empty_fit == self.gpu else f"GPU{self.empty_fit}"
        return f"does not fit now; it fits {gpu} when empty: queue it (sft-tui train {config} --queue)"

    def line(self, config: str = "CONFIG") -> str:
        """The report's line: `on this box now: GPU1 has ... free (...): fits now`."""
        return f"on this box now: {self.where()}: {self.outlook(config)}"

    def to_json(self) -> dict:
        """The `placement` object of `sft-tui estimate --json`."""
        return {"gpu": self.gpu, "name": self.name, "free_gib": round(self.free_gib, 3), "total_gib": round(self.total_gib, 3),
                "fits_now": self.fits_now, "other_gib": round(self.other_gib, 3), "reserved_gib": round(self.reserved_gib, 3),
                "used_gib": round(self.used_gib, 3), "processes_known": self.attributed, "need_gib": round(self.need_gib, 3),
                "fits_when_empty": self.empty_fit is not None}


def room_now(need_gib: float, rooms: Sequence[GpuRoom]) -> RoomNow | None:
    """Where a run of `need_gib` started now would go among `rooms`, and whether it fits there (None without GPUs).

    The GPU is `most_room`'s (what `sft-tui train` picks); when none has room, the one with
    the most free memory, which is where it would be closest to starting.
    """
    if not rooms:
        return None
    room = most_room(rooms, need_gib) or roomiest(rooms)
    holders = sorted((r for r in rooms if r.total_gib >= need_gib), key=lambda r: (r.index != room.index, r.total_gib, r.index))
    # unattributed, the queue counts the larger of NVML's used and our runs' reservations: the rest is someone else's
    other = room.other_gib if room.attributed else max(0.0, room.used_gib - room.reserved_gib)
    return RoomNow(room.index, room.name, room.total_gib, room.free_gib, other, room.reserved_gib, room.used_gib,
                   room.attributed, need_gib, room.free_gib >= need_gib, holders[0].index if holders else None)


def rooms_on_this_box(sampler=None, store=None) -> tuple[GpuRoom, ...]:
    """Each GPU's free room now: NVML's sample and the runs admitted in `store` (default $SFT_TUI_HOME). Empty without a GPU.

    A sampler passed in stays open. A runs home that cannot be read counts no sft-tui runs
    rather than failing an estimate.
    """
    from sft_tui.core.runs.queue import rooms_now
    from sft_tui.core.runs.store import RunStore

    return tuple(rooms_now(store or RunStore(), sampler))


@dataclass(frozen=True)
class Estimate:
    """Everything `sft-tui estimate` reports."""

    memory: MemoryEstimate
    gpu: GpuTarget | None
    fits: bool | None
    headroom_gib: float | None
    max_batch_size: int | None  # 0: not even batch 1 fits
    max_seq_len: int | None  # 0: not even SEQ_STEP tokens fit
    seq_cap: int  # the search stopped here (model's context window, or the asked length)
    suggestions: tuple[Suggestion, ...]
    time: TimeEstimate | None
    notes: tuple[str, ...] = ()
    room: RoomNow | None = None  # on this box now (a detected GPU only)

    def to_json(self) -> dict:
        """The `--json` object (ARCHITECTURE/issue contract keys first)."""
        m, s = self.memory, self.memory.settings
        return {
            "model": m.model, "method": s.method, "objective": s.objective, "params": m.params, "trainable_params": m.trainable_params,
            "seq_len": s.seq_len, "batch_size": s.batch_size,
            "breakdown_gib": {k: round(v, 3) for k, v in m.breakdown_gib().items()},
            "peak_gib": round(m.peak_gib, 3), "gpu_gib": round(self.gpu.memory_gib, 3) if self.gpu else None,
            "fits": self.fits, "max_batch_size": self.max_batch_size, "max_seq_len": self.max_seq_len,
            "tokens_per_s": round(self.time.tokens_per_s, 1) if self.time else None,
            "useful_tokens_per_s": round(self.time.useful_tokens_per_s, 1) if self.time else None,
            "padding_share": round(s.padding_share, 4),
            "assumptions": list(m.assumptions) + (self._time_assumptions() if self.time else []),
            "notes": list(self.notes),
            "peak_phase": m.phase, "gpu": self.gpu.name if self.gpu else None,
            "headroom_gib": round(self.headroom_gib, 3) if self.headroom_gib is not None else None,
            "eta_s": round(self.time.eta_s, 1) if self.time and self.time.eta_s is not None else None,
            "terms": [{"key": t.key, "name": t.name, "gib": round(t.bytes / GIB, 3), "explanation": t.explanation} for t in m.terms],
            "phases_gib": {phase: round(size / GIB, 3) for phase, size in m.phase_bytes},
            "settings": s.__dict__ | {"lora_targets": list(s.lora_targets)},
            "suggestions": [{"change": x.change, "peak_gib": round(x.peak_gib, 3), "fits": x.fits, "model": x.model or m.model}
                            for x in self.suggestions],
            "placement": self.room.to_json() if self.room else None,
            "active_params": m.active_params,
            "gpus": s.gpus, "strategy": sharding.spread(s),
            "distributed": {"gpus": s.gpus, "strategy": s.strategy, "per_gpu": True,
                            "scaling_efficiency": sharding.SCALING_EFFICIENCY[s.strategy]} if s.gpus > 1 else None,
            "moe": {"resident_params": m.moe.resident, "active_params": m.moe.active, "expert_params": m.moe.experts,
                    "num_experts": m.moe.num_experts, "experts_per_token": m.moe.experts_per_token, "summary": m.moe.line()}
                   if m.moe else None,
        }

    def _time_assumptions(self) -> list[str]:
        t = self.time
        active = (f", from the {self.memory.moe.active / 1e9:.2f}B parameters a token goes through, not the "
                  f"{self.memory.moe.resident / 1e9:.2f}B resident" if self.memory.moe else "")
        spread = (f"; {t.gpus} GPUs, each on its own micro-batches, keep an assumed {t.scaling:.0%} of {t.gpus}x one GPU's rate "
                  f"({self.memory.settings.strategy.upper()})" if t.gpus > 1 else "")
        lines = [(f"throughput assumes {t.utilisation:.0%} of the GPU's peak {t.peak_tflops:g} TFLOP/s "
                  f"({t.flops_per_token / 1e9:.1f} GFLOP per trained token{active}{t.objective_note}){spread}; measure it on your data to know")]
        if t.padding_share > 0:
            lines.append(f"{t.padding_note()}; the ETA counts real tokens at that rate")
        return lines


def detected_gpus(sampler=None) -> tuple[GpuTarget, ...]:
    """Every GPU NVML reports, in index order, as memory budgets (empty without a GPU). A sampler passed in stays open."""
    from sft_tui.core.models.gpus import gpu_from_nvml_name
    from sft_tui.core.runs.sysmon import gpu_snapshot

    snapshot = gpu_snapshot(sampler)
    if not snapshot.available:
        return ()
    return tuple(GpuTarget(g.name, g.memory_total_bytes / GIB, gpu_from_nvml_name(g.name, g.memory_total_bytes / GIB), "detected")
                 for g in snapshot.gpus)


def detected_gpu(sampler=None) -> GpuTarget | None:
    """The first GPU NVML reports, as a memory budget (None without a GPU). A sampler passed in stays open."""
    found = detected_gpus(sampler)
    return found[0] if found else None


def _fits(spec: ModelSpec, s: TrainSettings, budget_gib: float, cal: Calibration) -> bool:
    return estimate_memory(spec, s, cal).peak_gib <= budget_gib


def largest_batch(spec: ModelSpec, s: TrainSettings, budget_gib: float, cal: Calibration = DEFAULT_CALIBRATION) -> int:
    """The largest micro-batch that fits at this sequence length (0 if none does)."""
    if not _fits(spec, replace(s, batch_size=1), budget_gib, cal):
        return 0
    low, high = 1, MAX_BATCH
    while low < high:
        mid = (low + high + 1) // 2
        if _fits(spec, replace(s, batch_size=mid), budget_gib, cal):
            low = mid
        else:
            high = mid - 1
    return low


def longest_sequence(spec: ModelSpec, s: TrainSettings, budget_gib: float, cap: int, cal: Calibration = DEFAULT_CALIBRATION) -> int:
    """The longest sequence (a multiple of 64, at most `cap`) that fits at this batch (0 if none does)."""
    steps = max(cap // SEQ_STEP, 1)
    if not _fits(spec, replace(s, seq_len=SEQ_STEP), budget_gib, cal):
        return 0
    low, high = 1, steps
    while low < high:
        mid = (low + high + 1) // 2
        if _fits(spec, replace(s, seq_len=mid * SEQ_STEP), budget_gib, cal):
            low = mid
        else:
            high = mid - 1
    return low * SEQ_STEP


def _candidate_changes(s: TrainSettings) -> list[tuple[str, TrainSettings]]:
    """Changes that lower memory, least harmful first: same result and speed, then slower, then a different recipe."""
    changes = []
    if s.attention == "eager":
        changes.append(("sdpa attention instead of eager", replace(s, attention="sdpa")))
    if s.gpus > 1 and s.strategy == "ddp":  # same result; FSDP moves 1.5x the bytes
        changes.append((f"FSDP: shard over the {s.gpus} GPUs (strategy = fsdp)", replace(s, strategy="fsdp")))
    if not s.gradient_checkpointing:
        changes.append(("gradient checkpointing on (about 30% slower)", replace(s, gradient_checkpointing=True)))
    smallest = 2 if kto_has_kl(s) else 1  # KTO's KL term pairs each prompt with another example's answer
    if s.batch_size > smallest and s.batch_size % smallest == 0:
        changes.append((f"micro-batch {smallest} with gradient accumulation {s.grad_accum * s.batch_size // smallest} (same effective batch)",
                        replace(s, batch_size=smallest, grad_accum=s.grad_accum * s.batch_size // smallest)))
    if s.optimizer in ("adamw_torch", "adafactor") and s.method in ("full", "lora") and sharding.spread(s) != "fsdp":  # LoRA on experts trains billions
        changes.append(("8-bit AdamW optimizer (adamw_8bit)", replace(s, optimizer="adamw_8bit")))
    if s.method == "full":
        changes.append(("LoRA instead of full fine-tuning", replace(s, method="lora", optimizer="adamw_torch")))
    if s.method in ("full", "lora"):
        changes.append(("QLoRA: 4-bit NF4 base", replace(s, method="qlora", optimizer="paged_adamw_8bit", quant_type="nf4", double_quant=True)))
    return changes


def suggest(spec: ModelSpec, s: TrainSettings, budget_gib: float, cal: Calibration = DEFAULT_CALIBRATION) -> tuple[Suggestion, ...]:
    """What brings the run under `budget_gib`, each with its estimate; empty when it already fits.

    First each change alone, then the shortest cumulative path (least harmful changes
    first) that fits, then, if even that does not fit, the longest sequence that would.
    """
    if _fits(spec, s, budget_gib, cal):
        return ()
    out: list[Suggestion] = []
    path, labels = s, []
    path_fits = False
    current = estimate_memory(spec, s, cal).peak_gib
    candidates = _candidate_changes(s)
    if s.method == "qlora" and spec.moe is not None and spec.moe.fused_experts:  # launch refuses this QLoRA; LoRA is the way
        candidates.insert(0, ("LoRA instead of QLoRA (QLoRA cannot quantise fused experts)", replace(s, method="lora", optimizer="adamw_torch")))
    for change, changed in candidates:
        if changed.method == "qlora" and spec.moe is not None and spec.moe.fused_experts:
            continue  # launch refuses it: bitsandbytes cannot quantise fused experts, they end up fp32
        peak = estimate_memory(spec, changed, cal).peak_gib
        if s.method == "lora" and changed.optimizer == "adamw_8bit" and current - peak < 0.5:
            continue  # a dense model's adapters: their optimizer state is too small to matter (MoE experts' adapters are not)
        out.append(Suggestion(change, changed, peak, peak <= budget_gib))
        eight_bit_on_shards = changed.optimizer == "adamw_8bit" and sharding.spread(path) == "fsdp"  # the trainer runs AdamW there
        if not path_fits and peak < current and not eight_bit_on_shards:  # a change that costs memory here (e.g. QLoRA's fp32 experts) is no step
            path = _merge_change(path, changed, s)
            labels.append(change)
            path_fits = _fits(spec, path, budget_gib, cal)
    if len(labels) > 1:
        out.append(Suggestion(" + ".join(labels), path, estimate_memory(spec, path, cal).peak_gib, path_fits))
    if not path_fits:
        seq = longest_sequence(spec, path, budget_gib, s.seq_len, cal)
        if seq:
            shorter = replace(path, seq_len=seq)
            prefix = " + ".join(labels) + " + " if labels else ""
            out.append(Suggestion(f"{prefix}max sequence length {seq}", shorter, estimate_memory(spec, shorter, cal).peak_gib, True))
        out += smaller_models(spec, path, budget_gib, cal)
    return tuple(out)


def smaller_models(spec: ModelSpec, s: TrainSettings, budget_gib: float, cal: Calibration = DEFAULT_CALIBRATION, limit: int = 3) -> list[Suggestion]:
    """The largest shipped presets, smaller than `spec`, that fit with settings `s` (biggest first)."""
    from sft_tui.core.models.modelspec import spec_from_preset
    from sft_tui.core.models.presets import list_model_presets

    size = moe_terms.resident_parameters(spec)
    found = []
    for preset in list_model_presets():
        other = spec_from_preset(preset.name)
        total = moe_terms.resident_parameters(other)
        if total >= size:
            continue
        peak = estimate_memory(other, s, cal).peak_gib
        if peak <= budget_gib:
            found.append((total, Suggestion(f"a smaller model: {preset.name} ({total / 1e9:.2f}B params)", s, peak, True, preset.name)))
    found.sort(key=lambda item: -item[0])
    return [suggestion for _, suggestion in found[:limit]]


def _merge_change(current: TrainSettings, changed: TrainSettings, original: TrainSettings) -> TrainSettings:
    """Apply the fields `changed` alters relative to `original` on top of `current`."""
    updates = {k: v for k, v in changed.__dict__.items() if v != getattr(original, k)}
    return replace(current, **updates)


def training_flops_per_token(spec: ModelSpec, s: TrainSettings) -> float:
    """FLOPs per example token: 2 x weights per matmul pass, attention, head; backward 2x (full) or 1x (frozen base).

    Mixture of experts: the weights a token multiplies with are the active ones (attention,
    router, its top-k experts, any shared expert), not the resident ones.

    Checkpointing adds one more forward of the blocks. Attention counts the causal half
    of QK^T and AV (what flash/SDPA kernels compute). An example's tokens are its prompt and
    one answer: DPO and ORPO train on the rejected answer too (twice the sequences), and DPO
    and KTO add forwards without gradients (the reference's, KTO's KL pairs), each a plain
    forward: no backward, no recomputation.
    """
    sequences = sequences_per_example(s)
    forwards, batch = no_grad_forwards(s)
    extra = forwards * batch / s.batch_size  # no-grad sequences per example
    return sequences * _trained_flops_per_token(spec, s) + extra * _forward_flops_per_token(spec, s)


def _active_linear(spec: ModelSpec) -> int:
    """Block weights a token multiplies with: every dense linear; for MoE the router, its top-k experts and any shared expert."""
    return sum(x.params_per_token for x in moe_terms.block_linears(spec))


def _forward_flops_per_token(spec: ModelSpec, s: TrainSettings) -> float:
    linear = _active_linear(spec)
    attention = spec.num_layers * 2 * s.seq_len * spec.num_attention_heads * spec.head_dim
    return 2 * linear + attention + 2 * spec.vocab_size * spec.hidden_size


def _trained_flops_per_token(spec: ModelSpec, s: TrainSettings) -> float:
    linear = _active_linear(spec)
    attention = spec.num_layers * 2 * s.seq_len * spec.num_attention_heads * spec.head_dim
    blocks = 2 * linear + attention
    head = 2 * spec.vocab_size * spec.hidden_size
    forward = blocks + head
    backward = 2 * forward if s.method == "full" else forward  # frozen weights: input gradients only
    if s.method == "full":
        lora = 0.0
    elif spec.moe is not None:  # a token goes through its top-k experts' adapters only
        lora = 6 * moe_terms.lora_flops_params(spec, s.lora_r, s.lora_targets)
    else:
        lora = 6 * spec.num_layers * sum(s.lora_r * (t.in_features + t.out_features) for t in resolve_targets(spec, s.lora_targets))
    recompute = blocks if s.gradient_checkpointing else 0
    return forward + backward + recompute + lora


def estimate_time(spec: ModelSpec, s: TrainSettings, gpu: GpuInfo, tokens: float | None = None) -> TimeEstimate:
    """Tokens per second and ETA on `gpu` (each of `s.gpus` of them), from FLOPs and the assumed utilisation.

    With several GPUs the rate is the whole run's: N micro-batches at once, times the
    strategy's assumed scaling efficiency.

    tokens_per_s is the compute rate over every batch token; the ETA for `tokens` (the
    dataset's real tokens) runs at the useful rate, less `s.padding_share` of padding.
    """
    flops = training_flops_per_token(spec, s)
    peak = gpu.peak_tflops(s.precision)
    utilisation = ASSUMED_UTILISATION[s.method]
    # several GPUs each run their own micro-batches at once, at an assumed scaling efficiency (sharding.py)
    tokens_per_s, scaling = sharding.scaled_rate(peak * 1e12 * utilisation / flops, s)
    useful = tokens_per_s * (1.0 - s.padding_share)  # padding costs compute like a real token but trains nothing
    return TimeEstimate(flops, peak, utilisation, tokens_per_s, tokens / useful if tokens else None, objective_time_note(s),
                        s.padding_share, s.gpus if scaling != 1.0 else 1, scaling)


def objective_time_note(s: TrainSettings) -> str:
    """What the objective adds to an example token's work, for the time assumption ('' for SFT)."""
    forwards, batch = no_grad_forwards(s)
    parts = []
    if sequences_per_example(s) == 2:
        parts.append("chosen and rejected answers both trained (2x)")
    if s.objective in ("dpo", "kto"):
        per_example = forwards * batch // s.batch_size
        what = "the reference's forward" + (" and KTO's KL forwards" if kto_has_kl(s) else "")
        parts.append(f"+ {per_example} forward{'s' if per_example > 1 else ''} without gradients ({what})")
    return f"; {s.objective.upper()}: " + " ".join(parts) if parts else ""


def peft_dropout_conflict(spec: ModelSpec, s: TrainSettings) -> bool:
    """Whether peft 0.21.2 would refuse these LoRA settings: dropout on fused experts' adapters (its ParamWrapper)."""
    if spec.moe is None or s.method == "full" or s.lora_dropout == 0:
        return False
    return any(x.fused for x in moe_terms.adapted_linears(spec, s.lora_targets))


def build_estimate(spec: ModelSpec, s: TrainSettings, gpu: GpuTarget | None, tokens: float | None = None,
                   cal: Calibration = DEFAULT_CALIBRATION, rooms: Sequence[GpuRoom] = ()) -> Estimate:
    """The full report: memory, fit against `gpu`, limits, suggestions and time.

    `rooms` (rooms_on_this_box) add where the run would go now and whether it fits there;
    only for a detected GPU: one named by --gpu or sized by --gpu-gib is another machine's.
    """
    memory = estimate_memory(spec, s, cal)
    cap = max(spec.max_position_embeddings or s.seq_len, s.seq_len)
    scope = (spec.scope_note,) if spec.scope_note else ()  # e.g. a multimodal model counted without its vision tower
    if gpu is None:
        early = ("peft cannot put dropout on the experts' LoRA (it raises for lora_dropout > 0 there): set lora_dropout = 0",) \
            if peft_dropout_conflict(spec, s) else ()
        return Estimate(memory, None, None, None, None, None, cap, (), None, scope + early)
    budget = gpu.memory_gib
    fits = memory.peak_gib <= budget
    time = estimate_time(spec, s, gpu.info, tokens) if gpu.info else None
    notes = list(scope)
    if gpu.info and s.precision == "bf16" and not gpu.info.bf16_supported:
        notes.append(f"{gpu.info.name} has no bf16: train with precision fp16 (same memory)")
    if gpu.info is None:
        notes.append(f"no throughput figures for {gpu.name}: memory fit only, no time estimate")
    if peft_dropout_conflict(spec, s):
        notes.append("peft cannot put dropout on the experts' LoRA (it raises for lora_dropout > 0 there): set lora_dropout = 0")
    if kto_has_kl(s) and s.batch_size < 2:
        notes.append("KTO pairs each prompt with another example's answer for its KL term: TRL needs a micro-batch of at least 2")
    if s.seq_len > (spec.max_position_embeddings or s.seq_len):
        notes.append(f"seq_len {s.seq_len} is beyond the model's context window ({spec.max_position_embeddings})")
    room = None
    if gpu.source == "detected" and s.gpus > 1:  # a run on N GPUs needs N with room for its per-GPU peak (the queue's rule)
        free = sum(1 for r in rooms if r.free_gib >= memory.peak_gib)
        notes.append(f"on this box now: {free} of {len(rooms)} GPUs have {memory.peak_gib:.1f} GiB free; the run needs {s.gpus}"
                     if len(rooms) >= s.gpus else f"this box has {len(rooms)} GPUs; the run asks for {s.gpus}")
    elif gpu.source == "detected":
        room = room_now(memory.peak_gib, rooms)
    return Estimate(memory, gpu, fits, budget - memory.peak_gib, largest_batch(spec, s, budget, cal),
                    longest_sequence(spec, s, budget, cap, cal), cap, suggest(spec, s, budget, cal), time, tuple(notes), room)
