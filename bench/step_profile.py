"""Where a training step's time goes on the CPU: data, forward, loss, backward, optimizer, our callback, the rest.

Runs sft-tui's own trainer (run_training, the "ours" arm of bench/throughput.py: the
demo's LoRA settings on the Alpaca sample, batch 8, max length 512, the trainer's default
batching) with its methods wrapped in timers, after a short warm-up run that is not
counted. Nested pieces are counted once (exclusive time): the forward inside compute_loss
is "forward", the rest of compute_loss is "loss + TRL's metrics", and so on. Averaged
over every step of the run; "rest" is what no timer covers (the scheduler, zero_grad,
transformers' token counting, Python between the pieces).

    python bench/step_profile.py [--dataset alpaca] [--steps 0 = one epoch]   -> bench/results/step_profile_cpu.json
    python bench/step_profile.py --arm plain_matched_padded   the plain script with TRL's random padded batches, for comparison
                                                              -> bench/results/step_profile_cpu_plain_matched_padded.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts
from throughput import (
    ROOT,
    prepare_data,
    quiet_threads,
    run_ours,
    run_plain,
    tiny_model,
)

# piece -> what it covers, in the order of a step
PIECES = {
    "data: fetch rows": "the dataloader's fetch of the batch's rows (Trainer.get_batch_samples, less the collation)",
    "data: collation": "TRL's collator: padding, attention mask, labels (DataCollatorForLanguageModeling)",
    "forward": "the model's forward pass (PEFT LoRA model, SDPA attention)",
    "loss + TRL metrics": "SFTTrainer.compute_loss around the forward: the loss, TRL's token accuracy and entropy",
    "backward": "Accelerator.backward",
    "grad clip": "gradient norm and clipping (Trainer._clip_grad_norm)",
    "optimizer step": "AdamW (fused) step",
    "our callback": "sft_tui.trainer.callbacks.RunCallback: metrics rows, log lines, progress, stop check",
    "transformers logging": "Trainer._maybe_log_save_evaluate less our callback: the loss sync, log dicts, other callbacks",
}


class ExclusiveTimer:
    """Seconds per named piece, each counted without the wrapped pieces nested inside it (main thread only)."""

    def __init__(self):
        self.seconds = {name: 0.0 for name in PIECES}
        self.calls = {name: 0 for name in PIECES}
        self.first = self.last = None
        self._stack: list[list] = []  # [name, start, nested seconds]
        self._main = threading.get_ident()

    def enter(self, name: str) -> None:
        """Start timing `name` (nested inside whatever is open)."""
        if threading.get_ident() != self._main:
            return
        now = time.perf_counter()
        self.first = self.first or now
        self._stack.append([name, now, 0.0])

    def leave(self, name: str) -> None:
        """Stop timing the innermost open piece (which is `name`)."""
        if threading.get_ident() != self._main or not self._stack or self._stack[-1][0] != name:
            return
        _, start, nested = self._stack.pop()
        now = time.perf_counter()
        self.seconds[name] += now - start - nested
        self.calls[name] += 1
        if self._stack:
            self._stack[-1][2] += now - start
        self.last = now

    def wrap(self, owner, method: str, name: str) -> None:
        """Replace owner.method by a timed version (class-level: every instance, every trainer)."""
        original = getattr(owner, method)

        def timed(*args, **kwargs):
            self.enter(name)
            try:
                return original(*args, **kwargs)
            finally:
                self.leave(name)

        setattr(owner, method, timed)

    def reset(self) -> None:
        """Forget what was counted (after the warm-up)."""
        self.__init__()


def instrument(timer: ExclusiveTimer) -> None:
    """Wrap the pieces of a step in `timer`: the trainer's methods, the collator, our callback, the optimizer, the forward."""
    import torch.optim.optimizer as torch_optimizer
    from accelerate import Accelerator
    from transformers import Trainer
    from trl import SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from sft_tui.trainer.callbacks import RunCallback

    timer.wrap(Trainer, "get_batch_samples", "data: fetch rows")
    timer.wrap(DataCollatorForLanguageModeling, "torch_call", "data: collation")
    timer.wrap(SFTTrainer, "compute_loss", "loss + TRL metrics")
    timer.wrap(Accelerator, "backward", "backward")
    timer.wrap(Trainer, "_clip_grad_norm", "grad clip")
    timer.wrap(Trainer, "_maybe_log_save_evaluate", "transformers logging")
    for method in [m for m in vars(RunCallback) if m.startswith("on_")]:
        timer.wrap(RunCallback, method, "our callback")
    # the optimizer and the forward through torch's global hooks: no class to know in advance
    torch_optimizer.register_optimizer_step_pre_hook(lambda *a: timer.enter("optimizer step"))
    torch_optimizer.register_optimizer_step_post_hook(lambda *a: timer.leave("optimizer step"))
    original_training_step = Trainer.training_step
    hooked = set()

    def training_step(trainer, model, *args, **kwargs):
        if id(model) not in hooked:  # the top-level model the trainer calls: its forward is the whole forward pass
            model.register_forward_pre_hook(lambda *a: timer.enter("forward"))
            model.register_forward_hook(lambda *a: timer.leave("forward"))
            hooked.add(id(model))
        return original_training_step(trainer, model, *args, **kwargs)

    Trainer.training_step = training_step


def heartbeat_seconds() -> list[float]:
    """Wrap the reporter's status.json write (its heartbeat thread) and return the list its durations land in."""
    from sft_tui.core.runs.reporter import StatusReporter

    durations: list[float] = []
    original = StatusReporter._write

    def timed(self, status):
        start = time.perf_counter()
        try:
            return original(self, status)
        finally:
            durations.append(time.perf_counter() - start)

    StatusReporter._write = timed
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("alpaca", "demo"), default="alpaca")
    parser.add_argument("--arm", choices=("ours", "plain_matched_padded"), default="ours",
                        help="ours = sft-tui's trainer; plain_matched_padded = bench/throughput.py's plain script, for comparison")
    parser.add_argument("--steps", type=int, default=0, help="steps to average over; 0 = one epoch (alpaca 150, demo 60)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "step_profile_cpu.json")
    args = parser.parse_args()
    quiet_threads()  # see bench/throughput.py: spinning OpenMP threads on a shared box
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="sft-tui-step-profile-"))
    sets = prepare_data(work)
    if args.arm != "ours" and args.out == parser.get_default("out"):
        args.out = args.out.with_name(f"step_profile_cpu_{args.arm}.json")
    if args.dataset not in sets:
        sys.exit("no Alpaca sample at ../shared/data/alpaca_5000.json: run with --dataset demo")
    spec = sets[args.dataset]
    steps = args.steps or spec["epoch_steps"]
    model = tiny_model(sets)
    timer = ExclusiveTimer()
    instrument(timer)
    writes = heartbeat_seconds()
    def train(count: int) -> dict:
        return run_ours(model, spec, count, work) if args.arm == "ours" else run_plain(model, spec, count, True, work)

    train(3)  # warm-up: lazy imports and first-call caches
    timer.reset()
    writes.clear()
    result = train(steps)
    window = timer.last - timer.first
    per_step = {name: timer.seconds[name] / steps for name in PIECES}
    per_step["rest"] = max(0.0, window / steps - sum(per_step.values()))
    step_ms = window / steps * 1000
    print(f"{args.arm}, {args.dataset}: {steps} steps, {step_ms:.1f} ms per step, {result['useful_tokens'] / steps:.0f} useful tokens per step; "
          f"{result['batching']}")
    print(f"{'piece':<22} {'ms/step':>8} {'share':>7}")
    for name, seconds in per_step.items():
        print(f"{name:<22} {seconds * 1000:>8.2f} {seconds * 1000 / step_ms:>7.1%}")
    print(f"heartbeat writes (background thread): {len(writes)} writes, {sum(writes) * 1000:.1f} ms in all")
    out = {
        "benchmark": "step_profile", "device": "cpu", "arm": args.arm, "dataset": args.dataset, "max_length": spec["max_length"], "batch": 8,
        "steps": steps, "ms_per_step": round(step_ms, 2), "useful_tokens_per_step": round(result["useful_tokens"] / steps, 1),
        "batching": result["batching"],
        "pieces": {name: {"ms_per_step": round(s * 1000, 3), "share": round(s * 1000 / step_ms, 4),
                          "covers": PIECES.get(name, "what no timer covers: scheduler, zero_grad, token counting, the loop itself")}
                   for name, s in per_step.items()},
        "heartbeat_writes": {"count": len(writes), "total_ms": round(sum(writes) * 1000, 2)},
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "load_average_at_end": list(os.getloadavg()),
        "machine": machine_facts("torch", "transformers", "peft", "trl", "accelerate"),
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
