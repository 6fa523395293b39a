"""`sft-tui estimate`: gather the settings (run config, options, GPU), run the estimator, print it."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from sft_tui.cli_output import print_json
from sft_tui.core.errors import UserError
from sft_tui.core.estimate_report import render_estimate


def resolve_gpu(gpu: str | None, gpu_gib: float | None, sampler=None):
    """The memory budget: --gpu NAME and/or --gpu-gib N, else the first GPU NVML reports, else None."""
    from sft_tui.core.estimate_fit import GpuTarget, detected_gpu
    from sft_tui.core.gpus import gpu_by_name

    if gpu_gib is not None and gpu_gib <= 0:
        raise UserError(f"--gpu-gib must be more than 0, got {gpu_gib:g}", "--gpu-gib", "give the GPU's memory in GiB, e.g. --gpu-gib 24")
    if gpu is not None:
        info = gpu_by_name(gpu)
        return GpuTarget(info.name, gpu_gib or info.memory_gib, info, "--gpu")
    if gpu_gib is not None:
        return GpuTarget(f"{gpu_gib:g} GiB GPU", gpu_gib, None, "--gpu-gib")
    return detected_gpu(sampler)


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
