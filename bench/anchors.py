"""The estimator beside published measurements, and beside `accelerate estimate-memory`, on the same settings.

Each anchor is a number someone measured and published, with the settings they state;
the script computes sft-tui's estimate for the same settings (what the estimator assumes
where the source is silent is written next to it) and, where it applies, what accelerate's
estimate-memory would say for the same model (weights only, "training using Adam" as a
multiple of them: it has no notion of LoRA, sequence length or batch). The README's
"Beside published numbers" table is this script's output:

    python bench/anchors.py            -> bench/results/anchors.json and anchors.md (the README table)

CPU only, no network: accelerate's numbers come from its own functions on a meta-device
model that transformers builds from the preset's architecture.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_facts  # noqa: E402

from sft_tui.core.estimate import fit  # noqa: E402
from sft_tui.core.estimate.memory import DEFAULT_CALIBRATION, TrainSettings, estimate_memory  # noqa: E402
from sft_tui.core.models.gpus import gpu_by_name  # noqa: E402
from sft_tui.core.models.modelspec import spec_from_preset  # noqa: E402
from sft_tui.core.models.presets import load_model_preset  # noqa: E402
from sft_tui.core.units import GIB  # noqa: E402

# Unsloth's long-context tests: QLoRA on all linear layers, rank 32, batch 1, sequences padded to the length tested.
# Every published setup below took its loss on the full logits (transformers' loss, torchtune's cross-entropy of the
# time): the anchors compare like with like (full_logits); the last column shows what TRL 1.16's fused head, which
# sft-tui trains with, makes of the same settings.
UNSLOTH = TrainSettings(method="qlora", batch_size=1, lora_r=32, attention="flash_attention_2", optimizer="adamw_8bit", full_logits=True)


@dataclass(frozen=True)
class Anchor:
    """One published measurement and how to compute ours for it."""

    source: str
    model: str  # our preset with the same shape
    setting: str
    published: str
    kind: str  # weights_mb | peak_gb_without_context | max_seq
    value: float  # the published number in the unit of `kind` (max_seq: tokens; 0 = out of memory)
    settings: TrainSettings
    gpu: str = ""  # max_seq: the GPU whose memory is the budget
    assumed: str = ""


ANCHORS = (
    Anchor("QLoRA paper (Dettmers et al. 2023), Fig. 6", "llama2-7b", "LLaMA 7B, NF4 + double quantisation, weights",
           "5,048 MB", "weights_mb", 5048, TrainSettings(method="qlora", full_logits=True),
           assumed="Llama 2 7B's shape (same as LLaMA 7B); our weights also count the embeddings and head in fp32 (peft's k-bit preparation)"),
    Anchor("torchtune LoRA tutorial", "llama2-7b", "Llama 2 7B, LoRA r=8 on q/v, batch 2, bf16, AdamW, activation checkpointing",
           "15.57 GB peak reserved", "peak_gb_without_context", 15.57,
           TrainSettings(method="lora", batch_size=2, seq_len=512, lora_r=8, lora_targets=("q", "v"), full_logits=True),
           assumed="seq 512 (Alpaca examples are short; the tutorial does not say); torchtune keeps adapters in bf16, we count fp32"),
    Anchor("Unsloth, Llama 3.3 blog: Hugging Face + FA2 column", "llama3.1-8b", "Llama 3.1 8B, QLoRA all-linear r=32, batch 1, padded",
           "max context about 28,000 on an 80 GB GPU", "max_seq", 28000, UNSLOTH, gpu="A100-80GB",
           assumed="8-bit AdamW and gradient checkpointing on (the blog does not list them for the HF baseline)"),
    Anchor("Unsloth, Llama 3.3 blog: Hugging Face + FA2 column", "llama3.1-70b", "Llama 3.3 70B, QLoRA all-linear r=32, batch 1, padded",
           "max context 6,916 on an 80 GB A100", "max_seq", 6916, UNSLOTH, gpu="A100-80GB",
           assumed="Llama 3.1 70B's shape (3.3 has the same); 8-bit AdamW, checkpointing on"),
    Anchor("Unsloth, Llama 3.3 blog: Hugging Face + FA2 column", "llama3.1-70b", "Llama 3.3 70B, QLoRA all-linear r=32, batch 1, padded",
           "out of memory on a 48 GB GPU", "max_seq", 0, UNSLOTH, gpu="A6000",
           assumed="a 48 GB card (the blog says 48 GB; we use the RTX A6000's 48 GB); 8-bit AdamW, checkpointing on"),
)


def accelerate_estimate(preset: str) -> tuple[float, float]:
    """(weights in bf16, 'training using Adam' for bf16 mixed precision) in GiB, from accelerate's own functions."""
    import torch
    import transformers
    from accelerate.commands.estimate import estimate_training_usage
    from accelerate.utils import calculate_maximum_sizes

    data = load_model_preset(preset)
    config = transformers.AutoConfig.for_model(data["family"], **dict(data["architecture"]))
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    total, _ = calculate_maximum_sizes(model)
    training = max(estimate_training_usage(total, "bfloat16").values())
    return total / 2 / GIB, training / GIB


def ours(anchor: Anchor, fused_head: bool = False) -> float:
    """sft-tui's number in the anchor's unit: with the source's full logits, or (fused_head) as TRL 1.16 would run it."""
    spec = spec_from_preset(anchor.model)
    settings = replace(anchor.settings, full_logits=not fused_head)
    if anchor.kind == "weights_mb":
        return estimate_memory(spec, settings).breakdown_gib()["weights"] * GIB / 1e6
    if anchor.kind == "peak_gb_without_context":
        return (estimate_memory(spec, settings).peak_gib - DEFAULT_CALIBRATION.cuda_context_gib) * GIB / 1e9
    budget = gpu_by_name(anchor.gpu).memory_gib
    return float(fit.longest_sequence(spec, replace(settings, seq_len=2048), budget, cap=262144))


def shown(anchor: Anchor, value: float) -> str:
    """The number as the table shows it, in the anchor's unit."""
    unit = {"weights_mb": "MB", "peak_gb_without_context": "GB", "max_seq": "tokens"}[anchor.kind]
    if anchor.kind == "max_seq":
        return "out of memory" if value == 0 else f"{value:,.0f} {unit}"
    return f"{value:,.{0 if unit == 'MB' else 2}f} {unit}"


def error_text(anchor: Anchor, value: float) -> str:
    """'+4%' (ours above the published number), or for out-of-memory anchors whether we also say it does not fit."""
    if anchor.kind == "max_seq" and anchor.value == 0:
        return "agrees" if value == 0 else f"disagrees: we fit {value:,.0f} tokens"
    return f"{100 * (value - anchor.value) / anchor.value:+.0f}%"


def main() -> None:
    rows = []
    for anchor in ANCHORS:
        value = ours(anchor)
        weights, training = accelerate_estimate(anchor.model)
        rows.append({"source": anchor.source, "model": anchor.model, "setting": anchor.setting, "published": anchor.published,
                     "sft_tui": shown(anchor, value), "error": error_text(anchor, value), "assumed": anchor.assumed,
                     "sft_tui_fused_head": shown(anchor, ours(anchor, fused_head=True)),
                     "accelerate": f"{weights:.1f} GiB weights (bf16); full training with Adam {training:.1f} GiB, any LoRA or sequence"})
    results = ROOT / "bench" / "results"
    (results / "anchors.json").write_text(json.dumps({"machine": machine_facts("accelerate", "transformers"), "rows": rows}, indent=1) + "\n")
    lines = ["| published | setting | published figure | sft-tui | difference | sft-tui with TRL 1.16's fused head | accelerate estimate-memory |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['source']} | {r['setting']} | {r['published']} | {r['sft_tui']} | {r['error']} | {r['sft_tui_fused_head']} | {r['accelerate']} |"
              for r in rows]
    note = ("The published setups took their loss on the full logits, and so does sft-tui's number beside them; the fused-head "
            "column is the same settings as sft-tui trains them (TRL 1.16: the loss in tiles, no full logits).")
    lines += ["", note, "", "What sft-tui assumed where the source is silent:", ""]
    lines += [f"- {r['setting']}: {r['assumed']}" for r in rows if r["assumed"]]
    (results / "anchors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
