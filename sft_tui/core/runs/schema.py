"""The shapes of the run directory's files: frozen dataclasses with to_json / from_json and a format version.

One place defines them; the trainer writes through them and every reader (the monitor,
`--follow`, compare, the model card, `runs`) reads through them. README.md "Where runs
live" shows these shapes, and tests/unit/test_run_contract.py keeps the two in step.

Format history: 0 = files written before the format had a version (no `format` or `kind`
keys; readers infer the row kind from its keys); 1 = this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar

from sft_tui.core.runs.codec import SchemaError, decode, encode

FORMAT_VERSION = 1
STATES = ("queued", "running", "completed", "failed", "stopped")  # what a job writes
ACTIVE_STATES = ("queued", "running")
CRASHED = "crashed"  # derived by readers: an active state whose process is gone
UNKNOWN = "unknown"  # derived by readers: the status file is missing or unreadable
JOB_KINDS = ("train", "eval", "merge", "chat")

R = TypeVar("R", bound="Record")


def now_iso() -> str:
    """The current UTC time as ISO-8601 with offset, as the run files store it."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_iso(text: str) -> datetime:
    """Parse a stored timestamp (naive values are taken as UTC); ValueError when it is not one."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _check_time(value: str, where: str, name: str) -> None:
    try:
        parse_iso(value)
    except ValueError:
        raise SchemaError(f"{where}: field {name!r}", f"not an ISO-8601 time: {value!r}") from None


class Record:
    """to_json / from_json for the frozen dataclasses below (see codec.py for the reading rules)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk."""
        return encode(self)

    @classmethod
    def from_json(cls: type[R], data: Any, where: str = "") -> R:
        """Read one object; SchemaError names `where` and the field that is wrong."""
        return decode(cls, data, where or cls.__name__)


@dataclass(frozen=True)
class JobError(Record):
    """Why a job failed. kind: oom | data | config | disk | crash. hint: what to do about it."""

    kind: str
    message: str
    hint: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class JobStatus(Record):
    """status.json of a job: the run's training (kind train, at the run's top level) or an eval/merge/chat job.

    Written atomically by the job (and a heartbeat every <= 5 s while it runs) and by its
    supervisor when the job dies without a word.
    """

    state: str  # queued | running | completed | failed | stopped
    pid: int
    started_at: str
    updated_at: str  # the heartbeat
    kind: str = "train"
    owner: str = ""  # user who started it
    host: str = ""
    step: int = 0  # train: optimizer steps; eval: examples scored
    max_steps: int = 0
    eta_s: float | None = None
    phase: str = ""  # what it is doing now, in words
    gpus: tuple[int, ...] = ()
    error: JobError | None = None
    result: str = ""  # one line a person reads when it has ended
    output: str = ""  # the file or folder it produced
    endpoint: str = ""  # chat: the socket the model answers on
    format: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def check(self, where: str) -> None:
        """Values the types alone do not rule out."""
        if self.state not in STATES:
            raise SchemaError(f"{where}: field 'state'", f"unknown state {self.state!r} (one of {', '.join(STATES)})")
        _check_time(self.started_at, where, "started_at")
        _check_time(self.updated_at, where, "updated_at")


@dataclass(frozen=True)
class TrainRow(Record):
    """metrics.jsonl, kind train: one logging step. tokens and wall_s count from the run's start, across resumes."""

    step: int
    loss: float | None
    time: float = 0.0  # unix seconds
    epoch: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    tokens: float | None = None  # cumulative non-padding tokens
    wall_s: float | None = None  # cumulative seconds of training
    gpu_mem_gib: float | None = None  # peak allocated since the previous row
    gpu_reserved_gib: float | None = None  # peak reserved since the previous row
    objective_metrics: dict[str, float] = field(default_factory=dict)  # dpo/kto/orpo: TRL's rewards/chosen, rewards/margins, kl, ...
    kind: str = "train"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    KIND: ClassVar[str] = "train"


@dataclass(frozen=True)
class EvalRow(Record):
    """metrics.jsonl, kind eval: the loss on the eval split at a step."""

    step: int
    eval_loss: float | None
    time: float = 0.0
    epoch: float | None = None
    objective_metrics: dict[str, float] = field(default_factory=dict)  # dpo/kto/orpo: the same metrics on the eval split
    kind: str = "eval"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    KIND: ClassVar[str] = "eval"


@dataclass(frozen=True)
class EventRow(Record):
    """metrics.jsonl, kind event: started, resumed, stopped, completed, failed, or a job's start and end."""

    step: int
    event: str
    time: float = 0.0
    message: str = ""
    job: str = ""  # the job folder's name (eval-1) for job events
    kind: str = "event"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    KIND: ClassVar[str] = "event"


@dataclass(frozen=True)
class SystemRow(Record):
    """metrics.jsonl, kind system: the GPUs the run uses and its host process, sampled by the job's supervisor.

    Written every few seconds while the trainer lives, so a monitor opened later (or after
    the run ended) shows the whole history of memory, utilisation, power and temperature.
    GPU fields are None on a machine without an NVIDIA GPU; step is the run's step when sampled.
    """

    step: int
    time: float
    gpu_count: int = 0  # GPUs the run uses (0: a CPU run)
    gpu_mem_used_gib: float | None = None  # memory NVML attributes to the trainer, else the devices' used memory
    gpu_mem_total_gib: float | None = None
    gpu_util_pct: float | None = None  # mean over the run's GPUs
    gpu_temp_c: float | None = None  # hottest of the run's GPUs
    gpu_power_w: float | None = None  # sum over the run's GPUs
    gpu_power_limit_w: float | None = None
    host_cpu_pct: float | None = None
    process_rss_gib: float | None = None  # the trainer's resident memory
    process_cpu_pct: float | None = None  # 100 = one core
    kind: str = "system"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    KIND: ClassVar[str] = "system"


MetricsRow = TrainRow | EvalRow | EventRow | SystemRow
ROW_TYPES: dict[str, type[Record]] = {"train": TrainRow, "eval": EvalRow, "event": EventRow, "system": SystemRow}


def row_from_json(data: Any, where: str) -> MetricsRow:
    """One metrics.jsonl row of any kind; format-0 rows (no kind key) are told apart by their keys."""
    if not isinstance(data, dict):
        raise SchemaError(where, f"expected a JSON object, got {type(data).__name__}")
    kind = data.get("kind") or ("eval" if "eval_loss" in data else "event" if "event" in data else "train")
    row_type = ROW_TYPES.get(kind) if isinstance(kind, str) else None
    if row_type is None:
        raise SchemaError(f"{where}: field 'kind'", f"unknown row kind {kind!r}")
    return row_type.from_json(data, where)  # type: ignore[return-value]


@dataclass(frozen=True)
class TrainSummary(Record):
    """summary.json, written when training ends (completed or stopped). stale: a resume has started since."""

    state: str
    steps: int
    max_steps: int
    epochs: float | None = None
    first_loss: float | None = None
    final_loss: float | None = None
    best_loss: float | None = None
    final_eval_loss: float | None = None
    best_eval_loss: float | None = None
    train_rows: int = 0
    eval_rows: int = 0
    skipped_rows: int = 0
    truncated_rows: int = 0
    tokens: float | None = None  # across resumes
    wall_time_s: float | None = None  # across resumes
    train_runtime_s: float | None = None  # transformers' own clock for the last session's train() call
    tokens_per_s: float | None = None
    peak_gpu_reserved_gib: float | None = None  # measured peak reserved by torch's allocator (CUDA only)
    measured_peak_allocated_gib: float | None = None  # measured peak allocated by tensors (CUDA only)
    measured_peak_phase: str = ""  # where the peak happened: forward, backward, optimizer, eval, save (CUDA only)
    measured_context_gib: float | None = None  # held outside torch's allocator (CUDA context, workspaces) as NVML sees it; None when NVML cannot say
    gpu_name: str = ""  # the GPU it ran on (calibration groups runs by GPU model)
    estimated_peak_gib: float | None = None  # what the estimator said before the run
    device: str = ""
    precision: str = ""
    output: str = ""
    base_model: str = ""
    resumes: int = 0
    processes: int = 1  # trainer processes over all machines (one per GPU; CPU processes over gloo)
    strategy: str = ""  # ddp | fsdp when processes > 1
    stale: bool = False
    format: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class CheckpointProgress(Record):
    """checkpoints/checkpoint-N/sft_tui_progress.json: what transformers' trainer state does not keep."""

    wall_s: float  # training seconds up to this checkpoint, across resumes
    format: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class JobRequest(Record):
    """request.json of an eval/merge/chat job: what was asked, by whom. Unused fields keep their defaults."""

    kind: str
    created_at: str
    owner: str = ""
    host: str = ""
    data: str = ""  # eval: a held-out file instead of the run's eval split
    n: int | None = None  # eval: number of examples
    output: str = ""  # merge: the folder to write
    dtype: str = "bf16"  # merge
    force: bool = False  # merge: write into a non-empty folder
    format: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def check(self, where: str) -> None:
        """The kind must be one this version can run."""
        if self.kind not in JOB_KINDS or self.kind == "train":
            raise SchemaError(f"{where}: field 'kind'", f"unknown job kind {self.kind!r}")


@dataclass(frozen=True)
class Placement(Record):
    """placement.json of a run: where it runs (or waits to), with the estimate the queue counts for it.

    Written when the run is created; a queued run's waiting fields change while it waits
    (priority and order by `sft-tui queue move`, passed and waiting by the admitting process),
    admitted_at and gpus when it is given a GPU. core/runs/placement.py has the rule.
    """

    submitted_at: str
    device: str = "cuda"  # cuda | cpu
    estimate_gib: float | None = None  # estimated peak per GPU
    queued: bool = False  # started with --queue (waits for room) rather than placed at once
    priority: int = 0
    order: float = 0.0  # submission time (unix seconds) unless moved
    allowed_gpus: tuple[int, ...] = ()  # --gpus: the GPUs it may get (empty: any)
    max_parallel: int = 1  # cpu: starts only while fewer runs than this are on the CPU
    gpu_count: int = 1  # GPUs it needs at once ([distributed] gpus), each with room for estimate_gib; older files: 1
    passed: int = 0  # later runs that started ahead of it
    waiting: str = ""  # why it waits, as last planned
    waiting_gpu: int | None = None  # the GPU it is closest to fitting, as last planned (None: the CPU, or not planned yet)
    admitted_at: str = ""
    gpus: tuple[int, ...] = ()  # what it got (NVML indices; the trainer sees them as CUDA_VISIBLE_DEVICES)
    format: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def check(self, where: str) -> None:
        """Values the types alone do not rule out."""
        if self.device not in ("cuda", "cpu"):
            raise SchemaError(f"{where}: field 'device'", f"unknown device {self.device!r} (cuda or cpu)")
        _check_time(self.submitted_at, where, "submitted_at")
        if self.gpu_count < 1:
            raise SchemaError(f"{where}: field 'gpu_count'", f"expected 1 or more GPUs, got {self.gpu_count}")


@dataclass(frozen=True)
class JobOverview(Record):
    """One eval/merge/chat job as `sft-tui runs --json` and the monitor show it."""

    id: str  # eval-1, merge-2, ...
    kind: str
    state: str  # a written state, crashed or unknown
    phase: str = ""
    step: int = 0
    max_steps: int = 0
    result: str = ""
    output: str = ""
    error: JobError | None = None
    owner: str = ""
    started_at: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class RunOverview(Record):
    """One line of `sft-tui runs`: what a person wants to see about a run at a glance.

    state is `unknown` (with `reason`) when the run's files cannot be read; the other runs
    are listed as usual.
    """

    id: str
    state: str
    model: str
    method: str
    step: int
    max_steps: int
    last_loss: float | None
    started_at: str
    updated_at: str
    heartbeat_age_s: float | None
    error: JobError | None
    path: str
    eta_s: float | None = None
    tokens_per_s: float | None = None  # from the same newest row as last_loss
    owner: str = ""
    host: str = ""
    reason: str = ""  # why the state is unknown
    jobs: tuple[JobOverview, ...] = ()
    gpus: tuple[int, ...] = ()  # the GPUs it got (empty: CPU, or not yet placed)
    queue_position: int | None = None  # 1 = next to start; None when not waiting in the queue
    priority: int = 0
    waiting: str = ""  # why a queued run waits
    estimate_gib: float | None = None
    device: str = ""  # cuda | cpu from placement.json ("" for runs from before it)
