"""RunDir and JobDir: every file and folder name of a run, and typed reads and writes of them.

Nothing outside this package builds a run path or opens a run file by name
(tests/unit/test_run_contract.py greps for it): code asks a RunDir for `status_path`,
`read_summary()`, `job("eval-1")`.

    <home>/runs/<run-id>/
        config.toml  status.json  placement.json  metrics.jsonl  train.log  summary.json  README.md
        decision.md  checkpoints/  adapter/ (or model/)  eval/  merged/  .lock
        jobs/<kind>-<n>/  request.json  status.json  job.log  .lock
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sft_tui.core.config.tomlfile import TOMLDecodeError, tomllib
from sft_tui.core.errors import UserError
from sft_tui.core.runs.codec import SchemaError
from sft_tui.core.runs.files import write_json_atomic, write_text_atomic
from sft_tui.core.runs.lock import FolderLock
from sft_tui.core.runs.metrics import MetricsChunk, append_row, cut_after_step, last_train_row, read_new_rows
from sft_tui.core.runs.schema import STATES, CheckpointProgress, JobRequest, JobStatus, MetricsRow, Placement, TrainRow, TrainSummary

DECISION_NAME = "decision.md"  # the wizard writes it beside run.toml; a run copies it
MODEL_CARD_NAME = "README.md"  # in a run, and beside a merged model


def read_json_file(path: Path) -> Any:
    """A JSON file's content; None when missing; SchemaError (naming the file) when it is not UTF-8 JSON."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SchemaError(path.name, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    except ValueError as exc:
        raise SchemaError(path.name, f"not valid JSON ({exc})") from None


class _StatusFile:
    """status.json reads and writes, shared by runs (the train job) and jobs."""

    path: Path
    status_path: Path

    def write_status(self, status: JobStatus) -> None:
        """Replace status.json atomically."""
        if status.state not in STATES:
            raise ValueError(f"unknown job state {status.state!r}")
        write_json_atomic(self.status_path, status.to_json())

    def read_status(self) -> JobStatus | None:
        """The status; None when there is none yet; SchemaError when the file is unreadable."""
        data = read_json_file(self.status_path)
        return None if data is None else JobStatus.from_json(data, self.status_path.name)

    def identity(self) -> tuple[int, int] | None:
        """(device, inode) of the folder, or None when it is gone: a folder removed and made again is not the same one."""
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_dev, st.st_ino

    def status_or_reason(self) -> tuple[JobStatus | None, str]:
        """(status, '') or (None, why it cannot be read): for readers that must go on."""
        try:
            status = self.read_status()
        except SchemaError as exc:
            return None, str(exc)
        except OSError as exc:
            return None, f"{self.status_path.name}: {exc.strerror or exc}"
        return status, "" if status is not None else f"{self.status_path.name} is missing"

    def lock(self) -> FolderLock:
        """The ownership lock of this folder (use as a context manager)."""
        label = f"run {self.path.name}" if isinstance(self, RunDir) else f"job {self.path.name}"
        return FolderLock(self.path / ".lock", label)


@dataclass(frozen=True)
class JobDir(_StatusFile):
    """jobs/<kind>-<n>/ of a run: one eval, merge or chat job."""

    path: Path
    name: str = field(init=False)
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.path.name)
        object.__setattr__(self, "kind", self.path.name.rsplit("-", 1)[0])

    status_path = property(lambda self: self.path / "status.json")
    request_path = property(lambda self: self.path / "request.json")
    log_path = property(lambda self: self.path / "job.log")
    stop_request_path = property(lambda self: self.path / ".stop_requested")
    reserve_path = property(lambda self: self.path / ".disk_reserve")

    @property
    def number(self) -> int:
        """The n of <kind>-<n>."""
        suffix = self.name.rsplit("-", 1)[-1]
        return int(suffix) if suffix.isdigit() else 0

    @property
    def run(self) -> "RunDir":
        """The run this job belongs to."""
        return RunDir(self.path.parent.parent)

    def write_request(self, request: JobRequest) -> None:
        """request.json, written once by whoever starts the job."""
        write_json_atomic(self.request_path, request.to_json())

    def read_request(self) -> JobRequest:
        """What was asked; SchemaError when missing or unreadable."""
        data = read_json_file(self.request_path)
        if data is None:
            raise SchemaError(self.request_path.name, "missing")
        return JobRequest.from_json(data, self.request_path.name)


@dataclass(frozen=True)
class RunDir(_StatusFile):
    """One run directory: its paths, and typed reads and writes of its files."""

    path: Path
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", self.path.name)

    config_path = property(lambda self: self.path / "config.toml")
    status_path = property(lambda self: self.path / "status.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    log_path = property(lambda self: self.path / "train.log")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    adapter_dir = property(lambda self: self.path / "adapter")
    model_dir = property(lambda self: self.path / "model")
    eval_dir = property(lambda self: self.path / "eval")
    eval_report_path = property(lambda self: self.path / "eval" / "report.json")
    eval_markdown_path = property(lambda self: self.path / "eval" / "report.md")
    model_card_path = property(lambda self: self.path / MODEL_CARD_NAME)
    decision_path = property(lambda self: self.path / DECISION_NAME)
    merged_dir = property(lambda self: self.path / "merged")
    jobs_dir = property(lambda self: self.path / "jobs")
    stop_request_path = property(lambda self: self.path / ".stop_requested")  # a second request escalates to SIGKILL
    reserve_path = property(lambda self: self.path / ".disk_reserve")
    placement_path = property(lambda self: self.path / "placement.json")
    accelerate_config_path = property(lambda self: self.path / "accelerate.json")  # a run of several processes: what accelerate launch read
    slurm_script_path = property(lambda self: self.path / "slurm.sbatch")  # `sft-tui launch-command RUN --slurm`

    def machine_log_path(self, machine_rank: int) -> Path:
        """Where a machine of a multi-machine run logs: machine 0 (rank 0) in train.log, the others beside it."""
        return self.log_path if machine_rank == 0 else self.path / f"machine-{machine_rank}.log"

    def write_accelerate_config(self, text: str) -> None:
        """Write accelerate.json (the generated accelerate config of a multi-process run) atomically."""
        write_text_atomic(self.accelerate_config_path, text)

    # placement (the queue)
    def write_placement(self, placement: Placement) -> None:
        """Replace placement.json atomically (under the home's queue lock: core/runs/queue.py)."""
        write_json_atomic(self.placement_path, placement.to_json())

    def read_placement(self) -> Placement | None:
        """placement.json, or None for runs from before the queue (or unreadable: such a run is not queued)."""
        try:
            data = read_json_file(self.placement_path)
            return None if data is None else Placement.from_json(data, self.placement_path.name)
        except (SchemaError, OSError):
            return None

    # metrics
    def append_metric(self, row: MetricsRow) -> None:
        """Append one row to metrics.jsonl (flushed at once)."""
        append_row(self.metrics_path, row)

    def read_new_rows(self, offset: int = 0) -> MetricsChunk:
        """Rows appended since `offset`."""
        return read_new_rows(self.metrics_path, offset)

    def last_train_row(self) -> TrainRow | None:
        """The newest train row with a loss."""
        return last_train_row(self.metrics_path)

    def cut_metrics_after(self, step: int) -> tuple[int, list[MetricsRow]]:
        """Drop rows past `step` in place (a resume repeats those steps); (rows dropped, rows kept)."""
        return cut_after_step(self.metrics_path, step)

    # summary, reports
    def write_summary(self, summary: TrainSummary) -> None:
        """Replace summary.json atomically."""
        write_json_atomic(self.summary_path, summary.to_json())

    def read_summary(self) -> TrainSummary | None:
        """summary.json, or None before training has ended once; SchemaError when unreadable."""
        data = read_json_file(self.summary_path)
        return None if data is None else TrainSummary.from_json(data, self.summary_path.name)

    def mark_summary_stale(self) -> None:
        """A resume has started: the old summary no longer describes the run (readers say so)."""
        try:
            summary = self.read_summary()
        except SchemaError:
            return
        if summary is not None and not summary.stale:
            self.write_summary(replace(summary, stale=True))

    def read_eval_report(self) -> dict[str, Any] | None:
        """eval/report.json as the eval job wrote it, or None before any evaluation (or when unreadable)."""
        try:
            data = read_json_file(self.eval_report_path)
        except (SchemaError, OSError):
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(side), dict) for side in ("base", "tuned")):
            return None  # not a report this version wrote: readers treat the run as not evaluated
        return data

    def write_eval_report(self, report: dict[str, Any], markdown: str) -> None:
        """eval/report.json and eval/report.md."""
        self.eval_dir.mkdir(exist_ok=True)
        write_json_atomic(self.eval_report_path, report)
        write_text_atomic(self.eval_markdown_path, markdown)

    def write_model_card(self, text: str, to: Path | None = None) -> Path:
        """README.md of the run (or `to`, beside a merged model)."""
        target = to or self.model_card_path
        write_text_atomic(target, text)
        return target

    def read_decision(self) -> str:
        """decision.md (the wizard's record), or '' when the run has none."""
        try:
            return self.decision_path.read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            return ""

    # config
    def read_config_text(self) -> str:
        """config.toml as written when the run was created."""
        return self.config_path.read_text(encoding="utf-8")

    def config_identity(self) -> tuple[str, str]:
        """(model, method) from config.toml, read without validation; '?' when unreadable. method is lora+dpo for a DPO run."""
        try:
            data = tomllib.loads(self.read_config_text())
        except (OSError, TOMLDecodeError, UnicodeDecodeError):
            return "?", "?"
        model = data.get("model", {}).get("name", "?") if isinstance(data.get("model"), dict) else "?"
        section = data.get("method") if isinstance(data.get("method"), dict) else {}
        method = str(section.get("name", "?")) if section else "?"
        objective = section.get("objective", "sft")
        if objective and objective != "sft":  # a preference run says so wherever runs are listed: lora+dpo
            method = f"{method}+{objective}"
        return str(model), method

    # outputs and checkpoints
    def trained_output(self) -> Path | None:
        """The adapter (LoRA/QLoRA) or model (full) folder a finished run saved, or None."""
        for folder in (self.adapter_dir, self.model_dir):
            if (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
                return folder
        return None

    def require_trained_output(self) -> Path:
        """trained_output(), or a UserError naming the run's state and why it has no model."""
        output = self.trained_output()
        if output is not None:
            return output
        from sft_tui.core.runs.liveness import effective_state

        status, reason = self.status_or_reason()
        state = effective_state(status) if status else f"unknown: {reason}"
        cause = f" ({status.error.kind}: {status.error.message})" if status and status.error else ""
        raise UserError(f"run {self.id} has no trained model to use: it is {state}{cause}", str(self.path),
                        "evaluate, chat with or merge a completed run (`sft-tui runs` lists them); resume this one first")

    def relative(self, path: Path) -> str:
        """`path` relative to the run dir. The trainer runs inside the run dir and saves through relative paths,
        so a run dir removed mid-run makes each save fail (the folder is gone) instead of creating it again."""
        return str(path.relative_to(self.path))

    def checkpoint_dir(self, step: int) -> Path:
        """checkpoints/checkpoint-<step> (transformers' naming)."""
        return self.checkpoints_dir / f"checkpoint-{step}"

    @staticmethod
    def checkpoint_step(checkpoint: Path) -> int:
        """The step a checkpoint folder was saved at."""
        return int(checkpoint.name.rsplit("-", 1)[-1])

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint: checkpoints/checkpoint-N whose trainer state reads as JSON.

        transformers writes that file last and not atomically, so a crash or a full disk can
        leave it empty or cut: such a checkpoint is passed over for the one before it.
        """
        found = []
        for folder in self.checkpoints_dir.glob("checkpoint-*"):
            suffix = folder.name.rsplit("-", 1)[-1]
            if suffix.isdigit():
                found.append((int(suffix), folder))
        for _step, folder in sorted(found, reverse=True):
            try:
                if isinstance(read_json_file(folder / "trainer_state.json"), dict):
                    return folder
            except (SchemaError, OSError):
                continue
        return None

    def write_checkpoint_progress(self, checkpoint: Path, wall_s: float) -> None:
        """Record the training time in a checkpoint transformers has just saved."""
        write_json_atomic(checkpoint / "sft_tui_progress.json", CheckpointProgress(round(wall_s, 2)).to_json())

    def read_checkpoint_progress(self, checkpoint: Path) -> CheckpointProgress | None:
        """What write_checkpoint_progress recorded (None for checkpoints from before it existed, or unreadable)."""
        try:
            data = read_json_file(checkpoint / "sft_tui_progress.json")
            return None if data is None else CheckpointProgress.from_json(data, f"{checkpoint.name}/sft_tui_progress.json")
        except (SchemaError, OSError):
            return None

    # jobs
    def jobs(self) -> list[JobDir]:
        """Every eval/merge/chat job of this run, oldest first."""
        if not self.jobs_dir.is_dir():
            return []
        found = [JobDir(p) for p in self.jobs_dir.iterdir() if p.is_dir() and "-" in p.name and not p.name.startswith(".")]
        return sorted(found, key=lambda j: (j.kind, j.number))

    def job(self, name: str) -> JobDir:
        """jobs/<name>/ (it may not exist yet)."""
        return JobDir(self.jobs_dir / name)

    def jobs_lock(self) -> FolderLock:
        """Held while a new job is numbered and checked against running ones (blocking: it is brief)."""
        if self.jobs_dir.exists() and not self.jobs_dir.is_dir():
            raise UserError("this should be the run's jobs folder, but it is a file", str(self.jobs_dir), "move the file away")
        self.jobs_dir.mkdir(exist_ok=True)
        return FolderLock(self.jobs_dir / ".lock", f"the jobs of run {self.id}", blocking=True)
