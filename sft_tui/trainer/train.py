"""Build model, tokenizer and data from a run's config.toml, train with TRL's SFTTrainer, save.

Read top to bottom: resolve -> load -> data -> schedule -> train -> save -> summary.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import time

import torch

from sft_tui.core.config import config_from_toml_text
from sft_tui.core.model_files import find_model_files
from sft_tui.core.runs import RunDir
from sft_tui.trainer.callbacks import RunCallback, StatusReporter
from sft_tui.trainer.dataset import build_datasets
from sft_tui.trainer.model_setup import load_model, load_tokenizer, lora_config, resolve_precision

ROWS_PER_RUN, EVALS_PER_RUN, SAVES_PER_RUN = 50, 10, 5
# our optimizer names -> transformers' (adamw_torch runs fused: no full-size update temporaries)
OPTIMIZERS = {"adamw_torch": "adamw_torch_fused", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
              "sgd": "sgd", "adafactor": "adafactor"}


def _log(message: str) -> None:
    print(f"[sft-tui] {message}", flush=True)


def planned_steps(rows: int, config) -> int:
    """Optimizer steps the run will take (max_steps, or epochs over the data)."""
    if config.training.max_steps > 0:
        return config.training.max_steps
    per_epoch = math.ceil(rows / (config.training.micro_batch_size * config.training.gradient_accumulation_steps))
    return max(1, math.ceil(per_epoch * config.training.epochs))


def _every(explicit: int, total: int, count: int) -> int:
    return explicit if explicit > 0 else max(1, total // count)


def run_training(run: RunDir, resume: bool, stop: threading.Event, reporter: StatusReporter) -> dict:
    """Train the run to its end (or a stop request); returns the summary it also writes."""
    from trl import SFTConfig, SFTTrainer

    started = time.time()
    config = config_from_toml_text(run.config_path.read_text(encoding="utf-8"), str(run.config_path))
    files = find_model_files(config.model.name)
    precision = resolve_precision(config.training.precision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    _log(f"run {run.id}: {config.method.name} on {files.folder} ({device}, {precision})")
    tokenizer = load_tokenizer(files.folder, config)
    train_ds, eval_ds, report = build_datasets(config, tokenizer)
    _log(f"data: {report.format}, {report.train_rows} training rows, {report.eval_rows} eval rows, "
         f"{len(report.skipped)} skipped (empty responses), {report.truncated} longer than {config.training.max_seq_length} tokens (truncated)")
    for where, why in report.skipped[:5]:
        _log(f"skipped {where}: {why}")
    model = load_model(files.folder, config, precision)
    total = planned_steps(report.train_rows, config)
    optimizer = OPTIMIZERS[config.training.optimizer]
    if device == "cpu" and optimizer == "paged_adamw_8bit":
        optimizer = "adamw_bnb_8bit"  # paging needs CUDA unified memory
    args = SFTConfig(
        output_dir=str(run.checkpoints_dir), seed=config.training.seed,
        learning_rate=config.training.lr, lr_scheduler_type=config.training.lr_scheduler,
        warmup_steps=config.training.warmup_ratio,  # transformers 5: a float below 1 is a share of the steps
        num_train_epochs=config.training.epochs, max_steps=config.training.max_steps if config.training.max_steps > 0 else -1,
        per_device_train_batch_size=config.training.micro_batch_size, per_device_eval_batch_size=config.training.micro_batch_size,
        gradient_accumulation_steps=config.training.gradient_accumulation_steps, weight_decay=config.training.weight_decay,
        max_grad_norm=config.training.max_grad_norm, optim=optimizer,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device == "cpu",
        gradient_checkpointing=config.training.gradient_checkpointing,
        logging_steps=_every(config.training.logging_steps, total, ROWS_PER_RUN), logging_first_step=True,
        eval_strategy="steps" if eval_ds is not None else "no", eval_steps=_every(config.training.eval_steps, total, EVALS_PER_RUN),
        save_strategy="steps", save_steps=_every(config.training.save_steps, total, SAVES_PER_RUN),
        save_total_limit=config.training.save_total_limit,
        report_to=["tensorboard"] if importlib.util.find_spec("tensorboard") else "none",
        disable_tqdm=True, dataloader_num_workers=0,
        max_length=config.training.max_seq_length, packing=config.data.packing,
        completion_only_loss=config.data.completion_only_loss,
    )
    callback = RunCallback(run, reporter, stop)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
                         peft_config=lora_config(config), callbacks=[callback])
    checkpoint = run.latest_checkpoint() if resume else None
    if checkpoint is not None:
        dropped = run.truncate_metrics_after(int(checkpoint.name.rsplit("-", 1)[-1]))
        _log(f"resuming from {checkpoint.name}" + (f" ({dropped} metrics rows after it dropped: those steps run again)" if dropped else ""))
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        callback.close()
    stopped = callback.stopped_at is not None
    steps = trainer.state.global_step
    output = None
    if not stopped:
        output = run.model_dir if config.method.name == "full" else run.adapter_dir
        trainer.save_model(str(output))
        tokenizer.save_pretrained(str(output))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    eval_losses = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    wall = time.time() - started
    summary = {
        "state": "stopped" if stopped else "completed", "steps": steps, "max_steps": trainer.state.max_steps,
        "epochs": trainer.state.epoch, "final_loss": losses[-1] if losses else None, "best_loss": min(losses) if losses else None,
        "first_loss": losses[0] if losses else None, "final_eval_loss": eval_losses[-1] if eval_losses else None,
        "best_eval_loss": min(eval_losses) if eval_losses else None, "train_rows": report.train_rows, "eval_rows": report.eval_rows,
        "skipped_rows": len(report.skipped), "truncated_rows": report.truncated, "tokens": callback.tokens_seen,
        "train_runtime_s": result.metrics.get("train_runtime"), "wall_time_s": round(wall, 1),
        "tokens_per_s": round(callback.tokens_seen / result.metrics["train_runtime"], 1) if result.metrics.get("train_runtime") else None,
        "peak_gpu_reserved_gib": round(callback.peak_reserved_gib, 3) if device == "cuda" else None,
        "device": device, "precision": precision, "output": str(output) if output else None, "base_model": str(files.folder),
        "stopped": stopped,
    }
    run.write_summary(summary)
    if not stopped:
        from sft_tui.core.model_card import write_model_card

        write_model_card(run)
    _log(f"{summary['state']} at step {steps}: loss {summary['first_loss']} -> {summary['final_loss']}")
    return summary
