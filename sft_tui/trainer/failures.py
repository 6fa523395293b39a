"""Turn a training exception into a RunError a person can act on; out-of-memory gets the estimator's help."""

from __future__ import annotations

from sft_tui.core.runs import RunDir, RunError

GIB = 1024**3


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def oom_hint(run: RunDir, gpu_gib: float | None) -> str:
    """The nearest settings the estimator says fit, as a run-config change; generic advice without a GPU size."""
    from sft_tui.core.config import config_from_toml_text
    from sft_tui.core.estimate_fit import suggest
    from sft_tui.core.estimator import settings_from_run_config
    from sft_tui.core.modelspec import resolve_model

    generic = "lower training.micro_batch_size (raise gradient_accumulation_steps to keep the batch) or training.max_seq_length, or use qlora"
    if not gpu_gib:
        return generic
    try:
        config = config_from_toml_text(run.config_path.read_text(encoding="utf-8"), str(run.config_path))
        settings = settings_from_run_config(config)
        spec = resolve_model(config.model.name)
    except Exception:  # the hint must never hide the OOM itself
        return generic
    for suggestion in suggest(spec, settings, gpu_gib):
        if suggestion.fits and not suggestion.model:
            return f"the estimator says this fits in {gpu_gib:.0f} GiB: {suggestion.change} (about {suggestion.peak_gib:.1f} GiB); {generic}"
    return f"even the estimator's leanest settings do not fit {gpu_gib:.0f} GiB: choose a smaller model; {generic}"


def classify_failure(run: RunDir, exc: BaseException, step: int) -> RunError:
    """oom (with measured peak and hint) or crash."""
    if isinstance(exc, KeyboardInterrupt):
        return RunError("crash", "interrupted", "`sft-tui resume` continues from the last checkpoint")
    if _is_oom(exc):
        import torch

        peak = total = None
        if torch.cuda.is_available():
            peak = torch.cuda.max_memory_reserved() / GIB
            total = torch.cuda.get_device_properties(0).total_memory / GIB
        measured = f"; peak reserved {peak:.1f} of {total:.1f} GiB" if peak is not None else ""
        return RunError("oom", f"out of memory at step {step}{measured}: {str(exc).splitlines()[0][:200]}", oom_hint(run, total))
    return RunError("crash", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}", "the traceback is in train.log")
