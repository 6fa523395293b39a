"""Calibration from the user's own GPU: measured peaks of finished runs and of `sft-tui calibrate`'s grid.

A measurement is a `CalibrationRecord`: the GPU, the model, the settings and the peak torch
reserved (plus, from `sft-tui calibrate`, the CUDA context NVML saw beside it). Finished
runs are read from their summary.json and config.toml on demand; `sft-tui calibrate` appends
its grid points to `$SFT_TUI_HOME/calibration/<gpu-model>.jsonl`.

`calibrate_estimator` compares the uncalibrated estimator with the measurements of one GPU
model and method, states its error there, and (from MIN_RECORDS measurements on) returns
a `Calibration` with the two terms we otherwise assume:

- CUDA context: measured, not fitted: the median of what NVML saw beyond torch's reserved
  memory on this GPU model (any method: the context does not depend on the recipe), from
  calibrate's grid points and from runs whose summary has `measured_context_gib` (the
  trainer reads it through NVML where NVML can attribute memory to the process). Without
  any, the assumed value stays and the line says so.
- allocator slack (reserved beyond allocated, as a share of the step's temporary memory):
  the value in [0, 50%] that minimises the sum of the absolute relative errors of the
  estimated reserved peak over the measurements (least absolute deviations on a 0.5% grid:
  one odd run cannot drag it the way it drags a least-squares fit, and with three points a
  median-like fit is all the data supports). It also absorbs what the count misses in the
  temporary memory on this box: it is the number that makes the estimate right here.

Pure: no torch. Reading runs touches files only.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sft_tui.core.errors import UserError
from sft_tui.core.estimate.memory import (
    DEFAULT_CALIBRATION,
    PRECISIONS,
    Calibration,
    MemoryEstimate,
    TrainSettings,
    estimate_memory,
)
from sft_tui.core.models.gpus import GpuInfo, gpu_from_nvml_name
from sft_tui.core.models.modelspec import ModelSpec
from sft_tui.core.runs.codec import SchemaError
from sft_tui.core.runs.schema import FORMAT_VERSION, Record
from sft_tui.core.units import GIB

MIN_RECORDS = 3  # measurements of one GPU model and method before the estimate is corrected
SLACK_GRID = tuple(i / 200 for i in range(101))  # 0 .. 50% in steps of 0.5%
CALIBRATION_DIR = "calibration"
NOT_TRAINING_PHASES = ("eval", "save")  # a peak there is not a training step's: the estimator does not model it


@dataclass(frozen=True)
class CalibrationRecord(Record):
    """One measured peak: where (GPU), what (model, settings), and what torch and NVML saw.

    source: run (a finished run's summary) | calibrate (a grid point of `sft-tui calibrate`).
    """

    source: str
    id: str  # the run id, or the grid point's label
    gpu_name: str  # as NVML / torch name the device
    model: str  # what resolve_model reads: a preset, a model folder or a cached repo id
    settings: TrainSettings
    measured_reserved_gib: float  # torch's peak reserved (max_memory_reserved)
    measured_allocated_gib: float | None = None  # torch's peak allocated
    cuda_context_gib: float | None = None  # what NVML saw for the process beyond torch's reserved memory (None: not measured)
    gpu_memory_gib: float | None = None
    measured_at: str = ""
    tokens_per_s: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)  # driver, torch, transformers, peft, bitsandbytes
    format: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# --- which GPU model a name stands for ------------------------------------------------------------

def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("nvidia", "").replace("geforce", "").replace("tesla", ""))


def gpu_model_key(name: str, memory_gib: float | None = None) -> str:
    """The GPU model a device name stands for: the GPU table's key ('rtx4090', 'a100-80gb'), else the squashed name.

    Memory picks the variant (A100 40 or 80 GB); without it, the size in the name ('A100-SXM4-80GB').
    """
    if memory_gib is None:
        sized = re.search(r"(\d+)\s*gb", name.lower())
        memory_gib = float(sized.group(1)) if sized else 0.0
    info = gpu_from_nvml_name(name, memory_gib)
    return info.key if info else _squash(name)


def target_gpu_key(name: str, info: GpuInfo | None) -> str:
    """The GPU model of an estimate's target: the table's key when the GPU is known, else its squashed NVML name."""
    return info.key if info else gpu_model_key(name)


def records_file(home: Path, gpu_name: str, memory_gib: float | None = None) -> Path:
    """Where `sft-tui calibrate` keeps one GPU model's grid points."""
    return home / CALIBRATION_DIR / f"{gpu_model_key(gpu_name, memory_gib)}.jsonl"


def append_record(home: Path, record: CalibrationRecord) -> Path:
    """Append one grid point to its GPU model's file (created with its folder); returns the file."""
    path = records_file(home, record.gpu_name, record.gpu_memory_gib)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record.to_json()) + "\n")
        handle.flush()
    return path


def read_grid_records(home: Path) -> list[CalibrationRecord]:
    """Every grid point under home/calibration/, the newest per (GPU, point) when a point was measured again.

    A torn or unreadable line is skipped: a calibration file must never stop an estimate.
    """
    newest: dict[tuple[str, str], CalibrationRecord] = {}
    folder = home / CALIBRATION_DIR
    try:
        files = sorted(folder.glob("*.jsonl"))
    except OSError:
        return []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(lines, 1):
            try:
                record = CalibrationRecord.from_json(json.loads(line), f"{path.name}:{number}")
            except (ValueError, SchemaError):
                continue
            newest[(gpu_model_key(record.gpu_name, record.gpu_memory_gib), record.id)] = record  # later lines win
    return list(newest.values())


def record_from_run(run, gpu_key: str | None = None) -> tuple[CalibrationRecord | None, str]:
    """A finished run as a measurement, or (None, why not); (None, '') when it measured nothing (CPU, unfinished)
    or ran on another GPU model than `gpu_key`.

    `run` is a core.runs.rundir.RunDir. Settings come from its config.toml as the run used
    it, with the precision the trainer really ran in.
    """
    from sft_tui.core.config.load import config_from_toml_text
    from sft_tui.core.estimate.memory import settings_from_run_config

    try:
        summary = run.read_summary()
    except (OSError, SchemaError, ValueError):
        return None, ""
    if summary is None or summary.stale or summary.peak_gpu_reserved_gib is None or not summary.gpu_name:
        return None, ""
    if gpu_key is not None and gpu_model_key(summary.gpu_name) != gpu_key:
        return None, ""
    if summary.steps < 2:
        return None, f"run {run.id}: ended before step 2 (no optimizer state yet)"
    if summary.measured_peak_phase in NOT_TRAINING_PHASES:
        return None, f"run {run.id}: its peak was in {summary.measured_peak_phase}, not a training step"
    status = run.read_status() if run.status_path.exists() else None
    if summary.processes > 1:  # rank 0's peak under DDP/FSDP terms: the fit is of single-GPU runs (issue 18 left it so)
        return None, f"run {run.id}: trained in {summary.processes} processes ({summary.strategy}); calibration reads one-GPU runs"
    if status is not None and len(status.gpus) > 1:
        return None, f"run {run.id}: ran on {len(status.gpus)} GPUs"
    try:
        config = config_from_toml_text(run.read_config_text(), str(run.config_path))
        settings = settings_from_run_config(config)
    except (OSError, UnicodeDecodeError, UserError, SchemaError, ValueError) as exc:
        return None, f"run {run.id}: config.toml unreadable ({str(exc)[:80]})"
    if summary.precision in PRECISIONS:
        settings = replace(settings, precision=summary.precision)
    record = CalibrationRecord("run", run.id, summary.gpu_name, summary.base_model or config.model.name, settings,
                               summary.peak_gpu_reserved_gib, summary.measured_peak_allocated_gib,
                               cuda_context_gib=summary.measured_context_gib,  # the trainer measures it through NVML where it can
                               measured_at=status.updated_at if status else "", tokens_per_s=summary.tokens_per_s)
    return record, ""


def home_records(home: Path, gpu_key: str | None = None) -> tuple[list[CalibrationRecord], list[str]]:
    """(measurements, why some runs were left out) in a runs home: finished runs and grid points; of one GPU model if given."""
    from sft_tui.core.runs.store import RunStore

    records: list[CalibrationRecord] = []
    skipped: list[str] = []
    for run in RunStore(home).run_dirs():
        record, why = record_from_run(run, gpu_key)
        if record is not None:
            records.append(record)
        elif why:
            skipped.append(why)
    records += [r for r in read_grid_records(home) if gpu_key is None or gpu_model_key(r.gpu_name, r.gpu_memory_gib) == gpu_key]
    return records, skipped


# --- the estimator against the measurements --------------------------------------------------------

@dataclass(frozen=True)
class RecordCheck:
    """One measurement next to the estimate: the uncalibrated one, and the corrected one when there is a correction."""

    record: CalibrationRecord
    estimate_gib: float  # uncalibrated
    measured_gib: float  # reserved + CUDA context (measured, else the one assumed)
    corrected_gib: float | None = None

    @property
    def error(self) -> float:
        """Signed relative error of the uncalibrated estimate: +0.07 = 7% above the measured peak."""
        return (self.estimate_gib - self.measured_gib) / self.measured_gib

    @property
    def corrected_error(self) -> float | None:
        """Signed relative error of the corrected estimate (None when not corrected)."""
        return None if self.corrected_gib is None else (self.corrected_gib - self.measured_gib) / self.measured_gib


@dataclass(frozen=True)
class CalibrationResult:
    """What the measurements of one GPU model and method say about the estimator, and the Calibration to use."""

    gpu: str  # the GPU as the user knows it (NVML name or the table's)
    method: str
    checks: tuple[RecordCheck, ...]
    calibration: Calibration
    corrected: bool
    context_measured: int  # measurements (grid points or runs) of this GPU model that measured the CUDA context
    skipped: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """Measurements used."""
        return len(self.checks)

    def error_range(self, corrected: bool = False) -> tuple[float, float] | None:
        """(lowest, highest) signed error of the estimate (corrected or not) on the measurements; None without any."""
        errors = [c.corrected_error if corrected else c.error for c in self.checks]
        errors = [e for e in errors if e is not None]
        return (min(errors), max(errors)) if errors else None

    def _what(self) -> str:
        runs = all(c.record.source == "run" for c in self.checks)
        noun = "run" if runs else "measurement"
        return f"{self.count} {self.method} {noun}{'s' if self.count != 1 else ''}"

    def lines(self, here: bool = True) -> list[str]:
        """What the report says, one or two lines of at most ~100 characters (here: the GPU is this box's, detected).

        'calibration: on this NVIDIA GeForce RTX 4090, 6 lora runs: estimate within -3% .. +7%',
        then, when corrected, what was corrected and the error after it.
        """
        where = f"on {'this ' if here else ''}{self.gpu}"
        cal = self.calibration
        if not self.checks:
            return [f"calibration: no {self.method} runs measured {where} in this SFT_TUI_HOME",
                    (f"  CUDA context {cal.cuda_context_gib:g} GiB and allocator slack {cal.allocator_slack:.0%} assumed; "
                    f"`sft-tui calibrate` on {'this' if here else 'that'} GPU measures them in minutes")]
        first = f"calibration: {where}, {self._what()}: estimate {_within(self.error_range())}"
        if not self.corrected:
            return [first + f"; not corrected ({MIN_RECORDS} are needed)"]
        context = f"CUDA context {cal.cuda_context_gib:.2f} GiB ({'measured' if self.context_measured else 'assumed'})"
        return [first, (f"  corrected: allocator slack {100 * cal.allocator_slack:g}% (fitted), {context}; "
                       f"now {_within(self.error_range(corrected=True))}")]

    def line(self, here: bool = True) -> str:
        """lines() as one line (for JSON)."""
        return "; ".join(part.strip() for part in self.lines(here))

    def to_json(self) -> dict[str, Any]:
        """The `calibration` object of `sft-tui estimate --json`."""
        low_high = self.error_range()
        fixed = self.error_range(corrected=True)
        cal = self.calibration
        return {
            "gpu": self.gpu, "method": self.method, "measurements": self.count, "corrected": self.corrected,
            "error_range": [round(low_high[0], 4), round(low_high[1], 4)] if low_high else None,
            "corrected_error_range": [round(fixed[0], 4), round(fixed[1], 4)] if fixed else None,
            "cuda_context_gib": round(cal.cuda_context_gib, 3), "allocator_slack": round(cal.allocator_slack, 4),
            "context_measured": self.context_measured, "calibrated_on": cal.calibrated_on,
            "records": [{"source": c.record.source, "id": c.record.id, "model": c.record.model,
                         "measured_gib": round(c.measured_gib, 3), "estimate_gib": round(c.estimate_gib, 3),
                         "corrected_gib": round(c.corrected_gib, 3) if c.corrected_gib is not None else None,
                         "error": round(c.error, 4)} for c in self.checks],
            "skipped": list(self.skipped), "line": self.line(),
        }


def _within(span: tuple[float, float] | None) -> str:
    if span is None:
        return "-"
    low, high = (x if round(100 * x) else 0.0 for x in span)  # a tiny negative error prints as +0%, not -0%
    if round(100 * low) == round(100 * high):
        return f"off by {100 * low:+.0f}%"
    return f"within {100 * low:+.0f}% .. {100 * high:+.0f}%"


@dataclass(frozen=True)
class _Shape:
    """A measurement's estimate split for fitting: per phase, the tensors' bytes and the temporary (dynamic) bytes."""

    check: RecordCheck
    spec: ModelSpec
    phases: tuple[tuple[float, float], ...]

    def reserved_gib(self, slack: float) -> float:
        """The estimated peak reserved by torch (no CUDA context) at this allocator slack."""
        return max(base + slack * dynamic for base, dynamic in self.phases) / GIB


def _phases(spec: ModelSpec, settings: TrainSettings, estimate: Callable[..., MemoryEstimate]) -> tuple[tuple[float, float], ...]:
    """Per phase (tensors, temporary bytes): two estimates, with slack 0 and with slack 1, and no CUDA context."""
    bare = dict(estimate(spec, settings, Calibration(cuda_context_gib=0.0, allocator_slack=0.0)).phase_bytes)
    full = dict(estimate(spec, settings, Calibration(cuda_context_gib=0.0, allocator_slack=1.0)).phase_bytes)
    return tuple((bare[p], full[p] - bare[p]) for p in bare)


def fit_slack(shapes: Iterable[_Shape], default: float = DEFAULT_CALIBRATION.allocator_slack) -> float:
    """The allocator slack in [0, 50%] with the least sum of absolute relative errors of the reserved peak (ties: nearest the default)."""
    shapes = list(shapes)

    def cost(slack: float) -> float:
        return sum(abs(s.reserved_gib(slack) - s.check.record.measured_reserved_gib) / s.check.record.measured_reserved_gib for s in shapes)

    return min(SLACK_GRID, key=lambda slack: (round(cost(slack), 9), abs(slack - default)))


def calibrate_estimator(records: Iterable[CalibrationRecord], gpu_key: str, gpu_label: str, method: str,
                        resolve: Callable[[str], ModelSpec] | None = None,
                        estimate: Callable[..., MemoryEstimate] = estimate_memory,
                        base: Calibration = DEFAULT_CALIBRATION, skipped: Iterable[str] = ()) -> CalibrationResult:
    """The estimator against the measurements of GPU model `gpu_key` and `method`, and the Calibration to use there.

    Fewer than MIN_RECORDS measurements: the error range only, `base` unchanged. From
    MIN_RECORDS on: the CUDA context measured on this GPU model (median; `base`'s when none
    measured it) and the allocator slack fitted (fit_slack), with the corrected error on the
    same measurements. `resolve` turns a record's model into a ModelSpec (default:
    resolve_model); a record whose model or settings no longer resolve is skipped with why.
    """
    if resolve is None:
        from sft_tui.core.models.modelspec import resolve_model as resolve
    gpu_records = [r for r in records if gpu_model_key(r.gpu_name, r.gpu_memory_gib) == gpu_key]
    contexts = [r.cuda_context_gib for r in gpu_records if r.cuda_context_gib is not None and r.cuda_context_gib >= 0]
    context = statistics.median(contexts) if contexts else base.cuda_context_gib
    why = list(skipped)
    shapes: list[_Shape] = []
    for record in gpu_records:
        if record.settings.method != method:
            continue
        try:
            spec = resolve(record.model)
            uncalibrated = estimate(spec, record.settings, base).peak_gib
            phases = _phases(spec, record.settings, estimate)
        except (UserError, SchemaError, ValueError, OSError) as exc:
            why.append(f"{record.source} {record.id}: {str(exc)[:100]}")
            continue
        measured = record.measured_reserved_gib + (record.cuda_context_gib if record.cuda_context_gib is not None else context)
        shapes.append(_Shape(RecordCheck(record, uncalibrated, measured), spec, phases))
    if len(shapes) < MIN_RECORDS:
        return CalibrationResult(gpu_label, method, tuple(s.check for s in shapes), base, False, len(contexts), tuple(why))
    slack = fit_slack(shapes, base.allocator_slack)
    sources = {"run": 0, "calibrate": 0}
    for s in shapes:
        sources[s.check.record.source] = sources.get(s.check.record.source, 0) + 1
    origin = ", ".join(f"{n} {'runs' if k == 'run' else 'calibrate points'}" for k, n in sources.items() if n)
    calibration = replace(base, cuda_context_gib=round(context, 3), allocator_slack=slack,
                          calibrated_on=f"{gpu_label}: {len(shapes)} {method} measurements in this SFT_TUI_HOME ({origin})")
    checks = tuple(replace(s.check, corrected_gib=estimate(s.spec, s.check.record.settings, calibration).peak_gib) for s in shapes)
    return CalibrationResult(gpu_label, method, checks, calibration, True, len(contexts), tuple(why))


def calibration_for(home: Path, gpu_name: str, info: GpuInfo | None, method: str) -> CalibrationResult:
    """The calibration for an estimate on this GPU model and method, from everything measured in `home` (one call for callers)."""
    key = target_gpu_key(gpu_name, info)
    records, skipped = home_records(home, key)
    return calibrate_estimator(records, key, gpu_name, method, skipped=skipped)
