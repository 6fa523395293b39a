"""Build model, tokenizer and data from a run's config.toml, train with TRL (SFT, DPO, KTO or ORPO: objectives.py), save.

Read top to bottom: resolve -> load -> data -> schedule -> resume point -> train -> save -> summary.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
import time
from pathlib import Path

import torch

from sft_tui.core.config.load import config_from_toml_text
from sft_tui.core.models.files import find_model_files
from sft_tui.core.runs.files import share_tree
from sft_tui.core.runs.reporter import StatusReporter
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import EventRow, TrainRow, TrainSummary
from sft_tui.core.runs.distributed import fsdp_settings, optimizer_under
from sft_tui.core.runs.speed import batching_line, speed_plan
from sft_tui.trainer.callbacks import RunCallback
from sft_tui.trainer.cuda_memory import cuda_memory_for
from sft_tui.trainer.dataset import build_datasets
from sft_tui.trainer.model_setup import attach_adapter, load_model, load_tokenizer, lora_config, resolve_precision
from sft_tui.trainer.objectives import build_preference_datasets, build_trainer
from sft_tui.trainer.ranks import sharded, world_size, writes_run_folder

ROWS_PER_RUN, EVALS_PER_RUN, SAVES_PER_RUN = 50, 10, 5
# our optimizer names -> transformers' (adamw_torch runs fused: no full-size update temporaries)
OPTIMIZERS = {"adamw_torch": "adamw_torch_fused", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
              "sgd": "sgd", "adafactor": "adafactor"}


def _log(message: str) -> None:
    if writes_run_folder():  # every rank shares train.log: one line, not one per process
        print(f"[sft-tui] {message}", flush=True)


def planned_steps(rows: int, config, processes: int = 1) -> int:
    """Optimizer steps the run will take (max_steps, or epochs over the data); each step takes a micro-batch per process."""
    if config.training.max_steps > 0:
        return config.training.max_steps
    per_epoch = math.ceil(rows / (config.training.micro_batch_size * config.training.gradient_accumulation_steps * processes))
    return max(1, math.ceil(per_epoch * config.training.epochs))


def _every(explicit: int, total: int, count: int) -> int:
    return explicit if explicit > 0 else max(1, total // count)


def schedule_fields(config, total: int, evaluates: bool) -> dict:
    """The TrainingArguments fields that follow the planned number of steps: logging, eval and save intervals."""
    return dict(logging_steps=_every(config.training.logging_steps, total, ROWS_PER_RUN),
                eval_steps=_every(config.training.eval_steps, total, EVALS_PER_RUN) if evaluates else None,
                save_steps=_every(config.training.save_steps, total, SAVES_PER_RUN))


def is_mixture_of_experts(model_config) -> bool:
    """Whether the model routes tokens to experts (some then get no gradient in a step, which DDP must be told)."""
    return any(getattr(model_config, name, 0) for name in ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"))


def distribution_line(processes: int, fsdp: bool, device: str, per_process: int) -> str:
    """train.log's line for a distributed run: how many processes, and how they share the model."""
    where = f"{processes} GPUs" if device == "cuda" else f"{processes} CPU processes (gloo)"
    how = "FSDP full shard (weights, gradients and optimizer state split over them)" if fsdp else "DDP (a whole copy each, gradients averaged)"
    return f"distributed: {where}, {how}; global batch {per_process * processes} ({processes} x micro-batch x accumulation)"


def packed_steps(trainer, config) -> int:
    """Optimizer steps over the packed dataset: a packed row holds several examples, so the rows count changes."""
    return planned_steps(len(trainer.train_dataset), config, world_size())


def _estimated_peak_gib(run: RunDir, config, folder: Path) -> float | None:
    """The estimate the run was launched with (placement.json, what the queue counted), kept beside the measured peak.

    Runs without one (made before the queue, or estimated as unsupported then) get the
    estimator's figure now, from the same config.
    """
    placement = run.read_placement()
    if placement is not None and placement.estimate_gib is not None:
        return round(placement.estimate_gib, 3)
    try:
        from sft_tui.core.estimate.memory import estimate_memory, settings_from_run_config
        from sft_tui.core.models.modelspec import resolve_model

        return round(estimate_memory(resolve_model(str(folder)), settings_from_run_config(config, visible_gpus=world_size())).peak_gib, 3)
    except Exception:  # an estimate must never stop a run
        return None


def memory_fields(callback: RunCallback, run: RunDir, config, folder: Path) -> dict:
    """The summary's memory fields: the measured peaks (None on the CPU) and the estimate they are compared with."""
    peak = callback.peak()
    measured = dict(peak_gpu_reserved_gib=peak.reserved_gib, measured_peak_allocated_gib=peak.allocated_gib,
                    measured_peak_phase=peak.phase, measured_context_gib=peak.context_gib, gpu_name=peak.gpu_name) if peak else {}
    return dict(measured, estimated_peak_gib=_estimated_peak_gib(run, config, folder))


def loss_line(summary: TrainSummary) -> str:
    """'loss 2.66 -> 0.99' (first -> last), or '' before any loss was logged."""
    if summary.first_loss is None or summary.final_loss is None:
        return ""
    return f"loss {summary.first_loss:.3f} -> {summary.final_loss:.3f}"


def resume_point(run: RunDir, resume: bool) -> tuple[Path | None, float, int]:
    """(checkpoint, training seconds before it, resumes so far). Cuts metrics.jsonl back to the checkpoint, in place.

    Called before anything writes a row: rows up to the checkpoint stay, the steps after it
    run again and log again, into the same (live) file.
    """
    checkpoint = run.latest_checkpoint() if resume else None
    if not writes_run_folder():  # rank 0 cuts the metrics and says so; the others only need the checkpoint
        return checkpoint, 0.0, 0
    if checkpoint is None:
        run.append_metric(EventRow(step=0, event="started", time=time.time()))
        return None, 0.0, 0
    step = run.checkpoint_step(checkpoint)
    dropped, kept = run.cut_metrics_after(step)
    progress = run.read_checkpoint_progress(checkpoint)
    trained = [r.wall_s for r in kept if isinstance(r, TrainRow) and r.wall_s is not None]
    base_wall = progress.wall_s if progress else (trained[-1] if trained else 0.0)
    resumes = 1 + sum(1 for r in kept if isinstance(r, EventRow) and r.event == "resumed")
    run.mark_summary_stale()
    note = f"from {checkpoint.name}" + (f"; {dropped} rows after it dropped (those steps run again)" if dropped else "")
    run.append_metric(EventRow(step=step, event="resumed", time=time.time(), message=note))
    _log(f"resuming {note}")
    return checkpoint, base_wall, resumes


def _drop_reference_adapter(model) -> None:
    """TRL's frozen "ref" copy of a starting adapter is for training only: the output holds the trained adapter alone."""
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and "ref" in peft_config:
        model.set_adapter("default")
        model.delete_adapter("ref")


def run_training(run: RunDir, resume: bool, stop: threading.Event, reporter: StatusReporter) -> TrainSummary:
    """Train the run to its end (or a stop request); returns the summary it also writes.

    Works inside the run dir (saves go through paths relative to it, see RunDir.relative)
    and goes back to the previous working folder afterwards.
    """
    previous = os.getcwd()
    os.chdir(run.path)
    try:
        return _train(run, resume, stop, reporter)
    finally:
        try:
            os.chdir(previous)
        except OSError:
            pass


def _train(run: RunDir, resume: bool, stop: threading.Event, reporter: StatusReporter) -> TrainSummary:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    started = time.time()
    config = config_from_toml_text(run.read_config_text(), str(run.config_path))
    files = find_model_files(config.model.name)
    precision = resolve_precision(config.training.precision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    objective = config.method.objective
    _log(f"run {run.id}: {config.method.name}" + (f" {objective.upper()}" if objective != "sft" else "")
         + f" on {files.folder}" + (f" from the adapter {config.model.adapter}" if config.model.adapter else "") + f" ({device}, {precision})")
    tokenizer = load_tokenizer(files.folder, config)
    if objective == "sft":
        train_ds, eval_ds, report = build_datasets(config, tokenizer)
    else:
        train_ds, eval_ds, report = build_preference_datasets(config, tokenizer)
    for note in report.notes:
        _log(note)
    _log(f"data: {report.format}, {report.train_rows} training rows, {report.eval_rows} eval rows, "
         f"{len(report.skipped)} skipped (empty responses), {report.truncated} longer than {config.training.max_seq_length} tokens (truncated)")
    for where, why in report.skipped[:5]:
        _log(f"skipped {where}: {why}")
    model = attach_adapter(load_model(files.folder, config, precision), config)
    plan = speed_plan(config, device, getattr(model.config, "model_type", None), lengths=report.lengths)
    _log(batching_line(config, plan, report.lengths))
    _log(plan.kernels.line())
    if objective in ("dpo", "kto"):
        _log("reference model: " + ("a frozen full copy of the model (full fine-tuning)" if config.method.name == "full" else
             "the SFT adapter it started from, frozen (a copy of the adapter only)" if config.model.adapter else
             "the base with the adapter switched off (no second copy)"))
    processes = world_size()
    fsdp = sharded(config)
    if processes > 1:
        _log(distribution_line(processes, fsdp, device, config.training.micro_batch_size * config.training.gradient_accumulation_steps))
    total = planned_steps(report.train_rows, config, processes)
    reporter.set_progress(reporter.step, total)
    chosen, told = optimizer_under(config, fsdp)
    if told:
        _log(told.removeprefix("note: "))
    optimizer = OPTIMIZERS[chosen]
    if device == "cpu" and optimizer == "paged_adamw_8bit":
        optimizer = "adamw_bnb_8bit"  # paging needs CUDA unified memory
    common = dict(
        output_dir=run.relative(run.checkpoints_dir), seed=config.training.seed,
        learning_rate=config.training.lr, lr_scheduler_type=config.training.lr_scheduler,
        warmup_steps=config.training.warmup_ratio,  # transformers 5: a float below 1 is a share of the steps
        num_train_epochs=config.training.epochs, max_steps=config.training.max_steps if config.training.max_steps > 0 else -1,
        per_device_train_batch_size=config.training.micro_batch_size, per_device_eval_batch_size=config.training.micro_batch_size,
        gradient_accumulation_steps=config.training.gradient_accumulation_steps, weight_decay=config.training.weight_decay,
        max_grad_norm=config.training.max_grad_norm, optim=optimizer,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device == "cpu",
        # transformers 5 name (gradient_checkpointing: deprecated alias); under FSDP, FSDP's own (fsdp_settings)
        activation_checkpointing=config.training.gradient_checkpointing and not fsdp,
        **(dict(fsdp=True, fsdp_config=fsdp_settings(config.training.gradient_checkpointing)) if fsdp else {}),
        logging_first_step=True, eval_strategy="steps" if eval_ds is not None else "no", save_strategy="steps",
        save_total_limit=config.training.save_total_limit, use_liger_kernel=plan.kernels.liger,
        **schedule_fields(config, total, eval_ds is not None),
        # counted by transformers and kept in every checkpoint, so the count carries across resumes
        include_num_input_tokens_seen="non_padding",
        report_to=["tensorboard"] if importlib.util.find_spec("tensorboard") else "none",
        disable_tqdm=True, dataloader_num_workers=0,
        # DDP: every trainable parameter gets a gradient each step, except experts a batch never routed to (MoE)
        ddp_find_unused_parameters=is_mixture_of_experts(model.config),
    )
    checkpoint, base_wall, resumes = resume_point(run, resume)
    callback = RunCallback(run, reporter, stop, base_wall_s=base_wall, cuda=cuda_memory_for(device), writes=writes_run_folder())
    trainer = build_trainer(config, model, tokenizer, train_ds, eval_ds, common, lora_config(config), [callback], plan.batching)
    if plan.batching.packs and config.training.max_steps <= 0:
        # TRL packed the rows while building the trainer: the steps (and the intervals that follow them) change
        total = packed_steps(trainer, config)
        _log(f"packing: {report.train_rows} training rows packed into {len(trainer.train_dataset)} rows of up to "
             f"{config.training.max_seq_length} tokens; {total} steps")
        for name, value in schedule_fields(config, total, eval_ds is not None).items():
            if value is not None:
                setattr(trainer.args, name, value)
        reporter.set_progress(reporter.step, total)
    # transformers prints each log as a raw dict (PrinterCallback, or tqdm bars with ProgressCallback):
    # RunCallback prints a readable line per step instead, so train.log and the Monitor's log pane are readable
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    stopped = callback.stopped_at is not None
    steps = trainer.state.global_step
    output = None
    if not stopped:
        output = run.model_dir if config.method.name == "full" else run.adapter_dir
        _drop_reference_adapter(trainer.model)
        if trainer.is_fsdp_enabled:  # checkpoints are per-rank shards (resumable); the output is one whole model or adapter
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(run.relative(output))  # relative: see RunDir.relative. Every rank: FSDP gathers the shards here
    if not writes_run_folder():
        return TrainSummary(state="stopped" if stopped else "completed", steps=trainer.state.global_step, max_steps=trainer.state.max_steps)
    if output is not None:
        tokenizer.save_pretrained(run.relative(output))
        share_tree(output)  # group-readable like everything else in the run
    share_tree(run.checkpoints_dir)
    history = trainer.state.log_history  # restored from the checkpoint on resume: the whole run's curve
    losses = [entry["loss"] for entry in history if "loss" in entry]
    eval_losses = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    wall = callback.wall_s()
    tokens = float(trainer.state.num_input_tokens_seen or callback.tokens_seen)  # to the last step, not the last logged row
    summary = TrainSummary(
        state="stopped" if stopped else "completed", steps=steps, max_steps=trainer.state.max_steps, epochs=trainer.state.epoch,
        first_loss=losses[0] if losses else None, final_loss=losses[-1] if losses else None, best_loss=min(losses) if losses else None,
        final_eval_loss=eval_losses[-1] if eval_losses else None, best_eval_loss=min(eval_losses) if eval_losses else None,
        train_rows=report.train_rows, eval_rows=report.eval_rows, skipped_rows=len(report.skipped), truncated_rows=report.truncated,
        tokens=tokens, wall_time_s=round(wall, 1), train_runtime_s=result.metrics.get("train_runtime"), tokens_per_s=round(tokens / wall, 1) if wall > 0 and tokens else None,
        **memory_fields(callback, run, config, files.folder),
        device=device, precision=precision, output=str(output) if output else "", base_model=str(files.folder), resumes=resumes,
        processes=processes, strategy=("fsdp" if fsdp else "ddp") if processes > 1 else "",
    )
    run.write_summary(summary)
    run.append_metric(EventRow(step=steps, event=summary.state, time=time.time(), message=loss_line(summary)))
    if not stopped:
        from sft_tui.core.evaluate.model_card import write_model_card

        write_model_card(run)
    _log(f"{summary.state} at step {steps}: {loss_line(summary)} "
         f"({tokens:,.0f} tokens, {wall:.1f} s of training{f' over {resumes + 1} sessions' if resumes else ''}; this session {time.time() - started:.1f} s)")
    return summary
