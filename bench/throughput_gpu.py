"""Useful tokens per second and peak memory on one CUDA GPU: Llama-3.2-1B- and Llama-3.1-8B-shaped models, LoRA and QLoRA, Liger off and on.

Nothing is downloaded: each shape is built from transformers' LlamaConfig with random
weights (bf16, on the GPU) and saved once under --work, with a tokenizer trained here on
the data (the tiny demo tokenizer; the model keeps Llama's 128,256-entry vocabulary, so
the embedding and LM head cost what they cost in the real model). Every configuration
runs through sft-tui's own trainer (run_training) with a config that sets only the
model, method, data, batch, length, steps and training.liger, so it gets the trainer's
defaults (bf16, gradient checkpointing, batching "auto", the recipe's optimizer); each in
a fresh process, because Liger patches transformers' Llama classes for the rest of a
process. Per configuration: useful (non-padding) tokens per second over train_runtime,
torch.cuda.max_memory_allocated over the whole child process and the trainer's own
training-only peak, and what the trainer logged for batching and kernels.

    python bench/throughput_gpu.py                  -> bench/results/throughput_gpu.json (a CUDA machine)
    python bench/throughput_gpu.py --dry-run        same code path on the CPU: a tiny shape, 2 steps, no results file

Liger needs `pip install 'sft-tui[gpu]'` (liger-kernel) and QLoRA bitsandbytes: a
configuration whose package is missing is reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts

DEMO = ROOT / "assets" / "demo"
ALPACA = ROOT.parent / "shared" / "data" / "alpaca_5000.json"
# the published configs' shapes (config.json of meta-llama/Llama-3.2-1B and Llama-3.1-8B), weights random
SHAPES = {
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                     head_dim=64, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=True),
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                     head_dim=128, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=False),
    # --dry-run: widths in multiples of 64 (bitsandbytes' CPU 4-bit blocks)
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=32, vocab_size=1024, max_position_embeddings=2048, rope_theta=10000.0, tie_word_embeddings=True),
}
METHODS = ("lora", "qlora")


def data_file(work: Path, rows: int, alpaca: Path = ALPACA, dry_run: bool = False) -> Path:
    """The training rows: the first `rows` of the Alpaca sample (--data); the demo set only for --dry-run."""
    if not alpaca.is_file():
        if not dry_run:  # a GPU measured on the demo's short rows would mostly wait: no such numbers get written
            print(f"no Alpaca sample at {alpaca}: give its path with --data (alpaca_5000.json)", file=sys.stderr)
            raise SystemExit(2)
        print(f"no Alpaca sample at {alpaca}: the dry run trains on the demo set", flush=True)
        return DEMO / "train.jsonl"
    path = work / f"alpaca_{rows}.jsonl"
    if not path.is_file():
        data = json.loads(alpaca.read_text(encoding="utf-8"))[:rows]
        path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return path


def build_shape(shape: str, work: Path, data: Path, device: str) -> Path:
    """A folder with the shape's random bf16 weights and a tokenizer trained on the data (reused when it exists)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sft_tui.trainer.tiny import build_tiny_model

    folder = work / f"shape-{shape}"
    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(work / "tokenizer", [DEMO / "train.jsonl", data], pretrain_steps=0))
    config = LlamaConfig(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **SHAPES[shape])
    started = time.time()
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)  # random init, straight in bf16 on the device
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"{shape}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B random parameters saved in {time.time() - started:.0f} s", flush=True)
    del model
    return folder


def run_one(spec: dict) -> dict:
    """One configuration through sft-tui's trainer, in this (fresh) process; the measured figures."""
    import torch

    from sft_tui.core.config.load import dump_run_config, load_run_config
    from sft_tui.core.runs.reporter import StatusReporter
    from sft_tui.core.runs.store import RunStore
    from sft_tui.trainer.train import run_training

    work = Path(spec["work"])
    config = work / f"{spec['name']}.toml"
    config.write_text(f'recipe = "{spec["method"]}"\n[model]\nname = "{spec["model"]}"\n[data]\ntrain = "{spec["data"]}"\n'
                      f'eval_fraction = 0.0\n[training]\nmicro_batch_size = {spec["batch"]}\ngradient_accumulation_steps = 1\n'
                      f'max_seq_length = {spec["max_length"]}\nmax_steps = {spec["steps"]}\nsave_steps = 100000\n'
                      f'liger = "{spec["liger"]}"\n', encoding="utf-8")
    resolved = load_run_config(config)
    run = RunStore(Path(tempfile.mkdtemp(dir=work))).create_run(dump_run_config(resolved.config), spec["shape"], spec["method"], name="bench")
    reporter = StatusReporter(run, "train")
    reporter.begin()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with open(run.path / "train.log", "w", encoding="utf-8") as log, contextlib.redirect_stdout(log):  # as the launcher does
        summary = run_training(run, resume=False, stop=threading.Event(), reporter=reporter)
    reporter.finish("completed")
    logged = (run.path / "train.log").read_text(encoding="utf-8")
    return {"useful_tokens": summary.tokens, "train_runtime_s": summary.train_runtime_s,
            "useful_tokens_per_s": round(summary.tokens / summary.train_runtime_s, 1),
            "peak_allocated_gib_process": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
            "peak_allocated_gib_training": summary.measured_peak_allocated_gib, "estimated_peak_gib": summary.estimated_peak_gib,
            "final_loss": summary.final_loss, "precision": summary.precision,
            "trainer_lines": [line for line in logged.splitlines() if line.startswith(("[sft-tui] batching:", "[sft-tui] kernels:"))]}


def skip_reason(method: str, liger: bool, dry_run: bool) -> str:
    """Why a configuration cannot run here ('' when it can)."""
    import importlib.util

    if liger and dry_run:
        return "Liger runs on CUDA only (the dry run checks the Liger-off path)"
    if liger and importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install 'sft-tui[gpu]')"
    if method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed"
    return ""


def in_child(spec: dict) -> dict:
    """run_one in a fresh Python process (Liger's patches and the CUDA caching allocator stay behind in it)."""
    result = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        return {"error": " | ".join(tail)}
    return json.loads(result.stdout.strip().splitlines()[-1])


def gpu_facts() -> dict:
    """GPU name, driver, CUDA and the GPU packages' versions."""
    import torch

    facts = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (dry run on the CPU)",
             "cuda": torch.version.cuda}
    try:
        facts["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, check=False,
                                         text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        facts["driver"] = "unknown"
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", nargs="+", choices=("llama-1b", "llama-8b"), default=["llama-1b", "llama-8b"])
    parser.add_argument("--method", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=0, help="Alpaca rows to train on; 0 = steps x batch, one epoch (the length-grouped "
                        "sampler's mega-batches are then whole: a part of one holds its longest batches first)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ALPACA, help="the Alpaca 5,000 sample (JSON list of alpaca rows); default: ../shared/data beside the checkout")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sft-tui-bench-gpu",
                        help="where the random-weight shapes are saved (an 8B shape is 16 GB) and reused")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/throughput_gpu.json (none for --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="the same code path on the CPU: a tiny shape, 2 steps, nothing written")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration, in a child process
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("throughput_gpu.py needs a CUDA GPU (torch sees none here); --dry-run checks the script on the CPU", file=sys.stderr)
        sys.exit(2)
    shapes, steps = (["tiny"], 2) if args.dry_run else (args.shape, args.steps)
    work = Path(tempfile.mkdtemp(prefix="sft-tui-gpu-dry-")) if args.dry_run else args.work
    work.mkdir(parents=True, exist_ok=True)
    data = data_file(work, args.rows or steps * args.batch, args.data, args.dry_run)
    started = time.time()
    runs = []
    for shape in shapes:
        folder = build_shape(shape, work, data, "cuda" if torch.cuda.is_available() else "cpu")
        for repeat in range(args.repeats):
            for method in args.method:
                for liger in ((False, True) if repeat % 2 == 0 else (True, False)):
                    name = f"{shape}-{method}-liger-{'on' if liger else 'off'}"
                    row = {"shape": shape, "method": method, "liger": liger, "repeat": repeat + 1}
                    reason = skip_reason(method, liger, args.dry_run)
                    if reason:
                        row["skipped"] = reason
                    else:
                        row.update(in_child({"name": name, "work": str(work), "model": str(folder), "shape": shape, "method": method,
                                             "data": str(data), "batch": args.batch, "max_length": args.max_length, "steps": steps,
                                             "liger": "on" if liger else "off"}))
                    runs.append(row)
                    shown = row.get("skipped") or row.get("error") or (
                        f"{row['useful_tokens_per_s']:>9.0f} useful tok/s, "
                        + (f"peak {row['peak_allocated_gib_process']:.2f} GiB allocated, " if row["peak_allocated_gib_process"] else "")
                        + 
                        f"{row['train_runtime_s']:.1f} s; " + "; ".join(line.removeprefix("[sft-tui] ") for line in row["trainer_lines"]))
                    print(f"{name:<28} {shown}", flush=True)
    result = {"benchmark": "throughput_gpu", "dry_run": args.dry_run, "steps": steps, "batch": args.batch, "max_length": args.max_length,
              "data": str(data.name), "shapes": {s: SHAPES[s] for s in shapes}, "runs": runs, "wall_s": round(time.time() - started, 1),
              "machine": {**machine_facts("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "liger-kernel",
                                          "flash-attn"), **gpu_facts()}}
    out = args.out or (None if args.dry_run else ROOT / "bench" / "results" / "throughput_gpu.json")
    if out is None:
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
        return
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
