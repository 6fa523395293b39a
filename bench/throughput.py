"""Our trainer against a plain TRL script: same model, data and steps; and what our monitoring costs.

Both runs train LoRA on the demo's tiny model and data with the same batch, length,
learning rate and steps, in the same process, interleaved (ours, plain, ours, plain...)
so machine noise hits both. Two plain baselines, SFTTrainer without any callback of
ours: "defaults" keeps TRL's defaults (which turn on gradient checkpointing and bf16
autocast), "matched" uses our run's settings (no checkpointing, fp32 on the CPU), so
the ours/matched ratio isolates what sft-tui itself costs.
Monitoring overhead is the time spent inside our callback and heartbeat writes, as a
share of the training time (measured by timing those methods).

    python bench/throughput.py [--steps 120] [--repeats 3]   -> bench/results/throughput_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts  # noqa: E402

DEMO = ROOT / "assets" / "demo"


class _Timer:
    """Adds up the seconds spent in wrapped methods (any thread)."""

    def __init__(self):
        self.seconds = 0.0
        self._lock = threading.Lock()

    def wrap(self, cls, name):
        original = getattr(cls, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds += time.perf_counter() - start

        setattr(cls, name, timed)


def ours(model: Path, steps: int, timer: _Timer) -> dict:
    """One run through sft-tui's trainer (run dir, metrics, heartbeat, callback)."""
    from sft_tui.core.config.load import dump_run_config, load_run_config
    from sft_tui.core.runs.reporter import StatusReporter
    from sft_tui.core.runs.store import RunStore
    from sft_tui.trainer.train import run_training

    with tempfile.TemporaryDirectory() as home:
        resolved = load_run_config(DEMO / "demo.toml", [f"model.name={model}", f"training.max_steps={steps}", "data.eval=", "training.save_steps=100000"])
        run = RunStore(Path(home)).create_run(dump_run_config(resolved.config), "tiny", "lora", name="bench")
        reporter = StatusReporter(run, "train")
        reporter.begin()
        timer.seconds = 0.0
        summary = run_training(run, resume=False, stop=threading.Event(), reporter=reporter)
        reporter.finish("completed")
        return {"tokens_per_s": summary.tokens / summary.train_runtime_s, "train_runtime_s": summary.train_runtime_s,
                "monitoring_s": timer.seconds}


def plain(model: Path, steps: int, matched: bool) -> dict:
    """The same training as a plain TRL script would write it (with TRL's defaults, or our settings)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from sft_tui.core.data.formats import load_examples
    from sft_tui.trainer.dataset import to_trl_row

    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = [to_trl_row(e) for e in load_examples(DEMO / "train.jsonl").examples]
    with tempfile.TemporaryDirectory() as out:
        same = dict(gradient_checkpointing=False, bf16=False, lr_scheduler_type="cosine", warmup_steps=0.05) if matched else {}
        args = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=8, learning_rate=3e-3, max_length=128,
                         use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True, seed=7, **same)
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model), args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=LoraConfig(r=32, lora_alpha=64, lora_dropout=0.0, target_modules="all-linear"))
        result = trainer.train()
        tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h][-1]
        return {"tokens_per_s": tokens / result.metrics["train_runtime"], "train_runtime_s": result.metrics["train_runtime"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "throughput_cpu.json")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sft_tui.core.runs.reporter import StatusReporter
    from sft_tui.trainer import callbacks
    from sft_tui.trainer.tiny import build_tiny_model

    timer = _Timer()
    for name in ("on_train_begin", "on_step_end", "on_log", "on_save"):
        timer.wrap(callbacks.RunCallback, name)
    timer.wrap(StatusReporter, "_write")  # the heartbeat's write of status.json
    model = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", [DEMO / "train.jsonl"])
    ours(model, args.steps, timer)  # warm-up, not counted: the first run in a process pays for lazy imports and caches
    plain(model, args.steps, matched=True)
    ours_runs, matched_runs, default_runs = [], [], []
    for repeat in range(args.repeats):
        # alternate who goes first: on a shared 2-core box, load drifts within a repeat
        if repeat % 2:
            matched_runs.append(plain(model, args.steps, matched=True))
            ours_runs.append(ours(model, args.steps, timer))
        else:
            ours_runs.append(ours(model, args.steps, timer))
            matched_runs.append(plain(model, args.steps, matched=True))
        default_runs.append(plain(model, args.steps, matched=False))
    ours_tps = statistics.median(r["tokens_per_s"] for r in ours_runs)
    matched_tps = statistics.median(r["tokens_per_s"] for r in matched_runs)
    default_tps = statistics.median(r["tokens_per_s"] for r in default_runs)
    overhead = statistics.median(r["monitoring_s"] / r["train_runtime_s"] for r in ours_runs)
    result = {
        "benchmark": "throughput", "device": "cpu", "model": "tiny demo model (LoRA r=32)", "steps": args.steps, "repeats": args.repeats,
        "ours_tokens_per_s": round(ours_tps, 1), "plain_matched_tokens_per_s": round(matched_tps, 1),
        "plain_trl_defaults_tokens_per_s": round(default_tps, 1), "ratio_vs_matched": round(ours_tps / matched_tps, 3),
        "ratio_vs_trl_defaults": round(ours_tps / default_tps, 3), "monitoring_share_of_train_time": round(overhead, 4),
        "runs": {"ours": ours_runs, "plain_matched": matched_runs, "plain_trl_defaults": default_runs},
        "machine": machine_facts("torch", "transformers", "peft", "trl"),
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "machine")}, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
