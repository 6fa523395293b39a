"""Measure real peak GPU memory of training steps and hold the estimator to it.

Builds random-initialised models of real preset sizes (memory does not depend on the
weights' values) the way sft-tui's recipes load them: fp32 master weights for full
fine-tuning, a bf16 base with fp32 LoRA adapters for LoRA, bitsandbytes NF4 with double
quantisation plus peft's k-bit preparation for QLoRA. Runs a few steps (bf16 autocast,
padded batches with labels, fused or 8-bit AdamW, optional gradient checkpointing) and
records torch's peak reserved memory, the CUDA context as NVML sees the process, and
tokens/s. Every grid point runs in its own subprocess: a fresh CUDA context, clean peak
counters, and an out-of-memory that cannot take the harness down.

    python bench/memory_calibration.py --grid quick          GPU: appends to bench/results/memory_calibration.csv
    python bench/memory_calibration.py --report              estimator vs measurements (median / worst error)
    python bench/memory_calibration.py --dry-run             CPU: runs every code path on tiny models, no numbers

Until the trainer lands, the step below stands in for it (the same recipe choices);
when it does, switch `_build` to the trainer's own model-building code.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sft_tui.core.estimate.memory import TrainSettings, estimate_memory  # noqa: E402
from sft_tui.core.units import GIB  # noqa: E402
from sft_tui.core.models.modelspec import spec_from_preset  # noqa: E402
from sft_tui.core.models.presets import load_model_preset  # noqa: E402

CSV_PATH = ROOT / "bench" / "results" / "memory_calibration.csv"
FIELDS = ["gpu", "driver", "torch", "transformers", "peft", "bitsandbytes", "model", "method", "seq_len", "batch_size",
          "grad_accum", "gradient_checkpointing", "optimizer", "lora_r", "status", "peak_reserved_gib", "peak_allocated_gib",
          "cuda_context_gib", "measured_peak_gib", "estimate_gib", "tokens_per_s", "seconds"]
MODELS = ["qwen2.5-0.5b", "qwen2.5-1.5b", "llama3.2-3b", "llama3.1-8b"]
OPTIMIZER = {"full": "adamw_torch", "lora": "adamw_torch", "qlora": "paged_adamw_8bit"}


def grid(kind: str) -> list[dict]:
    """Settings to measure: 'quick' covers each model x method at three shapes; 'full' is the whole cross product."""
    points = []
    shapes = [(2048, 1, True), (512, 4, False), (8192, 1, True)] if kind == "quick" else \
        [(seq, batch, ckpt) for seq in (512, 2048, 8192) for batch in (1, 4) for ckpt in (True, False)]
    for model in MODELS:
        for method in ("full", "lora", "qlora"):
            for seq, batch, ckpt in shapes:
                points.append(dict(model=model, method=method, seq_len=seq, batch_size=batch, grad_accum=1,
                                   gradient_checkpointing=ckpt, optimizer=OPTIMIZER[method], lora_r=16))
    return points


def _settings(point: dict) -> TrainSettings:
    return TrainSettings(method=point["method"], seq_len=int(point["seq_len"]), batch_size=int(point["batch_size"]),
                         grad_accum=int(point["grad_accum"]), gradient_checkpointing=str(point["gradient_checkpointing"]) in ("True", "true", "1"),
                         optimizer=point["optimizer"], lora_r=int(point["lora_r"]), lora_dropout=0.05)


def _tiny_architecture(model: str) -> dict:
    """A scaled-down architecture of the same family, for --dry-run on the CPU."""
    family = load_model_preset(model)["family"]
    return dict(model_type=family, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=352, vocab_size=512, max_position_embeddings=4096, tie_word_embeddings=False,
                pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _build(point: dict, device: str, architecture: dict):
    """The model and optimizer as the recipe loads them (random weights)."""
    import peft
    import torch
    import transformers

    s = _settings(point)
    config = transformers.AutoConfig.for_model(**architecture)
    dtype = torch.float32 if s.method == "full" else torch.bfloat16
    if s.method == "qlora":
        import bitsandbytes as bnb

        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # on the CPU, then quantised on the move
        layers = model.get_decoder().layers
        for layer in layers:
            for name, module in list(layer.named_modules()):
                if isinstance(module, torch.nn.Linear):
                    parent = layer.get_submodule(name.rsplit(".", 1)[0]) if "." in name else layer
                    quantised = bnb.nn.Linear4bit(module.in_features, module.out_features, bias=module.bias is not None,
                                                  compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=True)
                    quantised.weight = bnb.nn.Params4bit(module.weight.data, requires_grad=False, quant_type="nf4", compress_statistics=True)
                    if module.bias is not None:
                        quantised.bias = module.bias
                    setattr(parent, name.rsplit(".", 1)[-1], quantised)
        model = model.to(device)
        model.is_loaded_in_4bit = True
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=s.gradient_checkpointing)
    else:
        with torch.device(device):
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    if s.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    if s.method != "full":
        model = peft.get_peft_model(model, peft.LoraConfig(r=s.lora_r, lora_alpha=2 * s.lora_r, lora_dropout=s.lora_dropout, target_modules="all-linear"))
        if s.gradient_checkpointing:
            model.enable_input_require_grads()
    model.config.use_cache = False
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimizer == "adamw_torch":
        optimizer = torch.optim.AdamW(params, lr=1e-5, fused=(device == "cuda"))
    else:
        import bitsandbytes as bnb

        optimizer = (bnb.optim.PagedAdamW8bit if s.optimizer.startswith("paged") else bnb.optim.AdamW8bit)(params, lr=1e-5)
    return model, optimizer


def measure_one(point: dict, dry_run: bool) -> dict:
    """Build, train 3 steps, return the measured peaks (run inside a fresh subprocess)."""
    import torch

    device = "cpu" if dry_run else "cuda"
    s = _settings(point)
    architecture = _tiny_architecture(point["model"]) if dry_run else \
        {**load_model_preset(point["model"])["architecture"], "model_type": load_model_preset(point["model"])["family"]}
    architecture.pop("torch_dtype", None)
    if dry_run:
        s = TrainSettings(**{**asdict(s), "seq_len": 64, "batch_size": 2})
    baseline = _nvml_used() if not dry_run else 0
    context = 0.0
    if not dry_run:
        torch.zeros(1, device="cuda") @ torch.zeros(1, 1, device="cuda")  # create the context and cuBLAS handle
        torch.cuda.synchronize()
        context = (_nvml_used() - baseline) - torch.cuda.memory_reserved()
        torch.cuda.reset_peak_memory_stats()
    model, optimizer = _build(point, device, architecture)
    vocab = architecture["vocab_size"]
    ids = torch.randint(3, vocab, (s.batch_size, s.seq_len), device=device)
    mask = torch.ones_like(ids)
    mask[1:, -max(1, s.seq_len // 10):] = 0  # padded rows, so the mask path runs as in training
    labels = ids.masked_fill(mask == 0, -100)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(s.grad_accum):
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not dry_run:
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    tokens_per_s = s.batch_size * s.seq_len * s.grad_accum / statistics.mean(timings[1:])
    if dry_run:
        return {"status": "dry-run ok", "tokens_per_s": round(tokens_per_s, 1)}
    reserved = torch.cuda.max_memory_reserved()
    return {"status": "ok", "peak_reserved_gib": reserved / GIB, "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
            "cuda_context_gib": context / GIB, "measured_peak_gib": (reserved + context) / GIB, "tokens_per_s": tokens_per_s}


def _nvml_used() -> int:
    import pynvml

    pynvml.nvmlInit()
    return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used)


def _versions() -> dict:
    from importlib import metadata

    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    name = pynvml.nvmlDeviceGetName(handle)
    out = {"gpu": name.decode() if isinstance(name, bytes) else name, "driver": pynvml.nvmlSystemGetDriverVersion()}
    for package in ("torch", "transformers", "peft", "bitsandbytes"):
        out[package] = metadata.version(package)
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in out.items()}


def run_grid(kind: str, out: Path, dry_run: bool, max_minutes: float) -> None:
    """Measure every grid point not yet in `out`, each in a subprocess; skip points the estimator calls hopeless."""
    points = grid(kind)
    if dry_run:  # every recipe with checkpointing, and LoRA without it
        points = [p for p in points if p["model"] == "qwen2.5-0.5b" and (p["seq_len"] == 2048 or (p["seq_len"] == 512 and p["method"] == "lora"))]
    done = set()
    if out.exists() and not dry_run:
        with out.open() as handle:
            done = {tuple(str(row[k]) for k in ("model", "method", "seq_len", "batch_size", "gradient_checkpointing")) for row in csv.DictReader(handle)}
    versions = {} if dry_run else _versions()
    gpu_gib = 0.0 if dry_run else _gpu_total_gib()
    deadline = time.time() + max_minutes * 60
    for point in points:
        key = tuple(str(point[k]) for k in ("model", "method", "seq_len", "batch_size", "gradient_checkpointing"))
        if key in done:
            continue
        if time.time() > deadline:
            print(f"stopping: --max-minutes {max_minutes} reached; run again to continue")
            break
        estimate = estimate_memory(spec_from_preset(point["model"]), _settings(point)).peak_gib
        row = {**versions, **point, "estimate_gib": round(estimate, 3)}
        if not dry_run and estimate > 1.3 * gpu_gib:
            row["status"] = "skipped: estimate far above GPU memory"
        else:
            start = time.time()
            proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(point)] + (["--dry-run"] if dry_run else []),
                                  capture_output=True, text=True, timeout=900)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if lines:
                row.update(json.loads(lines[-1][7:]))
            else:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                row["status"] = "oom" if "out of memory" in (proc.stderr or "").lower() else f"error: {tail[0][:200]}"
            row["seconds"] = round(time.time() - start, 1)
        print(json.dumps({k: row.get(k) for k in ("model", "method", "seq_len", "batch_size", "gradient_checkpointing", "status", "measured_peak_gib", "estimate_gib")}), flush=True)
        if dry_run:
            if not str(row["status"]).startswith("dry-run ok"):
                raise SystemExit(f"dry run failed: {row['status']}")
            continue
        new = not out.exists()
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})


def _gpu_total_gib() -> float:
    import pynvml

    pynvml.nvmlInit()
    return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total / GIB


def report(path: Path) -> dict:
    """Estimator (as it is now) vs every measured row: per-row error, median and worst absolute error."""
    with path.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] == "ok"]
    errors = []
    for row in rows:
        estimate = estimate_memory(spec_from_preset(row["model"]), _settings(row)).peak_gib
        measured = float(row["measured_peak_gib"])
        error = (estimate - measured) / measured
        errors.append(abs(error))
        print(f"{row['model']:14} {row['method']:5} seq {row['seq_len']:>5} b {row['batch_size']} ckpt {row['gradient_checkpointing']:5} "
              f"measured {measured:7.2f} GiB  estimate {estimate:7.2f} GiB  error {error:+6.1%}")
    summary = {"rows": len(errors), "median_abs_error": statistics.median(errors) if errors else None, "worst_abs_error": max(errors) if errors else None}
    if errors:
        print(f"{len(errors)} measurements: median |error| {summary['median_abs_error']:.1%}, worst {summary['worst_abs_error']:.1%} "
              f"(targets: median <= 10%, worst <= 20%)")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", choices=("quick", "full"), default="quick")
    parser.add_argument("--out", type=Path, default=CSV_PATH)
    parser.add_argument("--report", action="store_true", help="compare the estimator with the measurements in --out")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny models: run every code path, record nothing")
    parser.add_argument("--max-minutes", type=float, default=25.0)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure_one(json.loads(args.one), args.dry_run)), flush=True)
    elif args.report:
        if not args.out.exists():
            raise SystemExit(f"no measurements at {args.out}: run this on a GPU machine first (see the docstring)")
        report(args.out)
    else:
        if not args.dry_run and "CUDA_VISIBLE_DEVICES" not in os.environ:
            import torch

            if not torch.cuda.is_available():
                raise SystemExit("no CUDA GPU: use --dry-run here, or run this on a GPU machine")
        run_grid(args.grid, args.out, args.dry_run, args.max_minutes)


if __name__ == "__main__":
    main()
