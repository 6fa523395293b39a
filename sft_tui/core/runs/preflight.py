"""Pre-flight and launch: every check that can fail before a run, then the run dir and its trainer.

One implementation for `sft-tui train`, `sft-tui demo` and the TUI's Launch screen; progress
lines go to a `note` callback (stderr for the CLI, the screen for the TUI).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sft_tui.core.config.schema import RunConfig
from sft_tui.core.config.load import ResolvedConfig, check_precision_against_gpus, dump_run_config, load_run_config
from sft_tui.core.data.formats import load_examples
from sft_tui.core.data.preference import load_for_objective
from sft_tui.core.errors import UserError
from sft_tui.core.estimate.calibration import calibration_for
from sft_tui.core.estimate.fit import build_estimate, detected_gpus, peft_dropout_conflict
from sft_tui.core.estimate.memory import estimate_memory, settings_from_run_config
from sft_tui.core.estimate.report import render_estimate
from sft_tui.core.models.files import chat_template_text, check_weight_files, find_model_files, model_type
from sft_tui.core.models.modelspec import resolve_model
from sft_tui.core.runs.files import free_bytes
from sft_tui.core.runs.jobs import launch
from sft_tui.core.runs.rundir import DECISION_NAME, RunDir
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.schema import Placement, now_iso
from sft_tui.core.runs.speed import batching_line, speed_plan
from sft_tui.core.runs.sysmon import GpuSample, GpuSnapshot, SystemSampler, gpu_snapshot
from sft_tui.core.units import GIB


def load_and_check_config(path: Path, overrides: list[str], note: Callable[[str], None], sampler: SystemSampler | None = None) -> ResolvedConfig:
    """Load a run config and check its precision against this machine's GPUs; notes go to `note`."""
    resolved = load_run_config(path, overrides)
    check_precision_against_gpus(resolved.config, gpu_snapshot(sampler).gpus, resolved.origins["training.precision"])
    for line in resolved.notes:
        note(f"note: {line}")
    return resolved


def check_home_writable(home: Path) -> None:
    """Refuse, in one line, a runs home that cannot be written (read-only, no permission), before any other check.

    Creates nothing: it asks the nearest folder that exists (a mistaken config must not leave
    an empty sft-runs/ behind).
    """
    target = home / "runs"
    existing = next((p for p in (target, *target.parents) if p.exists()), Path("/"))
    problem = None
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            problem = "read-only file system"
        elif not os.access(existing, os.W_OK | os.X_OK):
            problem = "permission denied"
    except OSError as exc:
        problem = exc.strerror or str(exc)
    if problem:
        fix = "set SFT_TUI_HOME to a folder you can write (a team shares one as a setgid group folder)"
        if problem == "permission denied":
            try:
                import grp
                import pwd

                st = existing.stat()
                owner, group = pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name
                fix = (f"{existing} belongs to {owner}:{group} with mode {oct(st.st_mode & 0o7777)[2:]}: ask {owner} to "
                       f"`chmod g+w` it, and work with `umask 002` (README: Sharing one SFT_TUI_HOME), or set SFT_TUI_HOME elsewhere")
            except (KeyError, OSError):
                pass
        raise UserError(f"cannot write where runs live: {problem} ({existing})", str(home), fix)


# model_types whose checkpoints transformers 5.23 loads only as image-text models (tests/trainer/test_packing_equivalence.py)
NOT_CAUSAL_LM = {"mistral3": "Mistral 3 image-text model (transformers has no causal-LM class for it)"}


def training_lengths(examples, model_folder: Path | str) -> tuple[int, ...]:
    """Token counts of the training examples with the model's tokenizer and chat template (approximate without them).

    `model_folder` may also be a preset or cached repo id (model_token_counter finds its tokenizer).
    """
    from sft_tui.core.data.text import approx_tokens
    from sft_tui.core.data.tokens import model_token_counter

    try:
        count = model_token_counter(str(model_folder)).count
        return tuple(count(e) for e in examples)
    except Exception:  # a tokenizer the tokenizers library cannot read, or a template that fails: the trainer says so; here a count only picks the batching
        return tuple(approx_tokens(e) for e in examples)


def preflight(config_path: Path, overrides: list[str], force: bool, note: Callable[[str], None],
              store: RunStore | None = None, sampler: SystemSampler | None = None, here: bool = True) -> ResolvedConfig:
    """Every check that can fail before a run starts, in seconds; returns the resolved config.

    `note` receives the progress lines (stderr for the CLI, the Launch screen in the TUI).
    `here`: the run trains on this machine (False: on others, `sft-tui launch-command`; their GPUs are not this one's).
    """
    home = (store or RunStore()).home
    check_home_writable(home)
    resolved = load_and_check_config(config_path, overrides, note, sampler)
    resolved = resolve_adapter(resolved, store or RunStore())
    config = resolved.config
    objective = config.method.objective
    train = load_for_objective(Path(config.data.train), config.data.format, objective)
    rows = len(train.examples)
    held = 0
    if not config.data.eval and config.data.eval_fraction > 0:  # the trainer's seeded split (KTO on pairs: split as pairs)
        paired = objective == "kto" and train.kind == "pairwise"
        held = int((rows // 2 if paired else rows) * config.data.eval_fraction) * (2 if paired else 1)
    line = f"data: {train.format}, {rows - held} training rows" + (f" for {objective.upper()}" if objective != "sft" else "")
    if held:
        line += f", {held} held out for eval (data.eval_fraction {config.data.eval_fraction:g})"
    if train.skipped:
        line += f", {len(train.skipped)} skipped (first: {train.skipped[0][0]}: {train.skipped[0][1]})"
    if config.data.eval:
        line += f", {len(load_for_objective(Path(config.data.eval), config.data.format, objective).examples)} eval rows"
    note(line)
    if objective == "kto" and config.method.loss_type in ("", "kto") and config.training.micro_batch_size < 2:
        # TRL refuses it too, but only after the model has loaded: KTO's KL term pairs each prompt with another row's answer
        raise UserError("KTO needs training.micro_batch_size >= 2 (its KL estimate pairs prompts with other rows' answers)",
                        resolved.origins.get("training.micro_batch_size", "training.micro_batch_size"),
                        "set training.micro_batch_size = 2 (and halve gradient_accumulation_steps), or method.loss_type = 'apo_zero_unpaired'")
    lr_origin = resolved.origins.get("training.lr", "default")
    if objective != "sft" and config.training.lr > 1e-4 and (lr_origin == "default" or "/recipes/" in lr_origin):
        note(f"note: training.lr = {config.training.lr:g} ({lr_origin}) is a rate for SFT; preference tuning usually runs far lower "
             f"(TRL's DPO default 1e-6; LoRA 5e-6..5e-5): set training.lr in the config")
    for told in train.notes:  # labelled or pairwise data in an SFT run: what is trained on, said before it starts
        note(f"note: {told}")
    files = find_model_files(config.model.name)
    if not files.has_tokenizer:
        raise UserError("no tokenizer files next to the weights", str(files.folder), "use a complete model folder (tokenizer.json or tokenizer.model)")
    template = config.model.chat_template or chat_template_text(files.folder)
    if train.kind == "tool-calling" and template and "tools" not in template:
        # a cheap early look (the trainer renders a probe conversation to be sure): a template that never reads `tools`
        raise UserError(f"the data calls tools but the chat template of {config.model.name} never reads `tools`",
                        "model.chat_template", "set model.chat_template to a template that renders tools (e.g. the instruct "
                        "model's), or train on rows without tools")
    weights = check_weight_files(files.folder)
    note(f"model: {files.folder}, {weights} weight file(s) checked" + ("" if files.has_chat_template or config.model.chat_template else " (no chat template: a default one is set and saved with the output)"))
    target = max(detected_gpus(sampler), key=lambda g: g.memory_gib, default=None)  # can it ever fit? (room now: start_run)
    spec = resolve_model(str(files.folder))
    if model_type(files.folder) in NOT_CAUSAL_LM:
        # transformers 5 has no AutoModelForCausalLM class for it: the trainer would stop after loading with a raw error
        raise UserError(f"{files.folder.name} is a {NOT_CAUSAL_LM[model_type(files.folder)]}: sft-tui trains causal language "
                        "models only", "model.name", "train its text-only sibling (e.g. the mistral-small-24b preset's "
                        "checkpoint, Mistral-Small-24B-Instruct-2501)")
    lengths = training_lengths(train.examples, files.folder) if objective == "sft" else ()
    plan = speed_plan(config, "cpu" if target is None else "cuda", spec.family, lengths=lengths)
    note(batching_line(config, plan, lengths))
    cut = sum(n > config.training.max_seq_length for n in lengths)
    if cut:  # said before the launch: the trainer truncates them silently (TRL) and train.log counts them only afterwards
        note(f"note: about {cut} of {len(lengths)} training rows are longer than training.max_seq_length = "
             f"{config.training.max_seq_length} tokens and will be cut; raise it if their ends matter")
    note(plan.kernels.line())
    if here:
        from sft_tui.core.runs.distributed import optimizer_under, plan_distribution

        distribution = plan_distribution(config, len(detected_gpus(sampler)))
        if distribution.distributed:
            note(distribution.line())
            told = optimizer_under(config, distribution.strategy == "fsdp")[1]
            if told:
                note(told)
    if peft_dropout_conflict(spec, settings_from_run_config(config, plan=plan)):  # peft raises at the trainer's start otherwise
        raise UserError(f"method.lora_dropout = {config.method.lora_dropout:g}: peft puts no dropout on the LoRA of "
                        f"{spec.name}'s fused experts (it refuses the run)", resolved.origins.get("method.lora_dropout", "method.lora_dropout"),
                        "set method.lora_dropout = 0, or target attention only (method.target_modules = [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\"])")
    if config.method.name == "qlora" and spec.moe is not None and spec.moe.fused_experts:
        # transformers 5 stores experts as fused 3-D parameters: bitsandbytes quantises nn.Linear only, and peft's k-bit
        # preparation casts what is left to fp32, so "QLoRA" here holds the experts at 4 bytes a parameter
        as_qlora = estimate_memory(spec, settings_from_run_config(config, plan=plan)).peak_gib
        as_lora = estimate_memory(spec, replace(settings_from_run_config(config, plan=plan), method="lora")).peak_gib
        raise UserError(f"QLoRA cannot quantise {spec.name}'s experts (transformers 5 stores them fused; bitsandbytes 4-bit "
                        f"replaces nn.Linear only, and they end up fp32): {as_qlora:.0f} GiB against {as_lora:.0f} GiB with LoRA",
                        resolved.origins.get("method.name", "method.name"), "use method.name = 'lora' (experts stay bf16)")
    if spec.scope_note:
        note(f"note: {spec.scope_note}")
    if target is None:
        peak = estimate_memory(spec, settings_from_run_config(config, plan=plan)).peak_gib
        note(f"GPU: none found; training runs on the CPU (fine for tiny models, very slow for real ones); on a GPU this run would peak near {peak:.1f} GiB")
    else:
        settings = settings_from_run_config(config, target.info.bf16_supported if target.info else None, plan=plan)
        calibrated = calibration_for(home, target.name, target.info, settings.method)  # this box's own measurements, when there are any
        estimate = build_estimate(spec, settings, target, cal=calibrated.calibration)
        note(f"estimate: {estimate.memory.peak_gib:.1f} GiB peak on {target.name} ({target.memory_gib:.1f} GiB)")
        if calibrated.count:
            note(calibrated.line())
        if not estimate.fits and not force:
            note(render_estimate(estimate))
            raise UserError(f"the estimate ({estimate.memory.peak_gib:.1f} GiB) does not fit {target.name} ({target.memory_gib:.1f} GiB)",
                            str(config_path), "apply a suggestion above (e.g. --set training.micro_batch_size=1) or pass --force to try anyway")
    trainable = spec.count_parameters().total if config.method.name == "full" else spec.count_parameters().total // 100
    need = trainable * 12 * (config.training.save_total_limit + 1)  # weights/adapter + optimizer state per checkpoint
    free = free_bytes(home) or 0  # the home may not exist yet: its nearest existing parent's disk
    if free < need:
        raise UserError(f"{free / GIB:.1f} GiB free where runs live, checkpoints need about {need / GIB:.1f} GiB", str(home),
                        "free disk space, lower training.save_total_limit, or set SFT_TUI_HOME elsewhere")
    return resolved


def resolve_adapter(resolved: ResolvedConfig, store: RunStore) -> ResolvedConfig:
    """model.adapter as the absolute folder of a LoRA adapter (a run id becomes that run's adapter/), or a one-line refusal.

    The run's config.toml then names the folder it really started from.
    """
    config = resolved.config
    value = config.model.adapter
    if not value:
        return resolved
    where = resolved.origins.get("model.adapter", "model.adapter")
    if config.method.name == "full":
        raise UserError("model.adapter needs method.name = 'lora' or 'qlora' (training goes on in the adapter)", where,
                        f"use lora, or merge the adapter first (sft-tui merge {value} -o DIR) and name DIR as model.name")
    folder = Path(value).expanduser()
    if not folder.is_dir():
        try:
            run = store.find_run(value)
        except UserError:
            raise UserError(f"model.adapter = {value!r} is neither a folder nor a run", where,
                            "name a run id from `sft-tui runs` or a folder with adapter_config.json") from None
        folder = run.adapter_dir
        if not (folder / "adapter_config.json").is_file():
            status = run.read_status()
            raise UserError(f"run {run.id} has no trained adapter (it is {status.state if status else 'unknown'}"
                            f"{'; full fine-tuning leaves a model, not an adapter' if run.model_dir.is_dir() else ''})", where,
                            "name a completed LoRA/QLoRA run, or finish that run first (sft-tui resume)")
    elif not (folder / "adapter_config.json").is_file():
        raise UserError(f"{folder} holds no adapter_config.json (not a PEFT adapter)", where, "name an adapter folder or a run id")
    config = replace(config, model=replace(config.model, adapter=str(folder.resolve())))
    return replace(resolved, config=config)


@dataclass(frozen=True)
class PlacementRequest:
    """How a run asks for a device: at once (the GPU with most room) or through the queue, and which GPUs it may use."""

    queue: bool = False
    priority: int = 0
    gpus: tuple[int, ...] = ()  # --gpus: the GPUs it may get (empty: any)
    max_parallel: int = 1  # --max-parallel: on a CPU box, how many runs may share the CPU with it


def run_peak_gib(config: RunConfig, gpu: GpuSample, visible_gpus: int | None = None) -> float:
    """The estimator's peak for this run on one of its GPUs (bf16 or not follows the GPU; a multi-GPU run's per-GPU peak)."""
    spec = resolve_model(str(find_model_files(config.model.name).folder))
    return estimate_memory(spec, settings_from_run_config(config, gpu.bf16_supported, visible_gpus=visible_gpus)).peak_gib


def check_gpu_ids(request: PlacementRequest, snapshot: GpuSnapshot) -> None:
    """--gpus must name GPUs this machine has; one line otherwise."""
    if not request.gpus:
        return
    if not snapshot.available:
        raise UserError(f"--gpus {','.join(map(str, request.gpus))}: {snapshot.reason}", fix="leave out --gpus to train on the CPU")
    known = [g.index for g in snapshot.gpus]
    missing = [i for i in request.gpus if i not in known]
    if missing:
        raise UserError(f"--gpus: this machine has no GPU {','.join(map(str, missing))} (it has {','.join(map(str, known))})",
                        fix="`sft-tui gpu` lists them")


def place(config: RunConfig, request: PlacementRequest, snapshot: GpuSnapshot, store: RunStore, force: bool,
          note: Callable[[str], None]) -> Placement:
    """Where the run goes: its per-GPU estimate, and for a run that starts now the GPU(s) with the most room that fit it.

    A multi-GPU run ([distributed] gpus) needs that many GPUs at once, each with room for its per-GPU peak.
    Called under the queue lock, so two people launching at once never both take the same room.
    """
    from sft_tui.core.config.gpus import gpu_count, gpu_ids
    from sft_tui.core.runs.placement import gpu_rooms, most_room_many
    from sft_tui.core.runs.queue import scan

    stamp = now_iso()
    if not snapshot.available:
        busy = 0 if request.queue else scan(store).cpu_running
        if busy:
            note(f"note: {busy} run{'s' if busy > 1 else ''} already train{'' if busy > 1 else 's'} on this CPU; this one shares it "
                 "(both go slower); --queue waits for the CPU instead")
        return Placement(stamp, "cpu", None, request.queue, request.priority, time.time(), (), request.max_parallel,
                         admitted_at="" if request.queue else stamp)
    count = gpu_count(config.distributed.gpus, len(snapshot.gpus))
    wanted = request.gpus or gpu_ids(config.distributed.gpus)  # --gpus, else [distributed] gpus = [0, 2]: the GPUs it may take
    allowed = [g for g in snapshot.gpus if not wanted or g.index in wanted]
    if len(allowed) < count:
        raise UserError(f"the run needs {count} GPUs ([distributed] gpus = {config.distributed.gpus}); "
                        f"{'--gpus allows' if request.gpus else 'this machine has'} {len(allowed)}", "distributed.gpus",
                        f"set distributed.gpus to at most {len(allowed)}" + (", or allow more with --gpus" if request.gpus else ""))
    estimate = round(max(run_peak_gib(config, g, len(snapshot.gpus)) for g in allowed), 2)  # per GPU
    base = Placement(stamp, "cuda", estimate, request.queue, request.priority, time.time(), tuple(wanted), request.max_parallel,
                     gpu_count=count)
    if request.queue:
        return base
    rooms = gpu_rooms(snapshot.gpus, scan(store).claims)
    each = f" on each of {count} GPUs" if count > 1 else ""
    chosen = most_room_many(rooms, estimate, count, wanted)
    if chosen is None:
        best = sorted((r for r in rooms if not wanted or r.index in wanted), key=lambda r: (-r.free_gib, r.index))[:count]
        if not force:
            most = "the most is " + best[0].describe() if count == 1 else "the most: " + "; ".join(r.describe() for r in best)
            raise UserError(f"no {'GPU has' if count == 1 else f'{count} GPUs have'} room for this run now: it needs {estimate:.1f} GiB{each}; {most}",
                            fix="queue it to start when room appears (--queue; Queue on the TUI's Launch), or force it (--force) to try anyway")
        chosen = tuple(sorted(best, key=lambda r: r.index))
        note(f"GPU: --force: placing it on {', '.join(f'GPU{r.index}' for r in chosen)} without room for its {estimate:.1f} GiB{each}")
    elif count == 1:
        note(f"GPU: placed on GPU{chosen[0].index} {chosen[0].name}: {chosen[0].describe()}; this run needs {estimate:.1f} GiB")
    else:
        note(f"GPU: placed on {', '.join(f'GPU{r.index}' for r in chosen)} (rank i on the i-th); this run needs {estimate:.1f} GiB{each}")
    return replace(base, admitted_at=stamp, gpus=tuple(r.index for r in chosen))


def start_run(resolved: ResolvedConfig, source: str, out: Callable[[str], None], launch_fn: Callable[[RunDir], int] | None = None,
              store: RunStore | None = None, request: PlacementRequest = PlacementRequest(), sampler: SystemSampler | None = None,
              force: bool = False) -> RunDir:
    """Create the run dir with the resolved config, place it (or queue it) and launch its detached supervisor.

    launch_fn: tests pass a fake. A queued run's supervisor waits for room (core/runs/queue.py).
    """
    from sft_tui.core.runs.queue import queue_lock
    from sft_tui.core.runs.queue_edits import queued_runs

    config = resolved.config
    store = store or RunStore()
    snapshot = gpu_snapshot(sampler)
    check_gpu_ids(request, snapshot)
    text = dump_run_config(config, resolved.origins, header=f"Resolved by sft-tui from {source}; this is what the run used.")
    with queue_lock(store):  # placed, made and launched before anyone else may admit: nobody else starts it, nor takes its room
        placement = place(config, request, snapshot, store, force, out)
        run = store.create_run(text, config.model.name, config.method.name, name=config.output.name, gpus=placement.gpus)
        try:
            run.write_placement(placement)
            decision = Path(source).parent / DECISION_NAME  # the wizard writes it beside run.toml; the model card quotes it
            if decision.is_file():
                shutil.copyfile(decision, run.decision_path)
            pid = (launch_fn or launch)(run)
        except BaseException:  # Ctrl-C or a full disk before its process started: no half-made run is left to look queued
            shutil.rmtree(run.path, ignore_errors=True)
            raise
    if request.queue:
        position = next((q.position for q in queued_runs(store) if q.id == run.id), None)
        where = f"position {position}" if position else "the queue"
        out(f"queued run {run.id} at {where} (its waiter: pid {pid}); it starts when "
            + (f"a GPU has room for its {placement.estimate_gib:.1f} GiB" if placement.estimate_gib else "the CPU is free")
            + "; it keeps waiting if this terminal closes")
        out(f"  queue:  sft-tui queue\n  cancel: sft-tui queue cancel {run.id}\n  folder: {run.path}")
        return run
    out(f"started run {run.id} (supervisor pid {pid}); it keeps going if this terminal closes")
    out(f"  watch:  sft-tui watch {run.id}\n  stop:   sft-tui stop {run.id}\n  folder: {run.path}")
    return run
