"""What the wizard writes: a starter run config and a decision record, from one set of answers.

`sft-tui wizard --record --config-out` and the TUI's Wizard screen both call
`wizard_files()`, so both write the same text. Answers that map to config fields are
set (uncommented) lines, each saying which answer it came from:

    model     -> model.name                 (the recommended model: a smaller one when it did not fit)
    seq_len   -> training.max_seq_length
    data      -> data.train                 (written relative to the config's folder)
    gpu_gib   -> training.micro_batch_size  (the largest the estimator fits, at most the recipe's)
                 training.gradient_accumulation_steps (keeps the recipe's effective batch)
                 training.optimizer         (the one the method was estimated with)
    data_kind -> method.objective           (stage 1's: sft before dpo/kto; only when the plan is more than SFT)
    gpu_count -> distributed.gpus, .strategy (only when the recommendation trains on several GPUs: DDP or FSDP;
                 the accumulation then keeps the recipe's effective batch over all of them)

With pairs or thumbs up/down the plan has two stages: this file is stage 1 (SFT), and its
header says how to run stage 2 from the same file once stage 1 has finished:
`sft-tui train run.toml --set method.objective=dpo --set model.adapter=RUN ...` (a run id
is known only after stage 1 starts, so stage 2 cannot be a finished file now).

A required field the wizard was not given (model, data) is written commented out under
a TODO saying what to put there: the loader then stops on it in one line
("data.train is required ...") instead of training on a placeholder or a file that
does not exist.

With the GPUs' free room now (core.estimate.fit.rooms_on_this_box, when the GPU was
detected rather than answered), the files also say whether the sized run would start now
on this box or wait in the queue: a line, never a change to the recommendation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sft_tui.core.config.load import resolve_layers, toml_value
from sft_tui.core.config.starter import starter_config_text
from sft_tui.core.config.tomlfile import parse_toml_text
from sft_tui.core.decide.wizard import (
    Recommendation,
    TrainingStage,
    WizardSpec,
    decision_record,
    load_spec,
    method_optimizer,
)
from sft_tui.core.errors import UserError

if TYPE_CHECKING:
    from sft_tui.core.estimate.fit import RoomNow
    from sft_tui.core.runs.placement import GpuRoom

# stand-ins handed to starter_config_text for a required field the wizard was not given; the line is then commented out
PLACEHOLDER = {"model.name": "qwen2.5-1.5b", "data.train": "train.jsonl"}
TODO = {
    "model.name": "the wizard was given no model: put a preset (sft-tui models list), a model folder or a cached repo id here and uncomment it",
    "data.train": "the wizard was given no data path: put your training file here (JSONL, JSON, CSV or Parquet) and uncomment it",
}
# the learning rate of a preference stage: the Zephyr recipes' DPO rates (alignment-handbook: 5e-6 with QLoRA, 5e-7 full);
# SFT's 2e-4 (LoRA) would move the model far from its reference in a few steps
PREFERENCE_LR = {"full": 5e-7, "lora": 5e-6, "qlora": 5e-6}


@dataclass(frozen=True)
class ConfigSetting:
    """One field the wizard sets in the starter config and the answer it came from."""

    path: str  # section.key
    value: Any
    why: str


@dataclass(frozen=True)
class StarterConfig:
    """The starter run config the wizard writes: its recipe, the fields it set, the required ones left to fill in."""

    recipe: str
    settings: tuple[ConfigSetting, ...]
    missing: tuple[str, ...]  # required fields (section.key) written commented out, with a TODO
    text: str
    peak_gib: float | None = None  # the estimate at the micro-batch written (None: not sized, no model or GPU)
    later_stages: tuple[str, ...] = ()  # the command of each stage after this file's (stage 2: DPO/KTO from stage 1's run)
    placeholders: tuple[str, ...] = ()  # what the commands' capitals stand for ("RUN is stage 1's run id (sft-tui runs)")

    def value(self, path: str) -> Any:
        """The value set for `section.key`, or None when the wizard did not set it."""
        return next((s.value for s in self.settings if s.path == path), None)

    def summary_lines(self, width: int | None = None) -> list[str]:
        """One line per field set or left to fill in, for the decision record and the screen.

        With `width` (a screen's columns), a row too long for it (a long data path) keeps its
        setting and drops its why, and the others stay aligned: no row wraps into two.
        """
        rows = [(f"recipe = {toml_value(self.recipe)}", "the recommended method")]
        rows += [(f"{s.path} = {toml_value(s.value)}", s.why) for s in self.settings]
        rows += [(f"{path}: TODO", "not given: fill it in") for path in self.missing]
        fitting = [left for left, why in rows if width is None or len(left) + 2 + len(why) <= width]
        column = max(map(len, fitting), default=0)
        return [f"{left:<{column}}  {why}" if len(left) <= column and (width is None or column + 2 + len(why) <= width) else left
                for left, why in rows]

    def next_step(self, path: Path | str) -> str:
        """What to do after the file is written, in one line."""
        then = f"; stage 2 when it has finished: see the header of {path}" if self.later_stages else ""
        if self.missing:
            return f"next: fill in {' and '.join(self.missing)} in {path} (marked TODO), then sft-tui train {path}{then}"
        return f"next: sft-tui train {path}{then}"


@dataclass(frozen=True)
class GpusNow:
    """Whether this box has room now for a run on several GPUs: `gpus` of them, each with the per-GPU peak free.

    The queue admits a multi-GPU run only when that many GPUs have room for its per-GPU
    peak; this says the same for the wizard's recommendation (a line, never a change to it).
    """

    gpus: int  # the GPUs the run trains on
    need_gib: float  # its peak on each
    with_room: tuple[int, ...]  # the GPUs with that much free now
    big_enough: tuple[int, ...]  # the GPUs whose whole memory holds it
    on_box: int  # GPUs on this box
    strategy: str = "ddp"  # ddp: one GPU holds the run too (a copy each), fsdp: it needs them all

    @property
    def fits_now(self) -> bool:
        """`gpus` GPUs have room now."""
        return len(self.with_room) >= self.gpus

    @property
    def fits_when_empty(self) -> bool:
        """`gpus` GPUs here hold it when nothing else runs."""
        return len(self.big_enough) >= self.gpus

    def where(self) -> str:
        """`3 of 4 GPUs have 38.2 GiB free`."""
        return f"{len(self.with_room)} of {self.on_box} GPUs have {self.need_gib:.1f} GiB free"

    def to_json(self) -> dict[str, Any]:
        """The `placement` object of `sft-tui wizard --json` for a run on several GPUs."""
        return {"gpus": self.gpus, "need_gib": round(self.need_gib, 3), "gpus_with_room": list(self.with_room),
                "fits_now": self.fits_now, "fits_when_empty": self.fits_when_empty}


def gpus_now(gpus: int, need_gib: float, rooms: Sequence[GpuRoom], strategy: str = "ddp") -> GpusNow | None:
    """Which of `rooms` could take a share of a run on `gpus` GPUs now (None without GPUs)."""
    if not rooms:
        return None
    return GpusNow(gpus, need_gib, tuple(r.index for r in rooms if r.free_gib >= need_gib),
                   tuple(r.index for r in rooms if r.total_gib >= need_gib), len(rooms), strategy)


@dataclass(frozen=True)
class WizardFiles:
    """Both files the wizard writes, made from the same answers."""

    record: str  # decision.md
    config: StarterConfig | None  # None when fine-tuning is not recommended
    room: RoomNow | None = None  # the GPU the run would get on this box now (given the rooms, fine-tuning recommended)
    shares: GpusNow | None = None  # instead of `room` for a run on several GPUs: do that many have room now

    def room_line(self, config_name: str = "run.toml", queue_hint: str = "") -> str:
        """`on this box now: GPU0 has ... free (...): the run (about 12.3 GiB) would start now` (or wait in the queue); '' without."""
        if self.shares:
            return shares_line(self.shares, config_name, queue_hint)
        return room_line(self.room, self.config.peak_gib if self.config else None, config_name, queue_hint) if self.room else ""

    def placement_json(self) -> dict[str, Any] | None:
        """The `placement` object of `sft-tui wizard --json` (fits null when no model was given to size), or None."""
        if self.shares is not None:
            return self.shares.to_json()
        if self.room is None:
            return None
        data = self.room.to_json()
        if self.config is None or self.config.peak_gib is None:
            data |= {"need_gib": None, "fits_now": None, "fits_when_empty": None}
        return data


def room_line(room: RoomNow, peak_gib: float | None, config_name: str = "run.toml", queue_hint: str = "") -> str:
    """What the recommended run would get on this box now, in one line (peak None: no model to size, free room only).

    `queue_hint` says how to queue it (default: the command, `sft-tui train CONFIG_NAME --queue`).
    """
    if peak_gib is None:
        return f"on this box now: {room.where()}; give a model to know whether the run would start now"
    if room.fits_now:
        outlook = "would start now"
    elif room.empty_fit is not None:
        outlook = f"would wait in the queue for room ({queue_hint or f'sft-tui train {config_name} --queue'})"
    else:
        outlook = "does not fit any GPU here even when empty"
    return f"on this box now: {room.where()}: the run (about {peak_gib:.1f} GiB) {outlook}"


def shares_line(shares: GpusNow, config_name: str = "run.toml", queue_hint: str = "") -> str:
    """What a run on several GPUs would get on this box now, in one line."""
    if shares.fits_now:
        outlook = "would start now"
    elif shares.fits_when_empty:
        outlook = f"would wait in the queue for room ({queue_hint or f'sft-tui train {config_name} --queue'})"
        if shares.strategy == "ddp" and shares.with_room:  # a copy per GPU: one GPU holds the run by itself
            outlook += f"; on one GPU (gpu_count = 1) it would start now on GPU{shares.with_room[0]}"
    else:
        outlook = f"needs {shares.gpus} GPUs that hold it and this box has {len(shares.big_enough)}"
    return f"on this box now: {shares.where()}: the run (about {shares.need_gib:.1f} GiB on each of {shares.gpus}) {outlook}"


def _relative_to(value: str, config_dir: Path | None, cwd: Path) -> str:
    """A path typed relative to `cwd`, as the config file must hold it: relative to the config's own folder."""
    path = Path(value).expanduser()
    if path.is_absolute() or config_dir is None:
        return str(path)
    return os.path.relpath((cwd / path).resolve(), config_dir.resolve())


def _set_line(lines: list[str], section: str, key: str, new: str) -> None:
    """Replace the (possibly commented) `key = ...` line of [section], or add it under the header."""
    header = lines.index(f"[{section}]")
    end = next((i for i in range(header + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(header + 1, end):
        if lines[i].lstrip("# ").startswith(f"{key} = "):
            lines[i] = new
            return
    lines.insert(header + 1, new)


def _sized_training(model: str, recipe: str, seq_len: int, gpu_gib: float, objective: str = "sft",
                    adapter: str = "", gpus: int = 1, strategy: str = "") -> tuple[list[ConfigSetting], str, float]:
    """Micro-batch, accumulation and optimizer for this GPU, a header line saying what the estimate found, and the peak.

    `objective` and `adapter` size a later stage: DPO runs both answers of a pair and a
    reference forward, so its micro-batch is often smaller than SFT's on the same GPU.
    With `gpus` > 1 and a `strategy` (ddp, fsdp) the micro-batch is sized for one GPU's
    share (the per-GPU peak), and the accumulation divided by the GPUs: each optimizer step
    sees micro-batch x accumulation x GPUs examples, the recipe's effective batch.
    """
    from sft_tui.core.estimate.fit import largest_batch
    from sft_tui.core.estimate.memory import estimate_memory, settings_from_run_config
    from sft_tui.core.models.modelspec import resolve_model

    optimizer = method_optimizer(recipe, strategy if gpus > 1 else "")
    data = {"recipe": recipe, "model": {"name": model, "adapter": adapter}, "data": {"train": PLACEHOLDER["data.train"]},
            "method": {"objective": objective}, "training": {"max_seq_length": seq_len, "optimizer": optimizer}}
    config = resolve_layers(data, None, "wizard", None).config
    spec = resolve_model(model)
    settings = settings_from_run_config(config)
    if gpus > 1 and strategy:
        settings = replace(settings, gpus=gpus, strategy=strategy)
    recipe_batch = config.training.micro_batch_size
    effective = recipe_batch * config.training.gradient_accumulation_steps
    copies = max(1, gpus)  # every GPU takes a micro-batch per step, under DDP and FSDP alike

    def accumulation_for(micro: int) -> int:
        return max(1, math.ceil(effective / (micro * copies)))

    def peak_at(micro: int, accumulation: int) -> float:
        # the accumulation written is the one estimated: accumulating keeps the gradients between micro-batches
        return estimate_memory(spec, replace(settings, batch_size=micro, grad_accum=accumulation)).peak_gib

    batch = min(recipe_batch, largest_batch(spec, settings, gpu_gib))
    while batch > 0 and peak_at(batch, accumulation_for(batch)) > gpu_gib:
        batch -= 1
    accumulation = accumulation_for(batch) if batch else 1
    where = f"{gpus} x {gpu_gib:g} GiB GPUs with {strategy.upper()}" if gpus > 1 else f"a {gpu_gib:g} GiB GPU"
    per = " per GPU" if gpus > 1 else ""
    if batch == 0 and peak_at(1, 1) <= gpu_gib:  # it fits only without accumulating: a smaller global batch, said so
        batch, accumulation = 1, 1
        peak = peak_at(1, 1)
        header = (f"# sized for {where}: micro-batch 1 at {seq_len} tokens, about {peak:.1f} GiB{per} peak (estimate); "
                  f"accumulation 1, as accumulating gradients would not fit")
    elif batch == 0:  # the recommendation already says it does not fit; the config stays at the smallest batch
        batch, accumulation = 1, accumulation_for(1)
        peak = peak_at(1, accumulation)
        header = f"# does NOT fit {where} even at micro-batch 1 ({peak:.1f} GiB{per} estimated): see the decision record"
    else:
        peak = peak_at(batch, accumulation)
        header = f"# sized for {where}: micro-batch {batch} at {seq_len} tokens, about {peak:.1f} GiB{per} peak (estimate)"
    total = batch * accumulation * copies  # examples per optimizer step over all the GPUs
    return [
        ConfigSetting("training.micro_batch_size", batch, f"{peak:.1f} of {gpu_gib:g} GiB per GPU (recipe {recipe_batch})" if copies > 1
                      else f"fits {gpu_gib:g} GiB (recipe: {recipe_batch})"),
        ConfigSetting("training.gradient_accumulation_steps", accumulation,
                      f"global batch {total} = {batch} x {accumulation} x {copies} GPUs" + ("" if total == effective else f" (recipe {effective})")
                      if copies > 1 else f"effective batch {total}" + (", as the recipe" if total == effective else f" (recipe {effective})")),
        ConfigSetting("training.optimizer", optimizer, f"{recipe} was estimated with it"
                      + (" (8-bit ones cannot step FSDP's shards)" if optimizer != method_optimizer(recipe) else "")),
    ], header, peak


def later_stage_overrides(stages: tuple[TrainingStage, ...], number: int, method: str, settings: list[ConfigSetting],
                          sized: list[ConfigSetting] = ()) -> tuple[list[str], list[str]]:
    """(the --set overrides, what their placeholders mean) for stage `number` (2 or more): the stage-1 config changed.

    It starts from the stage before (its adapter, or its model folder after full fine-tuning),
    reads another file when the plan says so, and trains at a preference rate. `sized` is
    the stage's own micro-batch and accumulation for the GPU (empty: not sized): set where
    they differ from stage 1's.
    """
    stage, before = stages[number - 1], stages[number - 2]
    run = f"RUN{number - 1}" if number > 2 else "RUN"
    sets = [f"method.objective={stage.objective}"]
    if method == "full":
        sets.append(f"model.name={run}_MODEL")
        meaning = [f"{run}_MODEL is the model/ folder of stage {number - 1}'s run (full fine-tuning leaves a model, not an adapter)"]
    else:
        sets.append(f"model.adapter={run}")
        meaning = [f"{run} is stage {number - 1}'s run id, from sft-tui runs"]
    mantissa, exponent = f"{PREFERENCE_LR[method]:.0e}".split("e")
    sets.append(f"training.lr={mantissa}e{int(exponent)}")  # 5e-6, as a person writes it
    if stage.data_file != before.data_file:
        sets.append(f"data.train={stage.data_file.upper()}_FILE")
        meaning.append(f"{stage.data_file.upper()}_FILE the file of {stage.trains_on}")
    first = {s.path: s.value for s in settings}
    sets += [f"{s.path}={s.value}" for s in sized if s.path.startswith("training.") and first.get(s.path) != s.value]
    return sets, meaning


def _plan_header(stages: tuple[TrainingStage, ...], method: str, config_name: str, settings: list[ConfigSetting],
                 size_stage: Callable[[str], tuple[list[ConfigSetting], str, float]] | None = None,
                 ) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    """The comment lines saying this file is stage 1 of N and how to run the later stages, their commands and placeholders.

    `size_stage(objective)` sizes a later stage for the GPU (None: no model or GPU to size with).
    """
    if len(stages) < 2:
        return [], (), ()
    lines = [f"# Stage 1 of {len(stages)}: {stages[0].describe(1, method)} (this file as written)."]
    commands, placeholders = [], []
    for number in range(2, len(stages) + 1):
        sized, sized_line = size_stage(stages[number - 1].objective)[:2] if size_stage else ([], "")
        sets, meaning = later_stage_overrides(stages, number, method, settings, sized)
        commands.append(f"sft-tui train {config_name} " + " ".join(f"--set {s}" for s in sets))
        placeholders += meaning
        lines += [f"# Stage {number}, once stage {number - 1} has finished: {stages[number - 1].describe(number, method)}:",
                  f"# this file with these changes, where {' and '.join(meaning)}:",
                  f"#   sft-tui train {config_name} \\"]
        lines += [f"#     --set {s}" + (" \\" if i < len(sets) - 1 else "") for i, s in enumerate(sets)]  # pastes as one command
        if sized_line:
            lines.append(sized_line.replace("# ", f"# stage {number}: ", 1))
    lines.append("# (in the TUI: Launch this file with the same section.key=value pairs as its overrides)")
    return lines, tuple(commands), tuple(dict.fromkeys(placeholders))


def starter_config(answers: dict[str, Any], rec: Recommendation, config_dir: Path | None = None,
                   cwd: Path | None = None, config_name: str = "run.toml") -> StarterConfig | None:
    """The starter run config for validated answers and their recommendation (None when not fine-tuning).

    Paths typed in the answers are relative to `cwd` (default: the current folder) and
    are written relative to `config_dir`, the folder the config file goes in. A plan of
    several stages writes stage 1 and says in the header how to run the others
    (`sft-tui train CONFIG_NAME --set ...`).
    """
    if rec.method is None:
        return None
    cwd = cwd or Path.cwd()
    settings: list[ConfigSetting] = []
    missing: list[str] = []
    model = rec.model
    if model:
        why = "answered"
        if answers.get("model") and answers["model"] != model:  # a smaller model: the answered one did not fit the GPUs
            why = f"{answers['model']} does not fit " + (f"{rec.gpu_count} x " if rec.gpu_count > 1 else "") + f"{rec.gpu_gib:g} GiB"
        if (cwd / Path(model).expanduser()).exists():  # a model folder: the loader reads it relative to the config
            model = _relative_to(model, config_dir, cwd)
        settings.append(ConfigSetting("model.name", model, why))
    else:
        missing.append("model.name")
    if answers.get("data"):
        settings.append(ConfigSetting("data.train", _relative_to(answers["data"], config_dir, cwd), "answered"))
    else:
        missing.append("data.train")
    settings.append(ConfigSetting("training.max_seq_length", answers["seq_len"], "seq_len answered"))
    header = []
    peak = size_stage = None
    if rec.model and rec.gpu_gib:
        local = cwd / Path(rec.model).expanduser()
        sizing = (str(local) if local.exists() else rec.model, rec.method, answers["seq_len"], rec.gpu_gib)
        sized, line, peak = _sized_training(*sizing, gpus=rec.gpus, strategy=rec.strategy)
        settings += sized
        header.append(line)

        def size_stage(objective: str) -> tuple[list[ConfigSetting], str, float]:  # a later stage, from stage 1's adapter
            return _sized_training(*sizing, objective=objective, adapter="" if rec.method == "full" else "RUN",
                                   gpus=rec.gpus, strategy=rec.strategy)
    stages = rec.stages or (TrainingStage("sft", "the examples", "base"),)
    if len(stages) > 1 or stages[0].objective != "sft":
        why = (f"stage 1 of {len(stages)}, then {', '.join(s.objective for s in stages[1:])}" if len(stages) > 1
               else f"data_kind = {answers.get('data_kind')}")
        settings.append(ConfigSetting("method.objective", stages[0].objective, why))
    if rec.gpus > 1:  # the run goes through accelerate launch, one process per GPU
        settings.append(ConfigSetting("distributed.gpus", rec.gpus, f"{rec.gpus} x {rec.gpu_gib:g} GiB GPUs"))
        settings.append(ConfigSetting("distributed.strategy", rec.strategy,
                                      "sharded: one GPU cannot hold it" if rec.strategy == "fsdp" else "a copy per GPU: one holds it"))
    plan_lines, later, placeholders = _plan_header(stages, rec.method, config_name, settings, size_stage)
    header += plan_lines
    text = starter_config_text(model=rec.model or PLACEHOLDER["model.name"], recipe=rec.method,
                               data=next((s.value for s in settings if s.path == "data.train"), PLACEHOLDER["data.train"]))
    lines = text.splitlines()
    lines[1:1] = ["# Written by `sft-tui wizard` from its answers (the decision record says why); uncommented lines are its settings."] + header
    for s in settings:
        section, key = s.path.split(".")
        setting = f"{key} = {toml_value(s.value)}"
        _set_line(lines, section, key, f"{setting:<40} # wizard: {s.why}")
    if later and rec.method != "full":  # the field stage 2 sets: shown where a reader of [model] looks for it
        commented = '# adapter = "RUN"'
        _set_line(lines, "model", "adapter", f"{commented:<40} # wizard: stage 2 starts from stage 1's run (see the top)")
    for path in missing:
        section, key = path.split(".")
        _set_line(lines, section, key, f"# {key} = {toml_value(PLACEHOLDER[path])}")
        at = next(i for i, line in enumerate(lines) if line == f"# {key} = {toml_value(PLACEHOLDER[path])}")
        lines.insert(at, f"# TODO: {TODO[path]}")
    text = "\n".join(lines) + "\n"
    # what sft-tui writes must load: shape and types checked now (required fields are the TODOs)
    resolve_layers(parse_toml_text(text, "starter config"), text, "starter config", None, check_contradictions=not missing)
    return StarterConfig(rec.method, tuple(settings), tuple(missing), text, peak, later, placeholders)


def wizard_files(answers: dict[str, Any], rec: Recommendation, spec: WizardSpec | None = None,
                 config_dir: Path | None = None, cwd: Path | None = None, rooms: Sequence[GpuRoom] = (),
                 config_name: str = "run.toml") -> WizardFiles:
    """The decision record and the starter config for the same answers; the record lists what the config sets.

    `rooms`: this box's GPUs now (pass them only for a detected GPU, not an answered one);
    the record then says whether the run would start now or wait in the queue
    (`sft-tui train CONFIG_NAME --queue`).
    """
    from sft_tui.core.estimate.fit import room_now

    spec = spec or load_spec()
    config = starter_config(answers, rec, config_dir, cwd, config_name)
    record = decision_record(answers, rec, spec)
    room = shares = None
    if config is not None:
        record += "\n## Run config\n\n" + "\n".join(f"- {line}" for line in config.summary_lines()) + "\n"
        if config.later_stages:
            record += (f"\nThis config is stage 1 ({config.value('method.objective') or 'sft'}). "
                       + " ".join(f"Stage {n}, once stage {n - 1} has finished: `{command}`"
                                  for n, command in enumerate(config.later_stages, 2))
                       + f" ({'; '.join(config.placeholders)}).\n")
        if rec.gpus > 1:
            shares = gpus_now(rec.gpus, config.peak_gib or 0.0, rooms, rec.strategy)
        else:
            room = room_now(config.peak_gib or 0.0, rooms)
    files = WizardFiles(record, config, room, shares)
    if room is not None or shares is not None:
        files = replace(files, record=record + f"\n## This box when decided\n\n- {files.room_line(config_name)}\n")
    return files


def write_new(path: Path, text: str, force: bool = False) -> None:
    """Write a file the wizard made, refusing (one line) to overwrite one that exists unless forced."""
    if path.exists() and not force:
        raise UserError("file exists; not overwriting it", str(path), "choose another path or pass --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
