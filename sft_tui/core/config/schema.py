"""The run config's fields: types, defaults, allowed values and one line of help each.

A run config is one TOML file with the sections below. The schema is data (frozen
dataclasses whose field metadata carries help, choices and ranges) so validation,
`sft-tui config show` and `sft-tui config init` all read the same source.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def opt(default: Any, help: str, *, choices: tuple[str, ...] = (), min: float | None = None,
        max: float | None = None, min_exclusive: bool = False, required: bool = False, bool_words: tuple[str, str] | None = None,
        gpu_spec: bool = False) -> Any:
    """A schema field: its default plus metadata used by validation and help.

    `bool_words` lets a string field with choices take true/false too, read as those two
    words (data.packing = true is "on"): older configs keep working. `gpu_spec` marks a
    string field that takes a count, "all" or a list of indices (core/config/gpus.py).
    """
    meta = {"help": help, "choices": choices, "min": min, "max": max, "min_exclusive": min_exclusive, "required": required,
            "bool_words": bool_words, "gpu_spec": gpu_spec}
    return field(default=default, metadata=meta)


METHODS = ("full", "lora", "qlora")
OBJECTIVES = ("sft", "dpo", "kto", "orpo")
# TRL's loss variants per objective ("" = TRL's default: sigmoid for DPO, kto for KTO; ORPO has one loss)
LOSS_TYPES = {
    "dpo": ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
            "apo_zero", "apo_down", "discopop", "sigmoid_norm"),
    "kto": ("kto", "apo_zero_unpaired"),
}
OPTIMIZERS = ("adamw_torch", "adamw_8bit", "paged_adamw_8bit", "sgd", "adafactor")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DATA_FORMATS = ("auto", "alpaca", "messages", "sharegpt", "prompt_completion", "text")


@dataclass(frozen=True)
class ModelSection:
    """[model]: which base model to adapt."""

    name: str = opt("", "preset name (sft-tui models list), a folder with config.json, or a repo id in the local HF cache", required=True)
    trust_remote_code: bool = opt(False, "allow the model's own Python code from its folder (only for models you trust)")
    chat_template: str = opt("", "Jinja chat template; empty = the tokenizer's own, or a ChatML default saved with the output")
    adapter: str = opt("", "start from a trained LoRA adapter: a run id (e.g. an SFT run before DPO) or a folder with adapter_config.json")


@dataclass(frozen=True)
class DataSection:
    """[data]: the training examples and how to read them."""

    train: str = opt("", "training data file: JSONL, JSON, CSV or Parquet (relative to this config file)", required=True)
    format: str = opt("auto", "row format; auto detects it from the first rows", choices=DATA_FORMATS)
    eval: str = opt("", "held-out file for evaluation; empty = split eval_fraction off the training data")
    eval_fraction: float = opt(0.05, "share of the training rows held out for evaluation when no eval file is given", min=0.0, max=0.5)
    packing: str = opt("auto", "auto = the fastest correct batching for the device (README: Speed); on = padding-free packing; "
                       "off = padded batches; wrapped = full rows where examples see each other (pre-training text only)",
                       choices=("auto", "on", "off", "wrapped"), bool_words=("on", "off"))
    group_by_length: bool = opt(True, "padded batches of similar-length examples (less padding, less random batches): used with "
                                "packing = off, and by auto where random batches would be >= 25% padding")
    completion_only_loss: bool = opt(True, "compute the loss on assistant/completion tokens only, not on the prompt")


@dataclass(frozen=True)
class MethodSection:
    """[method]: full fine-tuning, LoRA on a 16-bit base, or QLoRA on a 4-bit base."""

    name: str = opt("lora", "full, lora (16-bit base) or qlora (4-bit NF4 base)", choices=METHODS)
    objective: str = opt("sft", "sft (learn from examples), dpo or orpo (pairs of better/worse answers), kto (answers marked good/bad)",
                         choices=OBJECTIVES)
    beta: float = opt(0.1, "dpo/kto/orpo: how far the model may move from the reference (higher = stays closer); TRL's default 0.1",
                      min=0.0, max=100.0, min_exclusive=True)
    sft_weight: float = opt(0.0, "dpo: weight of an SFT loss on the chosen answers added to the DPO loss (RPO); keeps DPO from "
                            "lowering the chosen answers' likelihood too; 0 = pure DPO, 1.0 is usual", min=0.0, max=100.0)
    loss_type: str = opt("", "dpo/kto loss variant (dpo: sigmoid, ipo, hinge, robust, ...; kto: kto, apo_zero_unpaired); empty = TRL's default",
                         choices=("",) + LOSS_TYPES["dpo"] + LOSS_TYPES["kto"])
    lora_r: int = opt(16, "LoRA rank: size of the low-rank update; 8-64 is usual", min=1, max=4096)
    lora_alpha: int = opt(32, "LoRA scaling numerator (alpha / r scales the update); often 2 x r", min=1, max=65536)
    lora_dropout: float = opt(0.05, "dropout on the LoRA input", min=0.0, max=0.9)
    target_modules: tuple[str, ...] = opt(("all-linear",), 'linear layers LoRA adapts: "all-linear" or names such as ["q_proj", "v_proj"]')
    use_rslora: bool = opt(False, "rank-stabilised LoRA scaling (alpha / sqrt(r)); helps at high ranks")
    use_dora: bool = opt(False, "DoRA: weight-decomposed LoRA (slower, sometimes better at low rank)")
    quant_type: str = opt("nf4", "QLoRA 4-bit data type", choices=("nf4", "fp4"))
    double_quant: bool = opt(True, "QLoRA double quantisation of the quantisation constants (~0.37 bit/param saved)")


@dataclass(frozen=True)
class TrainingSection:
    """[training]: optimisation and schedule."""

    lr: float = opt(2e-4, "peak learning rate (LoRA: 1e-4..3e-4; full fine-tuning: 1e-5..5e-5)", min=0.0, max=1.0, min_exclusive=True)
    lr_scheduler: str = opt("cosine", "learning-rate schedule after warm-up", choices=("linear", "cosine", "constant", "constant_with_warmup"))
    warmup_ratio: float = opt(0.03, "share of the steps spent warming the learning rate up", min=0.0, max=0.5)
    epochs: float = opt(1.0, "passes over the training data (ignored when max_steps > 0)", min=0.0, max=1000.0, min_exclusive=True)
    max_steps: int = opt(0, "stop after this many optimizer steps; 0 = run the given epochs", min=0)
    micro_batch_size: int = opt(4, "examples per forward pass on the GPU", min=1, max=65536)
    gradient_accumulation_steps: int = opt(4, "micro-batches per optimizer step (effective batch = micro x accumulation)", min=1, max=65536)
    max_seq_length: int = opt(1024, "longest sequence in tokens; longer examples are truncated and counted", min=16, max=1_048_576)
    gradient_checkpointing: bool = opt(True, "recompute activations in the backward pass: much less memory, ~30% slower")
    optimizer: str = opt("adamw_torch", "optimizer; the 8-bit ones keep their state in 8 bits (bitsandbytes)", choices=OPTIMIZERS)
    precision: str = opt("auto", "auto = bf16 where the GPU supports it, else fp16 on a GPU, fp32 on the CPU", choices=PRECISIONS)
    liger: str = opt("auto", "Liger Kernel's fused RMSNorm/RoPE/SwiGLU: auto = on with CUDA when installed (pip install "
                     "-e '.[gpu]') for the families it supports; on = refuse to run without it", choices=("auto", "on", "off"), bool_words=("on", "off"))
    attention: str = opt("sdpa", "attention kernel: sdpa (memory-efficient), eager, or flash_attention_2 if installed", choices=("sdpa", "eager", "flash_attention_2"))
    weight_decay: float = opt(0.0, "decoupled weight decay", min=0.0, max=1.0)
    max_grad_norm: float = opt(1.0, "gradient clipping norm; 0 disables clipping", min=0.0, max=1e6)
    seed: int = opt(42, "random seed for data order and initialisation", min=0)
    logging_steps: int = opt(0, "steps between metric rows; 0 = about 50 rows per run", min=0)
    eval_steps: int = opt(0, "steps between evaluations; 0 = about 10 per run", min=0)
    save_steps: int = opt(0, "steps between checkpoints; 0 = about 5 per run", min=0)
    save_total_limit: int = opt(2, "checkpoints kept on disk (the newest)", min=1, max=1000)


@dataclass(frozen=True)
class OutputSection:
    """[output]: how the run is named and described."""

    name: str = opt("", "prefix of the run id; empty = <model>-<method>")
    notes: str = opt("", "free text kept with the run and in its model card")


STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistributedSection:
    """[distributed]: one process per GPU through accelerate launch (torchrun), or several CPU processes (gloo)."""

    gpus: str = opt("1", 'GPUs the run trains on: a count (2), "all", or indices ([0, 2]); more than 1 starts one process per GPU '
                    "through accelerate launch", gpu_spec=True)
    strategy: str = opt("ddp", "ddp = a whole copy of the model per GPU, gradients averaged (fastest when one GPU holds the run); "
                        "fsdp = weights, gradients and optimizer state sharded over the GPUs (for runs one GPU cannot hold)",
                        choices=STRATEGIES)
    processes: int = opt(0, "without a GPU: train in this many CPU processes with DDP over gloo (a CPU cluster, or tests); "
                         "0 = one process", min=0, max=256)


EVAL_CHECKS = ("auto", "exact_match", "json_valid", "json_keys", "regex")


@dataclass(frozen=True)
class EvalSection:
    """[eval]: what `sft-tui eval` measures on held-out examples, base model against tuned."""

    checks: tuple[str, ...] = opt(("auto",), "task checks: exact_match, json_valid, json_keys (same keys and value types as the "
                                  "reference JSON), regex; auto = exact_match, plus the JSON checks when most reference answers are JSON")
    regex: str = opt("", "pattern every answer should match (Python re.search), for the regex check")
    examples: int = opt(50, "held-out examples evaluated (the first N of the eval split)", min=1, max=100_000)
    max_new_tokens: int = opt(0, "longest generated answer; 0 = twice the longest reference answer, 16 to 512", min=0, max=32_768)
    general_text: str = opt("", "JSONL of {\"text\": ...} rows for the forgetting check; empty = the generic sample shipped with sft-tui")


SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "data": DataSection,
    "method": MethodSection,
    "training": TrainingSection,
    "output": OutputSection,
    "eval": EvalSection,
    "distributed": DistributedSection,
}
TOP_LEVEL_KEYS = ("recipe",)


@dataclass(frozen=True)
class RunConfig:
    """A fully resolved and validated run config."""

    model: ModelSection
    data: DataSection
    method: MethodSection
    training: TrainingSection
    output: OutputSection
    eval: EvalSection = EvalSection()
    distributed: DistributedSection = DistributedSection()
    recipe: str = ""


def all_field_paths() -> list[str]:
    """Every `section.key` the schema knows, in schema order."""
    return [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in fields(cls)]
