"""`sft-tui estimate`: gather the settings (run config, options, GPU), run the estimator, print it."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from sft_tui.cli_output import print_json
from sft_tui.core.errors import UserError

BAR = 24


def resolve_gpu(gpu: str | None, gpu_gib: float | None, sampler=None):
    """The memory budget: --gpu NAME and/or --gpu-gib N, else the first GPU NVML reports, else None."""
    from sft_tui.core.estimate_fit import GpuTarget
    from sft_tui.core.gpus import gpu_by_name, gpu_from_nvml_name
    from sft_tui.core.sysmon import SystemSampler

    if gpu_gib is not None and gpu_gib <= 0:
        raise UserError(f"--gpu-gib must be more than 0, got {gpu_gib:g}", "--gpu-gib", "give the GPU's memory in GiB, e.g. --gpu-gib 24")
    if gpu is not None:
        info = gpu_by_name(gpu)
        return GpuTarget(info.name, gpu_gib or info.memory_gib, info, "--gpu")
    if gpu_gib is not None:
        return GpuTarget(f"{gpu_gib:g} GiB GPU", gpu_gib, None, "--gpu-gib")
    sampler = sampler or SystemSampler()
    snapshot = sampler.sample_gpus()
    sampler.close()
    if not snapshot.available:
        return None
    first = snapshot.gpus[0]
    memory = first.memory_total_bytes / 1024**3
    return GpuTarget(first.name, memory, gpu_from_nvml_name(first.name, memory), "detected")


def run_estimate(model: str | None, config: Path | None, overrides: dict[str, Any], gpu: str | None, gpu_gib: float | None,
                 tokens: float | None, as_json: bool) -> None:
    """Entry point of the estimate command (options already parsed by Typer)."""
    from sft_tui.core.estimate_fit import build_estimate
    from sft_tui.core.estimator import TrainSettings, settings_from_run_config
    from sft_tui.core.modelspec import resolve_model

    target = resolve_gpu(gpu, gpu_gib)
    bf16 = target.info.bf16_supported if target and target.info else None
    if config is not None:
        from sft_tui.core.config import load_run_config

        run_config = load_run_config(config).config
        settings = settings_from_run_config(run_config, bf16)
        model = model or run_config.model.name
    else:
        if model is None:
            raise UserError("no model given", "sft-tui estimate", "name one (sft-tui estimate qwen2.5-7b) or pass --config run.toml")
        settings = TrainSettings()
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if tokens is not None and tokens <= 0:
        raise UserError(f"--tokens must be more than 0, got {tokens:g}", "--tokens", "give the number of training tokens")
    estimate = build_estimate(resolve_model(model), settings, target, tokens)
    if as_json:
        print_json(estimate.to_json())
    else:
        sys.stdout.write(render_estimate(estimate))


def _bar(part: float, whole: float) -> str:
    filled = round(BAR * part / whole) if whole else 0
    return "█" * filled + "·" * (BAR - filled)


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render_estimate(e) -> str:
    """The readable report: settings, a bar per term with its reason, fit, limits, time, suggestions."""
    m, s = e.memory, e.memory.settings
    lines = [
        f"{m.model} · {s.method} · seq {s.seq_len} · micro-batch {s.batch_size} (accumulation {s.grad_accum}) · "
        f"checkpointing {'on' if s.gradient_checkpointing else 'off'} · {s.precision} · {s.attention} · {s.optimizer}",
        f"{m.params / 1e9:.2f}B params, {m.trainable_params / 1e6:.1f}M trainable ({100 * m.trainable_params / m.params:.2f}%)"
        + (f", LoRA r={s.lora_r} on {', '.join(s.lora_targets)}" if s.method != "full" else ""),
        "",
    ]
    peak = m.peak_gib
    for term in m.terms:
        gib = term.bytes / 1024**3
        lines.append(f"  {term.key:<12}{gib:8.2f} GiB  {_bar(gib, peak)}  {term.explanation}")
    lines.append(f"  {'peak':<12}{peak:8.2f} GiB  (at the {m.phase})")
    lines.append("")
    if e.gpu is None:
        lines.append("GPU: no NVIDIA GPU detected; pass --gpu NAME (e.g. A100-80GB, 4090) or --gpu-gib N to check the fit")
    else:
        verdict = f"fits, {e.headroom_gib:.1f} GiB headroom" if e.fits else f"does NOT fit: {-e.headroom_gib:.1f} GiB over"
        lines.append(f"GPU: {e.gpu.name}, {e.gpu.memory_gib:.1f} GiB ({e.gpu.source}) -> {verdict}")
        batch = e.max_batch_size if e.max_batch_size else "none (not even 1)"
        seq = e.max_seq_len if e.max_seq_len else "none"
        lines.append(f"largest micro-batch at seq {s.seq_len}: {batch}; longest sequence at micro-batch {s.batch_size}: {seq} (searched up to {e.seq_cap})")
        if e.time:
            t = e.time
            eta = f"; {_duration(t.eta_s)} for the given tokens" if t.eta_s is not None else " (--tokens N gives an ETA)"
            lines.append(f"time: about {t.tokens_per_s:,.0f} tokens/s, assuming {t.utilisation:.0%} of {t.peak_tflops:g} TFLOP/s{eta}")
    for note in e.notes:
        lines.append(f"note: {note}")
    if e.suggestions:
        lines += ["", "to make it fit:"]
        for x in e.suggestions:
            lines.append(f"  {'fits' if x.fits else 'no  '}  {x.peak_gib:7.2f} GiB  {x.change}")
    lines += ["", "assumptions:"] + [f"  - {a}" for a in m.assumptions]
    return "\n".join(lines) + "\n"
