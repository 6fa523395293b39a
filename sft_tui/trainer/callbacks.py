"""The trainer's reporting: status.json with a heartbeat, and metrics rows from one TrainerCallback.

Everything goes through core.runs, the owner of the file formats. The heartbeat is a
daemon thread that rewrites status.json every HEARTBEAT_S seconds, so a stalled data
loader or a slow checkpoint does not look like a dead run.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

from transformers import TrainerCallback

from sft_tui.core.runs import RunDir, RunError, RunStatus, now_iso

HEARTBEAT_S = 2.0
GIB = 1024**3
# A test hook: raise a CUDA out-of-memory error at this step (tests cannot run out of GPU memory on a CPU).
INJECT_OOM_ENV = "SFT_TUI_INJECT_OOM_AT_STEP"


class StatusReporter:
    """Owns status.json while the trainer runs: state, step, max steps, ETA, heartbeat."""

    def __init__(self, run: RunDir):
        self.run = run
        self.step = 0
        self.max_steps = 0
        self._first_step: tuple[int, float] | None = None  # (step, time) when this process began stepping
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _status(self, state: str, error: RunError | None = None) -> RunStatus:
        previous = self.run.read_status()
        started = previous.started_at if previous else now_iso()
        return RunStatus(state=state, pid=os.getpid(), started_at=started, updated_at=now_iso(), step=self.step,
                         max_steps=self.max_steps, error=error, eta_s=self.eta_s())

    def eta_s(self) -> float | None:
        """Seconds to max_steps from this process's own pace, once it has made a step."""
        if not self._first_step or self.step <= self._first_step[0] or not self.max_steps:
            return None
        first_step, first_time = self._first_step
        per_step = (time.monotonic() - first_time) / (self.step - first_step)
        return round(per_step * max(self.max_steps - self.step, 0), 1)

    def begin(self) -> None:
        """Mark the run running under this pid and start the heartbeat."""
        with self._lock:
            self.run.write_status(self._status("running"))
        self._thread.start()

    def set_progress(self, step: int, max_steps: int | None = None) -> None:
        """Record the optimizer step reached (and the planned total)."""
        with self._lock:
            if max_steps is not None:
                self.max_steps = max_steps
            if self._first_step is None:
                self._first_step = (step, time.monotonic())
            self.step = step

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT_S):
            with self._lock:
                if self._stopped.is_set():
                    return
                self.run.write_status(self._status("running"))

    def finish(self, state: str, error: RunError | None = None) -> None:
        """Stop the heartbeat and write the final state."""
        with self._lock:
            self._stopped.set()
            status = self._status(state, error)
            self.run.write_status(replace(status, eta_s=None) if state != "running" else status)


class RunCallback(TrainerCallback):
    """Metrics rows (train and eval), progress for the reporter, and the clean stop on SIGTERM."""

    def __init__(self, run: RunDir, reporter: StatusReporter, stop: threading.Event):
        self.run = run
        self.reporter = reporter
        self.stop = stop
        self.writer = run.metrics_writer()
        self.inject_oom_at = int(os.environ.get(INJECT_OOM_ENV, "0") or 0)
        self.peak_reserved_gib = 0.0
        self._last = (time.monotonic(), 0.0)  # (time, tokens) at the previous train row
        self.tokens_seen = 0.0
        self.stopped_at: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.reporter.set_progress(state.global_step, state.max_steps)
        self._last = (time.monotonic(), self.tokens_seen)

    def on_step_end(self, args, state, control, **kwargs):
        self.reporter.set_progress(state.global_step)
        if self.inject_oom_at and state.global_step >= self.inject_oom_at:
            import torch

            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected at step {state.global_step} by {INJECT_OOM_ENV})")
        if self.stop.is_set() and self.stopped_at is None:
            self.stopped_at = state.global_step
            control.should_save = True  # a checkpoint at exactly this step: resume repeats nothing
            control.should_training_stop = True
        return control

    def _gpu_memory(self) -> tuple[float | None, float | None]:
        import torch

        if not torch.cuda.is_available():
            return None, None
        allocated = torch.cuda.max_memory_allocated() / GIB
        reserved = torch.cuda.max_memory_reserved() / GIB
        self.peak_reserved_gib = max(self.peak_reserved_gib, reserved)
        torch.cuda.reset_peak_memory_stats()  # the next row reports the peak since this one
        return round(allocated, 3), round(reserved, 3)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        now = time.time()
        if "eval_loss" in logs:
            self.writer.append({"step": state.global_step, "epoch": logs.get("epoch", state.epoch), "eval_loss": logs["eval_loss"], "time": now})
        if "loss" not in logs:
            return
        # TRL counts real (non-padding) tokens in num_tokens; fall back to the Trainer's own count
        tokens = float(logs.get("num_tokens", state.num_input_tokens_seen or 0))
        self.tokens_seen = tokens
        last_time, last_tokens = self._last
        elapsed = time.monotonic() - last_time
        tokens_per_s = (tokens - last_tokens) / elapsed if elapsed > 0 and tokens > last_tokens else None
        self._last = (time.monotonic(), tokens)
        allocated, reserved = self._gpu_memory()
        self.writer.append({
            "step": state.global_step, "epoch": logs.get("epoch", state.epoch), "loss": logs["loss"],
            "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
            "tokens_per_s": round(tokens_per_s, 1) if tokens_per_s else None, "tokens": tokens,
            "gpu_mem_gib": allocated, "gpu_reserved_gib": reserved, "time": now,
        })

    def close(self) -> None:
        """Close the metrics file."""
        self.writer.close()
