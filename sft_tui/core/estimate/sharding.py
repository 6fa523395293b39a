"""What several GPUs change in one GPU's peak: DDP's gradient buckets, FSDP's shards and gathered units.

`estimate_memory` counts one GPU's peak; with `TrainSettings.gpus > 1` it asks here for the
per-GPU terms of the strategy the run uses (`[distributed] strategy`, run by accelerate 1.15):

DDP (torch.nn.parallel.DistributedDataParallel, as transformers 5.23 builds it: the default
gradient_as_bucket_view=False and bucket_cap_mb=25). Every GPU holds a whole replica and its
own micro-batch's activations. The reducer keeps its own flat buckets with a copy of every
gradient it all-reduces; torch's docstring for gradient_as_bucket_view (torch 2.13,
nn/parallel/distributed.py) says that turning the views on saves "the total gradients size".
The buckets hold trainable parameters only, in their dtype (fp32 here: full fine-tuning's
master weights, peft's fp32 adapters), so LoRA's DDP overhead is its adapters' size.

FSDP full shard (FSDP2 `fully_shard`, accelerate's fsdp_version 2 with reshard_after_forward;
FSDP1 FULL_SHARD is the same accounting). Read in torch 2.13's
distributed/fsdp/_fully_shard and accelerate 1.15's utils/fsdp_utils.fsdp2_prepare_model:

- every parameter is sharded over the N GPUs (frozen ones too, QLoRA's 4-bit weights when
  they are stored in the compute dtype), and so are its gradient and optimizer state: / N.
  bitsandbytes' quantisation constants are not parameters (Params4bit.quant_state): every
  GPU keeps them whole;
- accelerate wraps each decoder layer (TRANSFORMER_BASED_WRAP), the input embedding when it
  is not tied, and a tail unit (final norm + lm_head) with reshard_after_forward=False, so
  the tail stays gathered from its forward to its backward;
- a unit's all-gather runs in the compute dtype (MixedPrecisionPolicy param_dtype =
  reduce_dtype = the mixed precision dtype; accelerate upcasts trainable params to fp32
  first). While one layer computes, the next one's all-gather is in flight (implicit
  forward prefetch on the all-gather stream, explicit backward prefetch): two layers
  gathered, plus the tail. The gathered 16-bit weights are what the layer computes with,
  so autocast caches no weight copies;
- backward, per unit (_fsdp_collectives.foreach_reduce): the unsharded gradients (compute
  dtype), a flat reduce-scatter input of the same size (reduce dtype; FSDPCommContext keeps
  one until the next unit's reduce), the 1/N output, and its cast to the parameter's dtype
  (fp32) that becomes the sharded gradient. Only parameters with gradients take part.

Both strategies add NCCL's communicator buffers; the CUDA context stays per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from sft_tui.core.models.modelspec import ModelSpec
from sft_tui.core.units import GIB

STRATEGIES = ("ddp", "fsdp")
STRATEGY_NAMES = {"ddp": "DDP", "fsdp": "FSDP full shard"}
# NCCL's buffers per GPU: NCCL_BUFFSIZE (4 MiB, NCCL's environment-variable docs) per protocol buffer, per channel
# (up to 32) and per ring/tree peer, send and receive. Assumed 0.5 GiB per process: not measured here.
NCCL_BUFFERS_GIB = 0.5
DDP_BUCKET_CAP_MB = 25  # torch's default bucket_cap_mb, which transformers keeps unless ddp_bucket_cap_mb is set
# Share of N x one GPU's throughput a run on N GPUs of one box keeps: assumed, not measured. DDP overlaps its
# all-reduce with the backward (Li et al., "PyTorch Distributed", VLDB 2020: near-linear scaling); FSDP full shard
# moves 1.5x DDP's bytes (two all-gathers and a reduce-scatter per step against an all-reduce: Zhao et al.,
# "PyTorch FSDP", VLDB 2023), which NVLink hides better than PCIe.
SCALING_EFFICIENCY = {"ddp": 0.90, "fsdp": 0.85}
EIGHT_BIT_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit")


def spread(settings) -> str:
    """'' on one GPU, else 'ddp' or 'fsdp': how the run spreads over its GPUs."""
    return settings.strategy if settings.gpus > 1 else ""


def headline(settings) -> str:
    """'per GPU (4 GPUs, FSDP full shard)', or '' on one GPU."""
    how = spread(settings)
    return f"per GPU ({settings.gpus} GPUs, {STRATEGY_NAMES[how]})" if how else ""


def runs_as(optimizer: str, sharded: bool) -> str:
    """The optimizer the trainer steps: under FSDP (`sharded`) bitsandbytes' 8-bit ones become PyTorch's AdamW.

    bitsandbytes issues #89 and #1633 (open): its optimizers allocate state shaped like the
    DTensor and pass DTensors to the kernels, so they cannot step FSDP2's sharded
    parameters. AdamW's state is sharded over the GPUs like everything else. The trainer,
    preflight, the estimator and the wizard all ask here.
    """
    return "adamw_torch" if sharded and optimizer in EIGHT_BIT_OPTIMIZERS else optimizer


def optimizer_that_runs(settings) -> str:
    """The optimizer the trainer steps for these estimator settings (runs_as)."""
    return runs_as(settings.optimizer, spread(settings) == "fsdp")


@dataclass(frozen=True)
class Units:
    """The parameters of the FSDP units that are gathered at once, split into what trains and what is frozen."""

    layer: float  # bytes of the largest decoder layer gathered in the compute dtype
    layer_trainable: int  # its parameters with gradients
    tail: float  # bytes of the tail unit (final norm + lm_head; with tied embeddings the embedding) gathered
    tail_trainable: int


def fsdp_units(spec: ModelSpec, method: str, trainable: int, compute_bytes: int, quantised_per_layer: int) -> Units:
    """The gathered sizes of one decoder layer and of the tail unit, in the all-gather dtype (the compute dtype).

    QLoRA's 4-bit weights travel as they are stored (0.5 B a parameter, in compute-dtype
    elements); LoRA adapters travel with their layer (peft puts them inside it).
    """
    counts = spec.count_parameters()
    layer = counts.per_layer
    head = counts.lm_head or counts.embedding  # tied: the embedding is the head, and accelerate puts it in the tail
    lora_layer = 0 if method == "full" else trainable // spec.num_layers
    if method == "qlora":
        layer_bytes = 0.5 * quantised_per_layer + compute_bytes * (layer - quantised_per_layer + lora_layer)
    else:
        layer_bytes = compute_bytes * (layer + lora_layer)
    full = method == "full"
    return Units(layer_bytes, layer if full else lora_layer, compute_bytes * (head + counts.final_norm),
                 head + counts.final_norm if full else 0)


@dataclass(frozen=True)
class Spread:
    """How one run spreads over `gpus` GPUs with `strategy`, and what that adds to each GPU."""

    gpus: int
    strategy: str  # ddp | fsdp
    compute_bytes: int
    buckets: float = 0.0  # DDP: the reducer's flat copy of every trainable gradient
    units: Units | None = None  # FSDP: the units gathered at once

    @property
    def sharded(self) -> bool:
        """FSDP: weights, gradients and optimizer state are split over the GPUs."""
        return self.strategy == "fsdp"

    def share(self, n_bytes: float, kept: float = 0.0) -> float:
        """Per-GPU bytes of a sharded tensor set (`kept` of it is not sharded: every GPU keeps it whole)."""
        return (n_bytes - kept) / self.gpus + kept if self.sharded else n_bytes

    def gathered(self, phase: str) -> float:
        """FSDP: bytes of gathered units alive in `phase` (two layers and the tail; nothing at the optimizer step)."""
        if not self.units or phase == "optimizer step":
            return 0.0
        return 2 * self.units.layer + self.units.tail

    def reduce_scatter(self, phase: str) -> float:
        """FSDP: the gradient reduce-scatter of the largest unit with gradients, in `phase` (backward only).

        Its unsharded gradients and the flat reduce-scatter input (compute dtype), the 1/N
        output, and its fp32 cast (_fsdp_collectives.foreach_reduce).
        """
        if not self.units or phase != "backward start":
            return 0.0
        params = max(self.units.layer_trainable, self.units.tail_trainable)
        return 2 * self.compute_bytes * params + (self.compute_bytes + 4) * params / self.gpus

    def communication(self) -> float:
        """NCCL's buffers on each GPU, in bytes."""
        return NCCL_BUFFERS_GIB * GIB

    def assumptions(self) -> list[str]:
        """What the per-GPU figure takes for granted, for the report."""
        common = f"NCCL buffers {NCCL_BUFFERS_GIB:g} GiB per GPU (assumed); activations are each GPU's own micro-batch"
        if self.sharded:
            return [(f"per GPU of {self.gpus}, FSDP full shard (FSDP2 as accelerate 1.15 runs it): weights, gradients and "
                     f"optimizer state split {self.gpus} ways; each decoder layer is a unit gathered in the compute dtype, two "
                     "at a time (the next one prefetched), and the tail (final norm + lm_head) stays gathered from its "
                     "forward to its backward"), common]
        return [(f"per GPU of {self.gpus}, DDP: a whole replica on each GPU, plus the reducer's gradient buckets (a flat copy "
                 f"of every trainable gradient: transformers leaves gradient_as_bucket_view off; {DDP_BUCKET_CAP_MB} MB buckets)"),
                common]


def spread_for(spec: ModelSpec, settings, trainable: int, compute_bytes: int, quantised_per_layer: int) -> Spread | None:
    """The run's Spread over its GPUs, or None on one GPU (the estimate is then exactly the one-GPU one)."""
    how = spread(settings)
    if not how:
        return None
    if how == "ddp":
        return Spread(settings.gpus, how, compute_bytes, buckets=4.0 * trainable)
    return Spread(settings.gpus, how, compute_bytes, units=fsdp_units(spec, settings.method, trainable, compute_bytes, quantised_per_layer))


def scaled_rate(tokens_per_s: float, settings) -> tuple[float, float]:
    """(the whole run's tokens/s on its GPUs, the scaling efficiency applied): N micro-batches at once, at the
    assumed efficiency (1.0 on one GPU)."""
    how = spread(settings)
    if not how:
        return tokens_per_s, 1.0
    efficiency = SCALING_EFFICIENCY[how]
    return tokens_per_s * settings.gpus * efficiency, efficiency
