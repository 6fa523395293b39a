"""Turn a job's exception into a JobError a person can act on: oom (with the estimator's help), disk, data, config, crash."""

from __future__ import annotations

from pathlib import Path

from sft_tui.core.data.formats import DataError
from sft_tui.core.errors import UserError
from sft_tui.core.runs.files import free_bytes, is_disk_full, os_error_line
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import JobError
from sft_tui.core.units import GIB


class RunDirRemoved(Exception):
    """The run's folder was deleted while the job ran: stop, write nothing, re-create nothing."""


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def oom_hint(run: RunDir, gpu_gib: float | None) -> str:
    """The nearest settings the estimator says fit, as a run-config change; generic advice without a GPU size."""
    from sft_tui.core.config.load import config_from_toml_text
    from sft_tui.core.estimate.fit import suggest
    from sft_tui.core.estimate.memory import settings_from_run_config
    from sft_tui.core.models.modelspec import resolve_model

    generic = "lower training.micro_batch_size (raise gradient_accumulation_steps to keep the batch) or training.max_seq_length, or use qlora"
    if not gpu_gib:
        return generic
    try:
        config = config_from_toml_text(run.read_config_text(), str(run.config_path))
        settings = settings_from_run_config(config)
        spec = resolve_model(config.model.name)
    except Exception:  # the hint must never hide the OOM itself
        return generic
    for suggestion in suggest(spec, settings, gpu_gib):
        if suggestion.fits and not suggestion.model:
            return f"the estimator says this fits in {gpu_gib:.0f} GiB: {suggestion.change} (about {suggestion.peak_gib:.1f} GiB); {generic}"
    return f"even the estimator's leanest settings do not fit {gpu_gib:.0f} GiB: choose a smaller model; {generic}"


def _folder_bytes(folder: Path | None) -> int:
    if folder is None or not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _size(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.2f} GiB" if n_bytes >= GIB / 4 else f"{n_bytes / 2**20:.1f} MiB"


def checkpoint_bytes(run: RunDir) -> int:
    """What one checkpoint of this run takes: measured from a saved one, else trainable weights + AdamW state (12 B each)."""
    measured = _folder_bytes(run.latest_checkpoint())
    if measured:
        return measured
    try:
        from sft_tui.core.config.load import config_from_toml_text
        from sft_tui.core.estimate.memory import lora_parameter_count, settings_from_run_config
        from sft_tui.core.models.modelspec import resolve_model

        config = config_from_toml_text(run.read_config_text(), str(run.config_path))
        spec = resolve_model(config.model.name)
        trainable = spec.count_parameters().total if config.method.name == "full" else lora_parameter_count(spec, settings_from_run_config(config))
        return trainable * 12
    except Exception:  # the hint must never hide the disk error itself
        return 0


# torch's zip writer reports a full disk as a failed stream, not as ENOSPC (seen writing optimizer.pt on a full tmpfs)
_TORCH_WRITE_FAILURES = ("unexpected pos", "iostream error", "PytorchStreamWriter failed", "file write failed")
_NEARLY_FULL = 64 * 2**20


def looks_like_full_disk(exc: BaseException, where: Path) -> bool:
    """ENOSPC anywhere in the chain, or torch's failed write with (nearly) no space left where the job writes."""
    if is_disk_full(exc):
        return True
    text = str(exc)
    if not any(marker in text for marker in _TORCH_WRITE_FAILURES):
        return False
    free = free_bytes(where)
    return free is not None and free < _NEARLY_FULL


def disk_error(run: RunDir, exc: BaseException, step: int, kind: str = "train", where: Path | None = None) -> JobError:
    """kind disk: what could not be written, how much is free, and (training) how much a checkpoint takes."""
    oserror = exc if isinstance(exc, OSError) else None
    target = getattr(oserror, "filename", None) or str(where or run.path)
    if oserror is not None and not is_disk_full(oserror):
        line = os_error_line(oserror, target)
        at = f"at step {step}: " if kind == "train" else ""
        return JobError("disk", f"{at}{line.what} ({target})" if line else f"{at}{exc}", line.fix if line else "")
    free = free_bytes(Path(target)) or 0
    if kind != "train":
        return JobError("disk", f"no space left on the device while the {kind} wrote under {target} ({_size(free)} free)",
                        f"free space on that disk (or choose another folder), then start the {kind} again")
    need = checkpoint_bytes(run)
    keep = f"each checkpoint takes about {_size(need)}, and training.save_total_limit of them are kept; " if need else ""
    return JobError("disk", f"no space left on the device at step {step} while writing under {target} ({_size(free)} free)",
                    f"free disk space ({keep}lower it to keep fewer), then `sft-tui resume {run.id}` continues from the last complete checkpoint")


def classify_failure(run: RunDir, exc: BaseException, step: int, kind: str = "train", where: Path | None = None) -> JobError:
    """data, config, disk, oom (with measured peak and hint) or crash. `where`: the folder a job writes (merge output)."""
    if isinstance(exc, DataError):
        where = f"{exc.where}: " if exc.where else ""
        generic = "fix that row (sft-tui data inspect FILE lists them all), then start again"
        # a row's own problem gets the generic hint; a problem with the whole data names its own fix
        fix = exc.fix if exc.fix and not exc.fix.startswith(("fix or remove that row", "fix the row")) else generic
        return JobError("data", f"{where}{exc.what}", fix)
    if isinstance(exc, UserError):
        where = f"{exc.where}: " if exc.where else ""
        return JobError("config", f"{where}{exc.what}", exc.fix or "fix the config and start again")
    if isinstance(exc, KeyboardInterrupt):
        return JobError("crash", "interrupted", "`sft-tui resume` continues from the last checkpoint")
    if looks_like_full_disk(exc, where or run.path) or (isinstance(exc, OSError) and os_error_line(exc) is not None):
        return disk_error(run, exc, step, kind, where)
    if _is_oom(exc):
        import torch

        peak = total = None
        if torch.cuda.is_available():
            peak = torch.cuda.max_memory_reserved() / GIB
            total = torch.cuda.get_device_properties(0).total_memory / GIB
        measured = f"; peak reserved {peak:.1f} of {total:.1f} GiB" if peak is not None else ""
        if kind != "train":
            return JobError("oom", f"out of memory in the {kind}{measured}: {str(exc).splitlines()[0][:200]}",
                            "free the GPU (another run?) or evaluate fewer examples at once (--n)")
        return JobError("oom", f"out of memory at step {step}{measured}: {str(exc).splitlines()[0][:200]}", oom_hint(run, total))
    return JobError("crash", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}", "the traceback is in the log")
