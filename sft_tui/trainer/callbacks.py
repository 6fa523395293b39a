"""The trainer's reporting: typed metrics rows, progress, and readable log lines from one TrainerCallback.

Rows go through core.runs (the owner of the format). Counters run across resumes:
`tokens` is transformers' own num_input_tokens_seen (kept in each checkpoint's trainer
state), and `wall_s` adds this process's training time to what the checkpoint recorded.

On CUDA the callback also measures memory by phase of the step (cuda_memory.PeakTracker):
each train row carries the peaks since the previous row, and `peak()` gives the run's
peak with the phase it happened in, for the summary.

train.log gets one readable line per logged step and per evaluation (`step 120/300  loss 1.234
...`), printed here in place of transformers' PrinterCallback dicts (train.py removes it).
"""

from __future__ import annotations

import os
import threading
import time

from transformers import TrainerCallback

from sft_tui.core.runs.logtext import format_eval_line, format_objective_metrics, format_step_line
from sft_tui.core.runs.reporter import StatusReporter
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import EvalRow, TrainRow
from sft_tui.trainer.cuda_memory import CudaMemory, MeasuredPeak, PeakTracker
from sft_tui.trainer.failures import RunDirRemoved
from sft_tui.trainer.objectives import objective_metrics
from sft_tui.trainer.ranks import agreed_stop

# Test hooks: a CUDA out-of-memory error, or a full disk, at a given step (tests cannot fill a GPU on a CPU).
INJECT_OOM_ENV = "SFT_TUI_INJECT_OOM_AT_STEP"


class RunCallback(TrainerCallback):
    """Metrics rows (train and eval), log lines, progress for the reporter, the clean stop on SIGTERM, and a removed run dir."""

    def __init__(self, run: RunDir, reporter: StatusReporter, stop: threading.Event, base_wall_s: float = 0.0,
                 cuda: CudaMemory | None = None, writes: bool = True):
        self.run = run
        self.writes = writes  # rank 0 of a distributed run (or the only process): the one that writes the run folder
        self.reporter = reporter
        self.stop = stop
        self.inject_oom_at = int(os.environ.get(INJECT_OOM_ENV, "0") or 0)
        self.memory = PeakTracker(cuda) if cuda is not None else None  # None: a CPU run, no GPU figures
        self.base_wall_s = base_wall_s  # training seconds before this process (from the checkpoint)
        self._began = time.monotonic()
        self._last = (time.monotonic(), 0.0)  # (time, tokens) at the previous train row
        self.tokens_seen = 0.0
        self.stopped_at: int | None = None

    def wall_s(self) -> float:
        """Training seconds so far, across resumes."""
        return self.base_wall_s + (time.monotonic() - self._began)

    def _check_run_dir(self) -> None:
        if self.reporter.folder_removed():
            raise RunDirRemoved(f"the run folder {self.run.path} was removed while it trained")

    def peak(self) -> MeasuredPeak | None:
        """The run's measured GPU peaks (allocated, reserved, phase), or None on the CPU."""
        return self.memory.peak() if self.memory is not None else None

    def on_train_begin(self, args, state, control, **kwargs):
        self.reporter.set_progress(state.global_step, state.max_steps)
        self._began = time.monotonic()
        self.tokens_seen = float(state.num_input_tokens_seen or 0)
        self._last = (time.monotonic(), self.tokens_seen)
        if self.memory is not None:
            loaded = self.memory.start()  # rows and the run's peak count training, not loading
            self.memory.hook(kwargs.get("model"))
            self._print(state, f"[sft-tui] GPU memory after loading: peak {loaded:.2f} GiB allocated")

    def on_step_begin(self, args, state, control, **kwargs):
        if self.memory is not None:
            self.memory.begin("forward" if self.memory.hooked else "")

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.memory is not None:
            self.memory.begin("optimizer")

    def on_evaluate(self, args, state, control, **kwargs):
        if self.memory is not None:  # called after the eval loop: the stretch since the train row was the evaluation
            self.memory.close_as("eval")

    def on_train_end(self, args, state, control, **kwargs):
        if self.memory is not None:
            self.memory.begin("")
            self.memory.unhook()
            self._print(state, f"[sft-tui] {self.memory.peak().line()}")

    def on_step_end(self, args, state, control, **kwargs):
        if self.memory is not None:
            self.memory.begin("")  # optimizer.step, the scheduler and zero_grad are behind us
        self.reporter.set_progress(state.global_step)
        if self.writes:
            self._check_run_dir()  # before transformers' next save re-creates the folder
        if self.inject_oom_at and state.global_step >= self.inject_oom_at:
            import torch

            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected at step {state.global_step} by {INJECT_OOM_ENV})")
        if agreed_stop(self.stop.is_set(), getattr(args, "device", None)) and self.stopped_at is None:  # every rank stops at the same step
            self.stopped_at = state.global_step
            control.should_save = True  # a checkpoint at exactly this step: resume repeats nothing
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.memory is not None:  # called after the checkpoint was written
            self.memory.close_as("save")
        checkpoint = self.run.checkpoint_dir(state.global_step)
        if self.writes and checkpoint.is_dir():
            self.run.write_checkpoint_progress(checkpoint, self.wall_s())

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if not self.writes:  # transformers calls this on every rank; rank 0 writes the one row per step
            return
        now = time.time()
        epoch = logs.get("epoch", state.epoch)
        if "eval_loss" in logs:
            measured = objective_metrics(logs, eval_row=True)
            self.run.append_metric(EvalRow(step=state.global_step, eval_loss=logs["eval_loss"], time=now, epoch=epoch,
                                           objective_metrics=measured))
            self._print(state, format_eval_line(state.global_step, logs["eval_loss"]) + format_objective_metrics(measured))
        if "loss" not in logs:
            return
        # transformers counts non-padding tokens and keeps the count in each checkpoint; TRL's own count restarts per process
        tokens = float(state.num_input_tokens_seen or logs.get("num_tokens") or 0)
        self.tokens_seen = tokens
        last_time, last_tokens = self._last
        elapsed = time.monotonic() - last_time
        tokens_per_s = (tokens - last_tokens) / elapsed if elapsed > 0 and tokens > last_tokens else None
        self._last = (time.monotonic(), tokens)
        allocated, reserved = self.memory.take_row() if self.memory is not None else (None, None)  # peaks since the previous row
        row = TrainRow(
            step=state.global_step, loss=logs["loss"], time=now, epoch=epoch, learning_rate=logs.get("learning_rate"),
            grad_norm=logs.get("grad_norm"), tokens_per_s=round(tokens_per_s, 1) if tokens_per_s else None, tokens=tokens,
            wall_s=round(self.wall_s(), 2), gpu_mem_gib=allocated, gpu_reserved_gib=reserved, objective_metrics=objective_metrics(logs))
        self.run.append_metric(row)
        self._print(state, format_step_line(row.step, state.max_steps, row.loss, row.learning_rate, row.grad_norm,
                                            row.tokens_per_s, self.reporter.eta_s(), row.objective_metrics))

    @staticmethod
    def _print(state, line: str) -> None:
        if state.is_world_process_zero:  # one line per step, not one per GPU
            print(line, flush=True)
