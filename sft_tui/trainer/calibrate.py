"""Measure one training step's real peak GPU memory: the job behind `sft-tui calibrate` and bench/memory_calibration.py.

    python -m sft_tui.trainer.calibrate POINT_JSON [--dry-run] [--nvml-index N]

prints one line `RESULT {...}` (peaks in GiB, the CUDA context, tokens/s) and exits 0, or
`RESULT {"status": "oom" | "error: ..."}`. Each grid point runs in its own process: a
fresh CUDA context, clean peak counters, and an out-of-memory that cannot take the
caller down.

The model is random-initialised from a preset's architecture (memory does not depend on
the weights' values) and built the way sft-tui's recipes load it: fp32 master weights for
full fine-tuning, a bf16 base with fp32 LoRA adapters for LoRA, bitsandbytes NF4 with
double quantisation plus peft's k-bit preparation for QLoRA. It runs three optimizer
steps (bf16 autocast, padded batches with labels, fused or 8-bit AdamW, optional gradient
checkpointing): the peak of a steady-state step is the estimator's peak.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict

from sft_tui.core.estimate.memory import TrainSettings
from sft_tui.core.models.presets import load_model_preset
from sft_tui.core.units import GIB

OPTIMIZER = {"full": "adamw_torch", "lora": "adamw_torch", "qlora": "paged_adamw_8bit"}
BENCH_MODELS = ("qwen2.5-0.5b", "qwen2.5-1.5b", "llama3.2-3b", "llama3.1-8b")
STEPS = 3


def _point(model: str, method: str, seq: int, batch: int, ckpt: bool) -> dict:
    return {"model": model, "method": method, "seq_len": seq, "batch_size": batch, "grad_accum": 1,
            "gradient_checkpointing": ckpt, "optimizer": OPTIMIZER[method], "lora_r": 16}


def grid(kind: str) -> list[dict]:
    """Settings to measure.

    short: `sft-tui calibrate`'s default, three points per method (MIN_RECORDS for a correction)
    on three model sizes, each with a different shape (long sequence with checkpointing, a
    batch without it, a middle one), so the slack is fitted on different mixes of weights and
    temporaries; minutes on one GPU. quick: each bench model x method at three shapes. full:
    the whole cross product of the bench's shapes.
    """
    if kind == "short":
        shapes = [("qwen2.5-0.5b", 2048, 1, True), ("qwen2.5-1.5b", 512, 4, False), ("llama3.2-3b", 4096, 1, True)]
        return [_point(model, method, seq, batch, ckpt) for method in ("lora", "qlora", "full") for model, seq, batch, ckpt in shapes]
    shapes3 = [(2048, 1, True), (512, 4, False), (8192, 1, True)] if kind == "quick" else \
        [(seq, batch, ckpt) for seq in (512, 2048, 8192) for batch in (1, 4) for ckpt in (True, False)]
    return [_point(model, method, seq, batch, ckpt) for model in BENCH_MODELS for method in ("full", "lora", "qlora")
            for seq, batch, ckpt in shapes3]


def point_label(point: dict) -> str:
    """'llama3.2-3b lora seq 4096 x1 ckpt': a grid point as a person reads it (and its record's id)."""
    return (f"{point['model']} {point['method']} seq {point['seq_len']} x{point['batch_size']}"
            f"{' ckpt' if str(point['gradient_checkpointing']) in ('True', 'true', '1') else ''}")


def settings_of(point: dict) -> TrainSettings:
    """The estimator's settings for a grid point (a dict, or a CSV row of strings)."""
    return TrainSettings(method=point["method"], seq_len=int(point["seq_len"]), batch_size=int(point["batch_size"]),
                         grad_accum=int(point["grad_accum"]), gradient_checkpointing=str(point["gradient_checkpointing"]) in ("True", "true", "1"),
                         optimizer=point["optimizer"], lora_r=int(point["lora_r"]), lora_dropout=0.05)


def tiny_architecture(model: str) -> dict:
    """A scaled-down architecture of the same family, for --dry-run on the CPU."""
    family = load_model_preset(model)["family"]
    return {"model_type": family, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 352, "vocab_size": 512, "max_position_embeddings": 4096, "tie_word_embeddings": False,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def real_architecture(model: str) -> dict:
    """The preset's architecture as transformers' config keywords."""
    preset = load_model_preset(model)
    architecture = {**preset["architecture"], "model_type": preset["family"]}
    architecture.pop("torch_dtype", None)
    return architecture


def build(point: dict, device: str, architecture: dict):
    """The model and optimizer as the recipe loads them (random weights)."""
    import peft
    import torch
    import transformers

    s = settings_of(point)
    config = transformers.AutoConfig.for_model(**architecture)
    dtype = torch.float32 if s.method == "full" else torch.bfloat16
    if s.method == "qlora":
        import bitsandbytes as bnb

        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # on the CPU, then quantised on the move
        for layer in model.get_decoder().layers:
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


def _process_gpu_bytes(nvml_index: int) -> int | None:
    """What NVML attributes to this process on the GPU (None where NVML hides processes, e.g. in some containers)."""
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index)
    for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if int(proc.pid) == os.getpid() and proc.usedGpuMemory is not None:
            return int(proc.usedGpuMemory)
    return None


def _device_used_bytes(nvml_index: int) -> int:
    import pynvml

    pynvml.nvmlInit()
    return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(nvml_index)).used)


def measure_point(point: dict, dry_run: bool = False, nvml_index: int = 0) -> dict:
    """Build, train STEPS steps, return the measured peaks in GiB (run inside a fresh process).

    The CUDA context is measured after the steps, when every lazily loaded kernel module is
    in: what NVML attributes to this process minus what torch has reserved at that moment
    (the device's used memory since before CUDA started, where NVML hides processes).
    """
    import torch

    device = "cpu" if dry_run else "cuda"
    s = settings_of(point)
    architecture = tiny_architecture(point["model"]) if dry_run else real_architecture(point["model"])
    if dry_run:
        s = TrainSettings(**{**asdict(s), "seq_len": 64, "batch_size": 2})
    elif not torch.cuda.is_available():
        return {"status": f"error: torch {torch.__version__} in {sys.executable} cannot use the GPU (a CPU-only build?)"}
    baseline = 0 if dry_run else _device_used_bytes(nvml_index)
    try:
        model, optimizer = build(point, device, architecture)
    except torch.OutOfMemoryError:
        return {"status": "oom"}
    vocab = architecture["vocab_size"]
    ids = torch.randint(3, vocab, (s.batch_size, s.seq_len), device=device)
    mask = torch.ones_like(ids)
    mask[1:, -max(1, s.seq_len // 10):] = 0  # padded rows, so the mask path runs as in training
    labels = ids.masked_fill(mask == 0, -100)
    timings = []
    try:
        for _ in range(STEPS):
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
    except torch.OutOfMemoryError:
        return {"status": "oom"}
    tokens_per_s = s.batch_size * s.seq_len * s.grad_accum / statistics.mean(timings[1:])
    if dry_run:
        return {"status": "dry-run ok", "tokens_per_s": round(tokens_per_s, 1)}
    reserved_now = torch.cuda.memory_reserved()
    process = _process_gpu_bytes(nvml_index)
    outside = (process if process is not None else _device_used_bytes(nvml_index) - baseline) - reserved_now
    reserved = torch.cuda.max_memory_reserved()
    return {"status": "ok", "peak_reserved_gib": reserved / GIB, "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
            "cuda_context_gib": max(outside, 0) / GIB, "measured_peak_gib": (reserved + max(outside, 0)) / GIB,
            "context_from": "process" if process is not None else "device", "tokens_per_s": tokens_per_s}


def versions() -> dict:
    """The libraries a measurement depends on (kept with each record)."""
    from importlib import metadata

    out = {}
    for package in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = ""
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m sft_tui.trainer.calibrate POINT_JSON`: measure one point, print `RESULT {...}`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("point", help="the grid point as JSON (model, method, seq_len, batch_size, grad_accum, gradient_checkpointing, optimizer, lora_r)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model of the same family: run the code path, measure nothing")
    parser.add_argument("--nvml-index", type=int, default=0, help="the GPU's NVML index (CUDA_VISIBLE_DEVICES pins torch to it)")
    args = parser.parse_args(argv)
    try:
        result = measure_point(json.loads(args.point), args.dry_run, args.nvml_index)
    except Exception as exc:  # noqa: BLE001 - the caller records a failed point and goes on with the next
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result = {"status": "oom" if "out of memory" in text.lower() else f"error: {type(exc).__name__}: {text[:200]}"}
    result["versions"] = versions()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
