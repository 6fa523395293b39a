"""`sft-tui estimate`: gather the settings (run config, options, GPU), run the estimator, print it."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sft_tui.cli.output import print_json
from sft_tui.core.errors import UserError
from sft_tui.core.estimate.report import render_estimate


def resolve_gpu(gpu: str | None, gpu_gib: float | None, sampler=None):
    """The memory budget: --gpu NAME and/or --gpu-gib N, else the largest GPU NVML reports (what `train` checks a run
    against: can it ever fit here), else None. A sampler passed in stays open."""
    from sft_tui.core.estimate.fit import GpuTarget, detected_gpus
    from sft_tui.core.models.gpus import gpu_by_name

    if gpu_gib is not None and gpu_gib <= 0:
        raise UserError(f"--gpu-gib must be more than 0, got {gpu_gib:g}", "--gpu-gib", "give the GPU's memory in GiB, e.g. --gpu-gib 24")
    if gpu is not None:
        info = gpu_by_name(gpu)
        return GpuTarget(info.name, gpu_gib or info.memory_gib, info, "--gpu")
    if gpu_gib is not None:
        return GpuTarget(f"{gpu_gib:g} GiB GPU", gpu_gib, None, "--gpu-gib")
    return max(detected_gpus(sampler), key=lambda g: g.memory_gib, default=None)  # max keeps the first of equals: GPU 0


def calibration_for_target(target, method: str, home: Path | None = None):
    """What the measurements in `home` (default $SFT_TUI_HOME) say on `target`'s GPU model for `method`; None when the
    target is no GPU model (--gpu-gib, or no GPU)."""
    from sft_tui.core.estimate.calibration import calibration_for
    from sft_tui.core.runs.store import runs_home

    if target is None or (target.source != "detected" and target.info is None):
        return None
    return calibration_for(home or runs_home(), target.name, target.info, method)


def packing_checked(settings, family: str | None, asked: bool):
    """Settings for packed rows as `train` would run them: refused where train refuses, masked where attention needs it.

    Packed rows carry no padding. Only flash-attention reads them without a mask: with SDPA
    or eager, transformers builds a block-diagonal mask from the position ids, so the
    estimator's mask terms stay.
    """
    from sft_tui.core.data.batching import choose_batching, has_mask

    if settings.padded:
        return settings
    if asked:
        try:  # what train would refuse, refused the same way
            choose_batching("on", True, settings.objective, "cuda", settings.attention, family)
        except ValueError as error:
            raise UserError(str(error), "--packing", "leave out --packing") from None
    return replace(settings, padding_share=0.0, padded=has_mask(False, settings.attention))


def data_padding(run_config, settings, model: str | None):
    """The settings with the padding the run's batching leaves on its own data (time counts real tokens only).

    A GPU run's view: the batching speed_plan picks on CUDA for these rows' token counts
    (the model's tokenizer where there is one). Data that cannot be read yet changes nothing
    here; `train` names the problem.
    """
    from sft_tui.core.data.batching import padding_share
    from sft_tui.core.data.formats import load_examples
    from sft_tui.core.models.modelspec import resolve_model
    from sft_tui.core.runs.preflight import training_lengths
    from sft_tui.core.runs.speed import speed_plan

    if run_config.method.objective != "sft" or not run_config.data.train:
        return settings
    try:
        name = model or run_config.model.name
        examples = load_examples(Path(run_config.data.train), run_config.data.format).examples
        lengths = training_lengths(examples, name)  # the model's tokenizer where it is on disk, else approximate counts
        plan = speed_plan(run_config, "cuda", resolve_model(name).family, installed=settings.liger, lengths=lengths)
    except UserError:
        return settings
    t = run_config.training
    share = padding_share(lengths, t.micro_batch_size, plan.batching.mode, t.max_seq_length, t.seed, t.gradient_accumulation_steps)
    return replace(settings, padded=plan.batching.padded, padding_share=share)


def run_estimate(model: str | None, config: Path | None, overrides: dict[str, Any], gpu: str | None, gpu_gib: float | None,
                 tokens: float | None, as_json: bool, calibrated: bool = True) -> None:
    """Entry point of the estimate command (options already parsed by Typer).

    On a GPU model with measurements in $SFT_TUI_HOME (finished runs, `sft-tui calibrate`)
    the report ends with the estimator's error there, and from three measurements on the
    estimate is corrected with them (unless calibrated is False).
    """
    from sft_tui.core.estimate.fit import (
        build_estimate,
        detected_gpus,
        rooms_on_this_box,
    )
    from sft_tui.core.estimate.memory import (
        DEFAULT_CALIBRATION,
        TrainSettings,
        settings_from_run_config,
    )
    from sft_tui.core.models.modelspec import resolve_model
    from sft_tui.core.runs.sysmon import SystemSampler

    sampler = SystemSampler()
    try:
        target = resolve_gpu(gpu, gpu_gib, sampler)
        # the room now matters only for this box's own GPU, not one named or sized on the command line
        rooms = rooms_on_this_box(sampler) if target is not None and target.source == "detected" else ()
        visible = len(detected_gpus(sampler)) if config is not None else None  # what [distributed] gpus = "all" counts
    finally:
        sampler.close()
    bf16 = target.info.bf16_supported if target and target.info else None
    if config is not None:
        from sft_tui.core.config.load import load_run_config

        run_config = load_run_config(config).config
        settings = data_padding(run_config, settings_from_run_config(run_config, bf16, visible_gpus=visible or None), model)
        model = model or run_config.model.name
    else:
        if model is None:
            raise UserError("no model given", "sft-tui estimate", "name one (sft-tui estimate qwen2.5-7b) or pass --config run.toml")
        settings = TrainSettings()
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if config is None and overrides.get("method") == "qlora" and overrides.get("optimizer") is None:
        settings = replace(settings, optimizer="paged_adamw_8bit")  # what the qlora recipe trains with
    if tokens is not None and tokens <= 0:
        raise UserError(f"--tokens must be more than 0, got {tokens:g}", "--tokens", "give the number of training tokens")
    spec = resolve_model(model)
    settings.validate()  # a bad --method is named before any measurement is read
    settings = packing_checked(settings, spec.family, overrides.get("padded") is False)
    found = calibration_for_target(target, settings.method) if calibrated else None
    cal = found.calibration if found else DEFAULT_CALIBRATION
    estimate = build_estimate(spec, settings, target, tokens, cal=cal, rooms=rooms)
    here = target is not None and target.source == "detected"
    if as_json:
        print_json(estimate.to_json() | {"calibration": found.to_json() | {"line": found.line(here)} if found else None})
    else:
        sys.stdout.write(render_estimate(estimate, str(config) if config is not None else "CONFIG"))
        if found:
            sys.stdout.write("\n".join(found.lines(here)) + "\n")


def estimate(
    model: Annotated[Optional[str], typer.Argument(help="Preset name, config.json / model folder, or repo id in the local HF cache (default: the --config's model).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Take every setting from a run config TOML; options below override it.")] = None,
    method: Annotated[Optional[str], typer.Option(help="full, lora or qlora. [default: lora]")] = None,
    objective: Annotated[Optional[str], typer.Option(help="sft, dpo, kto or orpo: DPO and ORPO run chosen and rejected answers, DPO and KTO a reference forward. [default: sft]")] = None,
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="Sequence length in tokens. [default: 2048]")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Micro-batch size. [default: 1]")] = None,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help="Gradient accumulation steps. [default: 1]")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations. [default: on]")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adamw_torch, adamw_8bit, paged_adamw_8bit, sgd or adafactor. [default: adamw_torch; paged_adamw_8bit with --method qlora, as its recipe]")] = None,
    precision: Annotated[Optional[str], typer.Option(help="bf16, fp16 or fp32. [default: bf16]")] = None,
    attention: Annotated[Optional[str], typer.Option(help="sdpa, flash_attention_2 or eager. [default: sdpa]")] = None,
    lora_r: Annotated[Optional[int], typer.Option("--lora-r", help="LoRA rank. [default: 16]")] = None,
    lora_targets: Annotated[Optional[str], typer.Option("--lora-targets", help='"all-linear" or comma-separated layers (q,v or q_proj,v_proj). [default: all-linear]')] = None,
    lora_dropout: Annotated[Optional[float], typer.Option("--lora-dropout", help="LoRA dropout (it costs a mask per adapted layer). [default: 0.05]")] = None,
    quant_type: Annotated[Optional[str], typer.Option("--quant-type", help="QLoRA 4-bit type: nf4 or fp4. [default: nf4]")] = None,
    double_quant: Annotated[Optional[bool], typer.Option("--double-quant/--no-double-quant", help="QLoRA double quantisation. [default: on]")] = None,
    packing: Annotated[Optional[bool], typer.Option("--packing/--no-packing", help="Packed rows (SFT only): no padding; no mask with flash_attention_2. [default: off]")] = None,
    gpus: Annotated[Optional[int], typer.Option("--gpus", help="GPUs the run trains on, one process each: the estimate is per GPU. [default: 1, or the --config's [distributed] gpus]")] = None,
    strategy: Annotated[Optional[str], typer.Option("--strategy", help="With --gpus > 1: ddp (a whole copy per GPU) or fsdp (weights, gradients and optimizer state sharded). [default: ddp]")] = None,
    liger: Annotated[Optional[bool], typer.Option("--liger/--no-liger", help="Liger Kernel's RMSNorm, RoPE and SwiGLU (less saved for backward). [default: off, or what the --config sets: training.liger = on]")] = None,
    gpu_gib: Annotated[Optional[float], typer.Option("--gpu-gib", help="GPU memory in GiB instead of the detected GPU.")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help="GPU by name (A100-80GB, H100, 4090, L4, T4, ...) instead of the detected one.")] = None,
    tokens: Annotated[Optional[float], typer.Option("--tokens", help="Training tokens (dataset tokens x epochs; a preference example counts its prompt and one answer) for an ETA.")] = None,
    calibrated: Annotated[bool, typer.Option("--calibrated/--uncalibrated", help="Correct the estimate with this GPU model's measurements in SFT_TUI_HOME (from 3 on). [default: calibrated]")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Peak GPU memory and time of a run from the model's config alone, against your GPU (per GPU with --gpus N)."""
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets is not None else None
    overrides = dict(method=method, objective=objective, seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum,
                     gradient_checkpointing=gradient_checkpointing, optimizer=optimizer, precision=precision, attention=attention,
                     lora_r=lora_r, lora_targets=targets, lora_dropout=lora_dropout, quant_type=quant_type, double_quant=double_quant,
                     padded=None if packing is None else not packing, liger=liger, gpus=gpus, strategy=strategy)
    run_estimate(model, config, overrides, gpu, gpu_gib, tokens, as_json, calibrated)


def register(app: typer.Typer) -> None:
    """Add estimate to the main app."""
    app.command()(estimate)
