"""The estimator's per-GPU peaks on several GPUs with FSDP full shard, and beside what others published per GPU.

Part one is our table: Llama 3.1 8B full fine-tuning and Llama 3.1 70B LoRA and QLoRA on
1, 2, 4 and 8 GPUs, at sft-tui's defaults (seq 2048, micro-batch 1, padded rows, gradient
checkpointing on, bf16 mixed precision, SDPA, TRL 1.16's fused LM head; full fine-tuning
keeps fp32 master weights; LoRA and QLoRA r=16 on all linear layers, fp32 adapters; QLoRA
NF4 with double quantisation, stored in bf16 for FSDP; AdamW (fused) everywhere: under
FSDP the trainer runs it in place of bitsandbytes' 8-bit optimizers).

Part two runs the estimator at the settings of each published per-GPU figure collected in
/tmp/w18/published.md (sources named and linked below); only FSDP runs without CPU offload
are set side by side, the others are listed with why they are not comparable.

    python bench/fsdp_table.py   -> bench/results/fsdp_table.json and fsdp_table.md

CPU only, no torch: the estimator is arithmetic on the model's config.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_facts

from sft_tui.core.estimate.memory import TrainSettings, estimate_memory
from sft_tui.core.models.modelspec import spec_from_preset
from sft_tui.core.units import GIB

GPUS = (1, 2, 4, 8)
OURS = {
    "Llama 3.1 8B, full": ("llama3.1-8b", TrainSettings(method="full", optimizer="adamw_torch")),
    "Llama 3.1 70B, LoRA": ("llama3.1-70b", TrainSettings(method="lora", optimizer="adamw_torch")),
    "Llama 3.1 70B, QLoRA": ("llama3.1-70b", TrainSettings(method="qlora", optimizer="adamw_torch")),
}
SETTINGS_LINE = ("seq 2048, micro-batch 1, padded rows, gradient checkpointing on, bf16 mixed precision (full: fp32 master "
                 "weights), SDPA, TRL's fused LM head, LoRA/QLoRA r=16 on all linear layers (fp32 adapters), QLoRA NF4 + double "
                 "quantisation stored in bf16, AdamW (fused); FSDP2 full shard; CUDA context 0.6 GiB, NCCL 0.5 GiB and 10% "
                 "allocator slack per GPU")


@dataclass(frozen=True)
class Published:
    """One published per-GPU figure, the settings it was measured at, and what we make of them."""

    row: str  # the row id in /tmp/w18/published.md
    what: str
    source: str  # name
    url: str
    figure: str  # as published
    figure_gib: tuple[float, float]  # low, high, in GiB
    model: str
    gpus: int
    settings: tuple[TrainSettings, ...]  # one, or a range where the source's setting falls between two of ours
    why: str  # one sentence: why the two differ
    adjust_gib: float = 0.0  # an arithmetic adjustment for a setting the estimator cannot express (stated in `why`)


GB = 1e9 / GIB  # GiB per GB

# A1/A2: torchtitan's pretraining loop (FSDP2, fp32 sharded params, bf16 compute, AdamW, full logits of a 128k vocab,
# packed rows). Its selective per-op checkpointing keeps more than full checkpointing and less than none: both bounds.
TITAN = dict(method="full", optimizer="adamw_torch", seq_len=8192, padded=False, attention="flash_attention_2", full_logits=True)
COMPARED = [
    Published("A1", "Llama 3.1 8B full, 8x H100 96 GB, seq 8192, local batch 2, selective AC, AdamW (torchtitan pretraining)",
              "torchtitan docs/performance.md (Table 1)", "https://github.com/pytorch/torchtitan/blob/main/docs/performance.md",
              "82.4 GiB (max reserved)", (82.4, 82.4), "llama3.1-8b", 8,
              (TrainSettings(**TITAN, batch_size=2, gradient_checkpointing=True), TrainSettings(**TITAN, batch_size=2, gradient_checkpointing=False)),
              "selective per-op checkpointing sits between our two bounds (full checkpointing / none); activations of "
              "2 x 8192 tokens and the 128k-vocab logits dominate, not the shards"),
    Published("A2", "Llama 3 8B full, 8x H100, seq 8192, batch 1, per-op SAC, torch.compile (torchtitan via torchao's float8 README, bf16 row)",
              "torchao torchao/float8/README.md (training benchmarks)", "https://github.com/pytorch/ao/blob/main/torchao/float8/README.md",
              "47.65 GB", (47.65 * GB, 47.65 * GB), "llama3.1-8b", 8,
              (TrainSettings(**TITAN, batch_size=1, gradient_checkpointing=True), TrainSettings(**TITAN, batch_size=1, gradient_checkpointing=False)),
              "the same loop at batch 1 with torch.compile, which fuses away many of the saved elementwise tensors our "
              "no-checkpointing bound counts"),
    Published("B1", "Llama 3.1 70B LoRA, 8x A100 80 GB, seq 2048 packed, batch 2, AC on, r=16 on q/v/o + MLP, fused AdamW, all bf16 (torchtune)",
              "torchtune README (memory and training speed)", "https://github.com/pytorch/torchtune/blob/main/README.md",
              "27.6 GiB", (27.6, 27.6), "llama3.1-70b", 8,
              (TrainSettings(method="lora", optimizer="adamw_torch", batch_size=2, padded=False, lora_targets=("q", "v", "o", "gate", "up", "down"),
                             lora_dropout=0.0),),
              "torchtune keeps the adapters and their AdamW state in bf16 (ours fp32, under 0.1 GiB a GPU here), takes the loss "
              "in chunks like TRL's fused head, and reports PyTorch's peak without the CUDA context and NCCL buffers we add"),
    Published("B2", "Llama 2 70B LoRA, 8x A100, seq 4096, batch 4 (torchtune 2024; LoRA settings not stated, current config assumed: "
              "r=16 on q/v/o + MLP, AC on, bf16)",
              "torchtune README, 2024 version", "https://github.com/pytorch/torchtune",
              "26.4 GB", (26.4 * GB, 26.4 * GB), "llama2-70b", 8,
              (TrainSettings(method="lora", optimizer="adamw_torch", seq_len=4096, batch_size=4, padded=False,
                             lora_targets=("q", "v", "o", "gate", "up", "down"), lora_dropout=0.0),),
              "ours fills every row to 4096 tokens (27 GiB of activations); the table does not say its rows were packed, and "
              "torchtune pads a batch only to its longest row, so its rows were likely far shorter than the 4096 cap"),
    Published("B3", "Llama 2 70B LoRA, 8x H100 80 GB, seq 2048 packed, batch 8, AC on, r=8 all-linear, flash-attn 2, "
              "base loaded in fp32, bf16 mixed precision (PEFT + accelerate FSDP1)",
              "PEFT docs, accelerate/fsdp.md", "https://huggingface.co/docs/peft/accelerate/fsdp",
              "72-80 GB (device-level, screenshot)", (72 * GB, 80 * GB), "llama2-70b", 8,
              (TrainSettings(method="lora", optimizer="adamw_torch", batch_size=8, padded=False, attention="flash_attention_2",
                             lora_r=8, lora_dropout=0.0),),
              "the example keeps the frozen base in fp32 (we add its extra 2 B a parameter / 8 to our bf16-base figure), "
              "and a device-level screenshot also shows what the caching allocator holds and frees later",
              adjust_gib=2 * 68.98e9 / 8 / GIB),
    Published("C2", "Llama 2 70B QLoRA, 2 GPUs, seq 2048 packed, batch 2, AC on (reentrant), r=8 all-linear, NF4 + double quant, "
              "bf16 storage and compute, no CPU offload (PEFT + accelerate FSDP1)",
              "PEFT docs, accelerate/fsdp.md", "https://huggingface.co/docs/peft/accelerate/fsdp",
              "35.6 GB", (35.6 * GB, 35.6 * GB), "llama2-70b", 2,
              (TrainSettings(method="qlora", optimizer="adamw_torch", batch_size=2, padded=False, attention="flash_attention_2",
                             lora_r=8, lora_dropout=0.0),),
              "ours is 4 GiB lower: the source does not say what it measured (a device-level reading includes what the caching "
              "allocator keeps beyond our 10% slack) and it ran FSDP1's flat parameters, not the FSDP2 we model"),
]
NOT_COMPARED = [
    ("A3", "llama-recipes, Llama 3 8B full on 8x A100 40 GB", "feasibility only (no number) and pure bf16 (weights, gradients and AdamW state in bf16)"),
    ("A4", "LLaMA-Factory issue #5977, Llama 3 8B full on 8x RTX 3090", "DeepSpeed ZeRO-3 with CPU offload of parameters and optimizer"),
    ("A5", "torchtune 2024 README, Llama 2 7B full on 4x RTX 4090", "a proxy model (Llama 2 7B), settings partly not stated"),
    ("B4, C3", "PEFT docs (DeepSpeed)", "DeepSpeed ZeRO-3, not FSDP"),
    ("B5, C1, C4, C5, C6", "universal-llm-trainer, PEFT docs, Philipp Schmid's blog, Answer.AI, axolotl", "CPU offload of the parameters: "
     "the estimator does not model offload (an estimate without it should lie above these figures)"),
    ("T1-T3", "Hugging Face Llama 3.1 blog, LLaMA-Factory README, Philipp Schmid's blog", "totals or GPU counts, not per-GPU figures"),
]


def per_gpu(model: str, settings: TrainSettings, gpus: int) -> float:
    """The estimator's per-GPU peak in GiB (FSDP full shard on more than one GPU)."""
    return estimate_memory(spec_from_preset(model), TrainSettings(**{**settings.__dict__, "gpus": gpus, "strategy": "fsdp"})).peak_gib


def _range(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f}" if abs(high - low) < 0.05 else f"{low:.1f}-{high:.1f}"


def main() -> None:
    """Compute both tables, print them and write bench/results/fsdp_table.{json,md}."""
    ours = {name: {str(n): round(per_gpu(model, s, n), 2) for n in GPUS} for name, (model, s) in OURS.items()}
    compared = []
    for p in COMPARED:
        values = [per_gpu(p.model, s, p.gpus) + p.adjust_gib for s in p.settings]
        compared.append({"row": p.row, "what": p.what, "source": p.source, "url": p.url, "published": p.figure,
                         "published_gib": [round(v, 2) for v in p.figure_gib], "ours_gib": [round(v, 2) for v in values],
                         "gpus": p.gpus, "model": p.model, "why": p.why,
                         "settings": [{k: v for k, v in s.__dict__.items() if v != getattr(TrainSettings(), k)} for s in p.settings]})
    lines = ["Per-GPU peak, FSDP full shard (sft-tui's estimate, GiB)", "",
             "| run | 1 GPU | 2 GPUs | 4 GPUs | 8 GPUs |", "|---|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(f"{row[str(n)]:.1f}" for n in GPUS) + " |" for name, row in ours.items()]
    lines += ["", f"Settings: {SETTINGS_LINE}. One GPU: no FSDP.", "",
              "Ours vs published, per GPU (our estimate at each source's settings)", "",
              "| # | run (as published) | published per GPU | ours per GPU (GiB) | source | why they differ |", "|---|---|---|---|---|---|"]
    for c in compared:
        published = f"{c['published']}" + ("" if "GiB" in c["published"] else f" = {_range(c['published_gib'])} GiB")
        lines.append(f"| {c['row']} | {c['what']} | {published} | {_range(c['ours_gib'])} | [{c['source']}]({c['url']}) | {c['why']} |")
    lines += ["", "Not set side by side:", ""] + [f"- {row} ({who}): {why}" for row, who, why in NOT_COMPARED]
    text = "\n".join(lines) + "\n"
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "fsdp_table.md").write_text(text)
    (results / "fsdp_table.json").write_text(json.dumps({"machine": machine_facts(), "settings": SETTINGS_LINE, "strategy": "fsdp",
                                                         "per_gpu_gib": ours, "compared": compared,
                                                         "not_compared": [dict(row=r, source=w, why=y) for r, w, y in NOT_COMPARED]},
                                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
