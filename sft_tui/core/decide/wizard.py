"""The decision wizard: answers -> an approach (ICL, RAG, fine-tuning or both) and a method, with reasons.

Questions and rules live in presets/wizard.toml. Every rule whose conditions hold fires;
each reason names the answers that triggered it. The approach follows from what is
needed: RAG for knowledge, fine-tuning for behaviour, both when both are needed, and
prompting (ICL) when neither is, or when fine-tuning is blocked (the bar is met, or
there is too little data). The method comes from the estimator when a model and a GPU
are known: full only when it fits, data is plentiful and forgetting is acceptable, else
LoRA when it fits, else QLoRA, else a smaller model. With several GPUs (gpu_count) each
method is placed before the next is tried: a run one GPU holds trains a copy per GPU (DDP),
one it does not is sharded over them (FSDP) when its per-GPU peak fits; wizard.toml's
[distributed] table says so, with the reasons. What fine-tuning learns from (the
plan) follows the data the team has: SFT on examples; with pairs or thumbs up/down, SFT
first and then DPO or KTO from the SFT adapter (the recipes' usual order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sft_tui.core.config.schema import OBJECTIVES
from sft_tui.core.config.tomlfile import key_line, load_toml_file
from sft_tui.core.errors import UserError, did_you_mean
from sft_tui.core.models import presets


@dataclass(frozen=True)
class Question:
    """One question of the wizard, as presets/wizard.toml states it."""

    key: str
    text: str
    help: str
    kind: str  # choice | bool | int | float | string
    why: str
    choices: tuple[str, ...] = ()
    default: Any = None
    optional: bool = False
    min: float | None = None
    max: float | None = None

    def choice_descriptions(self) -> dict[str, str]:
        """'knowledge: know facts...; style: a voice...' in the help -> {choice: description} (choices described there)."""
        found = {}
        for part in self.help.rstrip(".").split("; "):
            name, _, text = part.partition(": ")
            if name in self.choices and text:
                found[name] = text
        return found


@dataclass(frozen=True)
class Rule:
    """A rule: conditions on answers and one effect."""

    id: str
    when: dict[str, Any]
    need: str = ""
    block: str = ""
    caution: str = ""
    next_step: str = ""
    reason: str = ""
    plan: tuple[str, ...] = ()  # objectives stage by stage (sft, dpo, kto, orpo)
    trains_on: tuple[str, ...] = ()  # each stage's data, in words
    data_files: tuple[str, ...] = ()  # each stage's file, by a short name: a new name is a file other than the stage before's
    finetune_only: bool = False  # a caution or next step that matters only when fine-tuning is recommended


@dataclass(frozen=True)
class DistributedRules:
    """wizard.toml's [distributed]: how a method is placed on several GPUs, and the reasons given ({gpus}: their number)."""

    fits_one: str = "ddp"  # one GPU holds the run: "ddp" (a copy per GPU) or "one" (the others stay free)
    ddp_reason: str = ""
    one_reason: str = ""
    fsdp_reason: str = ""
    fsdp_over_qlora: str = ""
    fsdp_caution: str = ""
    ddp_caution: str = ""


@dataclass(frozen=True)
class WizardSpec:
    """Questions, rules and method settings loaded from wizard.toml."""

    questions: tuple[Question, ...]
    rules: tuple[Rule, ...]
    full_min_examples: int
    batch_size: int
    gradient_checkpointing: bool
    distributed: DistributedRules = DistributedRules()

    def question(self, key: str) -> Question:
        """The question with this key."""
        return next(q for q in self.questions if q.key == key)


@dataclass(frozen=True)
class MethodStep:
    """One step of the method choice: a method (and model) and what the estimator said."""

    method: str
    model: str
    peak_gib: float | None  # per GPU
    fits: bool | None
    note: str
    gpus: int = 1
    strategy: str = ""  # "" on one GPU, else ddp | fsdp


@dataclass(frozen=True)
class TrainingStage:
    """One stage of the training plan: its [method] objective, what it trains on, what it starts from."""

    objective: str  # sft | dpo | kto | orpo
    trains_on: str
    start_from: str  # "base" (the model) or "previous" (the stage before's adapter: model.adapter = that run)
    data_file: str = "data"  # a short name of the file it reads (data.train); differs from the stage before's when it is another file

    def describe(self, number: int, method: str | None = None) -> str:
        """`DPO on the pairs, from stage 1's adapter (model.adapter = stage 1's run id)` for stage `number`."""
        if self.start_from == "base":
            start = "from the model"
        elif method == "full":  # full fine-tuning saves a model, not an adapter
            start = f"from stage {number - 1}'s model (model.name = its model/ folder)"
        else:
            start = f"from stage {number - 1}'s adapter (model.adapter = its run id)"
        return f"{self.objective.upper()} on {self.trains_on}, {start}"


@dataclass(frozen=True)
class Recommendation:
    """What the wizard recommends and why."""

    approach: str
    method: str | None
    reasons: tuple[str, ...]
    cautions: tuple[str, ...]
    next_steps: tuple[str, ...]
    estimate: dict[str, Any] | None
    model: str | None = None
    method_steps: tuple[MethodStep, ...] = ()
    fired: tuple[str, ...] = field(default=())
    gpu_gib: float | None = None  # the memory budget the method was checked against (answered or detected), per GPU
    stages: tuple[TrainingStage, ...] = ()  # the training plan when fine-tuning (empty otherwise)
    gpus: int = 1  # GPUs the run trains on ([distributed] gpus)
    strategy: str = ""  # "" on one GPU, else "ddp" (a copy per GPU) or "fsdp" (sharded) ([distributed] strategy)
    gpu_count: int = 1  # GPUs the box has for it (answered or detected): gpus is this or 1

    @property
    def objective(self) -> str | None:
        """What the plan ends with (sft, dpo, kto, orpo), or None when fine-tuning is not recommended."""
        return self.stages[-1].objective if self.stages else None

    def placement(self) -> str:
        """`FSDP on 4 GPUs`, `DDP on 2 GPUs`, or '' on one GPU."""
        return f"{self.strategy.upper()} on {self.gpus} GPUs" if self.gpus > 1 else ""

    def outcome(self) -> str:
        """`finetune with lora on qwen2.5-7b, FSDP on 4 GPUs: SFT, then DPO` (the stages only when the plan is more than SFT)."""
        text = self.approach + (f" with {self.method}" if self.method else "") + (f" on {self.model}" if self.model and self.method else "")
        if self.method and self.gpus > 1:
            text += f", {self.placement()}"
        if [s.objective for s in self.stages] not in ([], ["sft"]):
            text += ": " + ", then ".join(s.objective.upper() for s in self.stages)
        return text

    def to_json(self) -> dict[str, Any]:
        """The `sft-tui wizard --json` object."""
        return {"approach": self.approach, "method": self.method, "objective": self.objective,
                "stages": [s.__dict__ for s in self.stages], "reasons": list(self.reasons), "cautions": list(self.cautions),
                "next_steps": list(self.next_steps), "estimate": self.estimate, "model": self.model,
                "method_steps": [s.__dict__ for s in self.method_steps], "rules_fired": list(self.fired),
                "distributed": {"gpus": self.gpus, "strategy": self.strategy} if self.gpus > 1 else None}


def load_spec(path: Path | None = None) -> WizardSpec:
    """Parse wizard.toml into questions and rules (errors name the rule)."""
    path = path or presets.wizard_rules_path()
    data, _ = load_toml_file(path)
    questions = tuple(Question(**{k: tuple(v) if k == "choices" else v for k, v in q.items()}) for q in data["questions"])
    keys = {q.key for q in questions}
    rules = []
    for raw in data["rules"]:
        rule = Rule(**{k: tuple(v) if k in ("plan", "trains_on", "data_files") else v for k, v in raw.items()})
        unknown = set(rule.when) - keys
        if unknown:
            raise UserError(f"rule {rule.id} tests unknown answers {sorted(unknown)}", str(path), f"answers are {', '.join(sorted(keys))}")
        if sum(bool(x) for x in (rule.need, rule.block, rule.caution, rule.next_step, rule.plan)) != 1:
            raise UserError(f"rule {rule.id} must have exactly one of need, block, caution, next_step, plan", str(path))
        if rule.plan and (set(rule.plan) - set(OBJECTIVES) or len(rule.trains_on) != len(rule.plan)
                          or len(rule.data_files) not in (0, len(rule.plan)) or not rule.reason):
            raise UserError(f"rule {rule.id}: plan must list objectives ({', '.join(OBJECTIVES)}) with one trains_on each, and a reason",
                            str(path))
        rules.append(rule)
    method = data.get("method", {})
    distributed = data.get("distributed", {})
    unknown = set(distributed) - set(DistributedRules.__dataclass_fields__)
    if unknown or distributed.get("fits_one", "ddp") not in ("ddp", "one"):
        raise UserError(f"[distributed] has unknown keys {sorted(unknown)} or fits_one other than \"ddp\" or \"one\"", str(path),
                        f"its keys are {', '.join(DistributedRules.__dataclass_fields__)}")
    return WizardSpec(questions, tuple(rules), int(method.get("full_min_examples", 10000)), int(method.get("batch_size", 1)),
                      bool(method.get("gradient_checkpointing", True)), DistributedRules(**distributed))


def validate_answers(raw: dict[str, Any], spec: WizardSpec, source: str = "answers", text: str | None = None) -> dict[str, Any]:
    """Answers with defaults filled in; unknown keys, wrong types and bad values raise a one-line UserError."""
    def where(key: str) -> str:
        line = key_line(text, key) if text else None
        return f"{source}:{line}" if line else source

    known = {q.key: q for q in spec.questions}
    for key in raw:
        if key not in known:
            raise UserError(f"unknown answer {key!r}{did_you_mean(key, known)}", where(key), f"answers are {', '.join(known)}")
    answers: dict[str, Any] = {}
    for q in spec.questions:
        if q.key not in raw:
            answers[q.key] = q.default
            continue
        value = raw[q.key]
        bad = lambda expected: UserError(f"{q.key} must be {expected}, got {value!r}", where(q.key), q.help)  # noqa: E731
        if q.kind == "choice":
            if value not in q.choices:
                raise UserError(f"{q.key} must be one of {', '.join(q.choices)}; got {value!r}{did_you_mean(str(value), q.choices)}", where(q.key), q.help)
        elif q.kind == "bool":
            if not isinstance(value, bool):
                raise bad("true or false")
        elif q.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad("a whole number")
        elif q.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad("a number")
            value = float(value)
        elif not isinstance(value, str):
            raise bad("a string")
        if q.min is not None and value < q.min or q.max is not None and value > q.max:
            raise bad(f"between {q.min:g} and {q.max:g}" if q.max is not None else f"at least {q.min:g}")
        answers[q.key] = value
    return answers


def load_answers(path: Path, spec: WizardSpec | None = None) -> dict[str, Any]:
    """Read and validate an answers TOML file."""
    data, text = load_toml_file(path)
    return validate_answers(data, spec or load_spec(), str(path), text)


def _holds(condition: Any, value: Any) -> bool:
    if value is None:
        return False
    if isinstance(condition, dict):
        return all({"lt": value < bound, "lte": value <= bound, "gt": value > bound, "gte": value >= bound}[op]
                   for op, bound in condition.items())
    if isinstance(condition, list):
        return value in condition
    return value == condition


def _describe_trigger(rule: Rule, answers: dict[str, Any]) -> str:
    parts = []
    for key in rule.when:
        value = answers[key]
        shown = str(value).lower() if isinstance(value, bool) else value
        parts.append(f"{key} = {shown}")
    return ", ".join(parts)


def _next_steps(approach: str, method: str | None, model: str | None, stages: tuple[TrainingStage, ...] = (),
                gpus: int = 1, strategy: str = "") -> list[str]:
    steps = []
    if approach == "icl":
        steps += ["write a system prompt and 5-20 of your best examples into it", "measure it on 50+ held-out cases before changing anything"]
    if "rag" in approach:
        steps += ["index the documents (chunk, embed, store) and measure retrieval: does the right passage come back for 50 real questions?",
                  "put the retrieved passages in the prompt and ask for answers that cite them"]
    if "finetune" in approach:
        steps += ["curate the examples: sft-tui data inspect / dedup / select (quality beats quantity)",
                  "hold out 10% of them to compare the tuned model with the base model"]
        if model and method:
            steps.append(f"check the run fits: sft-tui estimate {model} --method {method}"
                         + (f" --gpus {gpus} --strategy {strategy}" if gpus > 1 else "")
                         + "".join(f" (stage {n}: add --objective {s.objective})" for n, s in enumerate(stages[1:], 2)))
        steps.append("write the run config (--config-out run.toml) and start it: sft-tui train run.toml"
                     + (f" (stage 1, {stages[0].objective.upper()})" if len(stages) > 1 else ""))
        for number, stage in enumerate(stages[1:], 2):
            steps.append(f"when stage {number - 1} has finished, stage {number}: {stage.objective.upper()} on {stage.trains_on}, "
                         "starting from it (the run config's header has the command)")
    return steps


# the optimizer each method is estimated with, and written into the starter config when the wizard sized it:
# 8-bit AdamW makes full fine-tuning fit far more often; paged 8-bit AdamW is QLoRA's (Dettmers et al., 2023)
METHOD_OPTIMIZER = {"full": "adamw_8bit", "lora": "adamw_torch", "qlora": "paged_adamw_8bit"}


def method_optimizer(method: str, strategy: str = "") -> str:
    """The optimizer `method` is estimated and written with: under FSDP the one the trainer runs there (sharding.runs_as)."""
    from sft_tui.core.estimate.sharding import runs_as

    return runs_as(METHOD_OPTIMIZER[method], strategy == "fsdp")


@dataclass(frozen=True)
class MethodChoice:
    """What choose_method decided: the method and model, the steps that led there, stage 1's estimate, and the GPUs used."""

    method: str
    model: str | None
    steps: tuple[MethodStep, ...]
    estimate: dict | None
    gpus: int = 1
    strategy: str = ""  # "" on one GPU, else ddp | fsdp


def choose_method(answers: dict[str, Any], spec: WizardSpec, gpu_gib: float | None, reasons: list[str],
                  stages: tuple[TrainingStage, ...] = (), gpu_count: int = 1) -> MethodChoice:
    """The method, checked by the estimator: full -> lora -> qlora -> smaller model, each placed on the GPUs before the next.

    `gpu_gib` is one GPU's memory and `gpu_count` how many there are. A method one GPU
    holds runs there, or as a copy per GPU (DDP) when there are several and wizard.toml's
    `fits_one` says so; one that one GPU does not hold is sharded over all of them (FSDP)
    when its per-GPU peak fits, before a lossier method is tried. A method fits when every
    stage of the plan fits: DPO runs both answers of a pair and a reference forward, so
    stage 2 can need more memory than the SFT stage. The estimate returned is stage 1's
    (the run config written), per GPU.
    """
    from sft_tui.core.estimate.fit import GpuTarget, build_estimate, smaller_models
    from sft_tui.core.estimate.memory import TrainSettings, estimate_memory
    from sft_tui.core.models.modelspec import resolve_model

    rules = spec.distributed
    gpus = max(1, gpu_count)
    full_allowed = answers["labeled_examples"] >= spec.full_min_examples and not answers["keep_general_abilities"]
    if full_allowed:
        reasons.append(f"labeled_examples = {answers['labeled_examples']}, keep_general_abilities = false: full fine-tuning is worth considering")
    model = answers.get("model")
    if not model or not gpu_gib:
        method = "full" if full_allowed else "lora"
        missing = "model = (not given)" if not model else "gpu_gib = (not given, no GPU detected)"
        reasons.append(f"{missing}: {method} by default ({'plenty of data and forgetting acceptable' if full_allowed else 'parameter-efficient first'}); the fit was not checked"
                       + (f", nor how it spreads over {gpus} GPUs" if gpus > 1 else ""))
        return MethodChoice(method, model, (), None)
    spec_model = resolve_model(model)
    base = TrainSettings(seq_len=answers["seq_len"], batch_size=spec.batch_size, gradient_checkpointing=spec.gradient_checkpointing,
                         lora_dropout=0.05)
    steps: list[MethodStep] = []
    order = (["full"] if full_allowed else []) + ["lora", "qlora"]
    stages = stages or (TrainingStage("sft", "the examples", "base"),)
    answered = f"model = {model}, gpu_gib = {gpu_gib:g}" + (f", gpu_count = {gpus}" if gpus > 1 else "")

    def stage_settings(settings: TrainSettings, stage: TrainingStage) -> TrainSettings:  # a later stage trains on from an adapter
        return replace(settings, objective=stage.objective, reference_adapter=stage.start_from == "previous" and settings.method != "full")

    def heaviest(model_spec, settings: TrainSettings) -> tuple[float, TrainingStage]:
        return max(((estimate_memory(model_spec, stage_settings(settings, s)).peak_gib, s) for s in stages), key=lambda x: x[0])

    def step(method: str, settings: TrainSettings, strategy: str = "") -> tuple[MethodStep, TrainingStage | None]:
        """Estimate `method` on one GPU (strategy "") or on all of them with `strategy`; a combination the libraries refuse does not fit."""
        where = f", {strategy.upper()} on {gpus} GPUs" if strategy else ""
        try:
            peak, stage = heaviest(spec_model, placed(settings, strategy))
        except UserError as exc:  # e.g. QLoRA with FSDP where peft/bitsandbytes do not support it
            return MethodStep(method, model, None, False, f"{method} on {model}{where}: {exc.what}", gpus if strategy else 1, strategy), None
        which = f" ({stage.objective.upper()} stage)" if len(stages) > 1 else ""
        per = " per GPU" if strategy else ""
        return MethodStep(method, model, round(peak, 2), peak <= gpu_gib, f"{method} on {model}{where}: {peak:.1f} GiB{per} of {gpu_gib:g} GiB{which}",
                          gpus if strategy else 1, strategy), stage

    def placed(settings: TrainSettings, strategy: str) -> TrainSettings:
        """`settings` on all the GPUs with `strategy` ("" = one GPU), with the optimizer that runs there."""
        if not strategy:
            return settings
        return replace(settings, gpus=gpus, strategy=strategy, optimizer=method_optimizer(settings.method, strategy))

    def chosen(method: str, settings: TrainSettings, strategy: str, stage: TrainingStage) -> MethodChoice:
        heavy = f", its {stage.objective.upper()} stage" if len(stages) > 1 else ""
        last = steps[-1]
        tried = [s for s in steps[:-1] if s.method != method or s.strategy]  # what did not fit before this
        failed = "; " + ", ".join(f"{s.method}{f' ({s.strategy.upper()})' if s.strategy else ''}" for s in tried) + \
            f" did not ({', '.join(f'{s.peak_gib:.1f}' if s.peak_gib is not None else 'unsupported' for s in tried)} GiB)" if tried else ""
        if strategy == "fsdp":
            single = next(s for s in steps if s.method == method and not s.strategy)
            reasons.append(f"{answered}: {method} does not fit one GPU ({single.peak_gib:.1f} GiB) but fits with FSDP on {gpus} GPUs: "
                           f"{last.peak_gib:.1f} GiB per GPU{heavy}; " + rules.fsdp_reason.format(gpus=gpus) + failed)
            if method == "lora" and rules.fsdp_over_qlora:
                reasons.append(rules.fsdp_over_qlora.format(gpus=gpus))
        elif strategy == "ddp":
            single = next(s for s in steps if s.method == method and not s.strategy)
            reasons.append(f"{answered}: {method} fits one GPU ({single.peak_gib:.1f} GiB; {last.peak_gib:.1f} GiB per GPU with DDP{heavy}){failed}; "
                           + rules.ddp_reason.format(gpus=gpus))
        else:
            reasons.append(f"{answered}: {method} fits ({last.peak_gib:.1f} GiB peak{heavy}){failed}"
                           + (f"; {rules.one_reason.format(gpus=gpus)}" if gpus > 1 and rules.one_reason else ""))
        label = f"{gpu_gib:g} GiB GPU" + (f" x {gpus}" if strategy else "")
        estimate = build_estimate(spec_model, placed(settings, strategy), GpuTarget(label, gpu_gib, None, "wizard")).to_json()
        return MethodChoice(method, model, tuple(steps), estimate, gpus if strategy else 1, strategy)

    for method in order:
        settings = TrainSettings(**{**base.__dict__, "method": method, "optimizer": METHOD_OPTIMIZER[method]})
        single, stage = step(method, settings)
        steps.append(single)
        if single.fits:
            if gpus > 1 and rules.fits_one == "ddp":
                copies, copies_stage = step(method, settings, "ddp")
                steps.append(copies)
                if copies.fits:
                    return chosen(method, settings, "ddp", copies_stage)
                steps.pop()  # DDP's gradient buckets tip it over: one GPU, as if there were one
            return chosen(method, settings, "", stage)
        if gpus > 1:
            sharded, sharded_stage = step(method, settings, "fsdp")
            steps.append(sharded)
            if sharded.fits:
                return chosen(method, settings, "fsdp", sharded_stage)
    qlora = TrainSettings(**{**base.__dict__, "method": "qlora", "optimizer": METHOD_OPTIMIZER["qlora"]})
    heavy_stage = heaviest(spec_model, qlora)[1]
    heavy = f", its {heavy_stage.objective.upper()} stage" if len(stages) > 1 else ""
    qlora_single = next(s for s in steps if s.method == "qlora" and not s.strategy)
    on_all = f" on one GPU or with FSDP on {gpus}" if gpus > 1 else ""
    smaller = smaller_models(spec_model, stage_settings(qlora, heavy_stage), gpu_gib)
    if not smaller:
        reasons.append(f"{answered}: not even QLoRA fits{on_all} ({qlora_single.peak_gib:.1f} GiB) and no smaller preset does")
        return MethodChoice("qlora", model, tuple(steps), None)
    pick = smaller[0]
    steps.append(MethodStep("qlora", pick.model, round(pick.peak_gib, 2), True, f"qlora on {pick.model}: {pick.peak_gib:.1f} GiB"))
    reasons.append(f"{answered}: not even QLoRA fits{on_all} ({qlora_single.peak_gib:.1f} GiB); "
                   f"the largest smaller preset that fits is {pick.model} ({pick.peak_gib:.1f} GiB with QLoRA{heavy})")
    estimate = build_estimate(resolve_model(pick.model), qlora, GpuTarget(f"{gpu_gib:g} GiB GPU", gpu_gib, None, "wizard")).to_json()
    return MethodChoice("qlora", pick.model, tuple(steps), estimate)


def detected_box(memories_gib: Sequence[float]) -> tuple[float | None, int]:
    """(one GPU's memory, how many GPUs like it) from the memory of each GPU detected, in index order.

    GPU0 sets the size (as `sft-tui train` and the estimator take it); a multi-GPU run is
    only as roomy as its smallest GPU, so only the GPUs of GPU0's size (to 1 GiB) count.
    """
    if not memories_gib:
        return None, 0
    first = memories_gib[0]
    return first, sum(1 for m in memories_gib if abs(m - first) < 1.0)


def gpus_to_use(answers: dict[str, Any], detected_gpu_count: int | None = None) -> int:
    """How many GPUs the method is placed on: gpu_count answered, else the detected ones when gpu_gib was not answered
    either (an answered GPU may be another machine's), else 1."""
    if answers.get("gpu_count"):
        return int(answers["gpu_count"])
    return max(1, detected_gpu_count or 1) if answers.get("gpu_gib") is None else 1


def recommend(answers: dict[str, Any], spec: WizardSpec | None = None, detected_gpu_gib: float | None = None,
              detected_gpu_count: int | None = None) -> Recommendation:
    """Fire the rules on validated answers and turn them into a recommendation.

    `detected_gpu_gib` and `detected_gpu_count` are this box's GPUs (NVML), used where the
    answers leave gpu_gib (and gpu_count) empty.
    """
    spec = spec or load_spec()
    needs: dict[str, list[str]] = {"rag": [], "finetune": []}
    blocks: dict[str, list[str]] = {"finetune": []}
    cautions, next_steps, fired = [], [], []
    later: list[Rule] = []  # plan rules and finetune_only ones: they count once fine-tuning is decided
    for rule in spec.rules:
        if not all(_holds(condition, answers.get(key)) for key, condition in rule.when.items()):
            continue
        if rule.plan or rule.finetune_only:
            later.append(rule)
            continue
        fired.append(rule.id)
        trigger = _describe_trigger(rule, answers)
        if rule.need:
            needs[rule.need].append(f"{trigger}: {rule.reason}")
        elif rule.block:
            blocks[rule.block].append(f"{trigger}: not fine-tuning: {rule.reason}")
        elif rule.caution:
            cautions.append(rule.caution)
        else:
            next_steps.append(rule.next_step)
    finetune = bool(needs["finetune"]) and not blocks["finetune"]
    rag = bool(needs["rag"])
    approach = "rag+finetune" if rag and finetune else "rag" if rag else "finetune" if finetune else "icl"
    reasons = list(needs["rag"])
    reasons += needs["finetune"] if finetune else []
    reasons += blocks["finetune"]
    if approach == "icl":
        reasons.append("so: prompting with in-context examples, the simplest approach that can work"
                       if blocks["finetune"] else "nothing calls for retrieval or fine-tuning: start simple with prompting and in-context examples")
    method = model = estimate = gpu_gib = None
    gpu_count = gpus_to_use(answers, detected_gpu_count)
    choice = MethodChoice("", None, (), None)
    steps: tuple[MethodStep, ...] = ()
    stages: tuple[TrainingStage, ...] = ()
    if finetune:
        stages = _plan(answers, [r for r in later if r.plan], reasons, fired)
        for rule in (r for r in later if not r.plan):
            fired.append(rule.id)
            (cautions if rule.caution else next_steps).append(rule.caution or rule.next_step)
        gpu_gib = answers.get("gpu_gib") or detected_gpu_gib
        choice = choose_method(answers, spec, gpu_gib, reasons, stages, gpu_count)
        method, model, steps, estimate = choice.method, choice.model, choice.steps, choice.estimate
        caution = {"fsdp": spec.distributed.fsdp_caution, "ddp": spec.distributed.ddp_caution}.get(choice.strategy)
        if caution:
            cautions.append(caution.format(gpus=choice.gpus))
        if method == "full":
            cautions.append("full fine-tuning can win on the target task but loses general abilities (catastrophic forgetting) and needs far more memory")
            if len(stages) > 1:
                cautions.append(f"full fine-tuning leaves a model, not an adapter: stage 2 starts from stage 1's model folder, and "
                                f"{stages[-1].objective.upper()} keeps a frozen copy of it as its reference (the weights' memory twice)")
    else:
        model = answers.get("model")
    next_steps = _next_steps(approach, method, model, stages, choice.gpus, choice.strategy) + next_steps
    return Recommendation(approach, method, tuple(reasons), tuple(dict.fromkeys(cautions)), tuple(dict.fromkeys(next_steps)),
                          estimate, model, steps, tuple(fired), gpu_gib, stages, choice.gpus, choice.strategy, gpu_count)


def _plan(answers: dict[str, Any], plan_rules: list[Rule], reasons: list[str], fired: list[str]) -> tuple[TrainingStage, ...]:
    """The training stages from the first plan rule that fired (SFT on the examples when none did); its reason joins the why."""
    if not plan_rules:
        return (TrainingStage("sft", "the examples", "base"),)
    rule = plan_rules[0]
    fired.append(rule.id)
    reasons.append(f"{_describe_trigger(rule, answers)}: {rule.reason}")
    files = rule.data_files or ("data",) * len(rule.plan)
    return tuple(TrainingStage(objective, data, "base" if i == 0 else "previous", file)
                 for i, (objective, data, file) in enumerate(zip(rule.plan, rule.trains_on, files)))


def decision_record(answers: dict[str, Any], rec: Recommendation, spec: WizardSpec | None = None) -> str:
    """A Markdown decision record a team can commit: answers, outcome, reasons, cautions, next steps, estimate."""
    spec = spec or load_spec()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    outcome = rec.outcome()
    lines = [f"# Adaptation decision: {outcome}", "", f"Made with `sft-tui wizard` on {stamp}.", "", "## Answers", "",
             "| question | answer |", "| --- | --- |"]
    for q in spec.questions:
        value = answers.get(q.key)
        lines.append(f"| {q.text} | {'-' if value is None else str(value).lower() if isinstance(value, bool) else value} |")
    lines += ["", "## Recommendation", "", f"**{outcome}**", "", "## Why", ""] + [f"- {r}" for r in rec.reasons]
    if len(rec.stages) > 1:
        lines += ["", "## Training plan", ""] + [f"{i}. {s.describe(i, rec.method)}" for i, s in enumerate(rec.stages, 1)]
    if rec.method_steps:
        lines += ["", "## Method, checked against memory", ""] + [f"- {s.note}{'' if s.fits else ' (does not fit)'}" for s in rec.method_steps]
    if rec.cautions:
        lines += ["", "## Cautions", ""] + [f"- {c}" for c in rec.cautions]
    lines += ["", "## Next steps", ""] + [f"{i}. {s}" for i, s in enumerate(rec.next_steps, 1)]
    if rec.estimate:
        e = rec.estimate
        lines += ["", "## Memory estimate", "", f"{e['model']}, {e['method']}, seq {e['seq_len']}, micro-batch {e['batch_size']}: "
                  f"peak {e['peak_gib']:.1f} GiB" + (f" per GPU, {rec.placement()} of {e['gpu_gib']:g} GiB each." if rec.gpus > 1
                                                   else f" on a {e['gpu_gib']:g} GiB GPU."), ""]
        lines += [f"- {t['key']}: {t['gib']:.2f} GiB ({t['explanation']})" for t in e["terms"]]
    return "\n".join(lines) + "\n"


def render_recommendation(rec: Recommendation) -> str:
    """The readable recommendation."""
    lines = [f"recommendation: {rec.outcome()}", "", "why:"] + [f"  - {r}" for r in rec.reasons]
    if len(rec.stages) > 1:
        lines += ["", "training plan:"] + [f"  {i}. {s.describe(i, rec.method)}" for i, s in enumerate(rec.stages, 1)]
    if rec.method_steps:
        lines += ["", "memory check:"] + [f"  {'fits' if s.fits else 'no  '}  {s.note}" for s in rec.method_steps]
    if rec.cautions:
        lines += ["", "cautions:"] + [f"  - {c}" for c in rec.cautions]
    lines += ["", "next steps:"] + [f"  {i}. {s}" for i, s in enumerate(rec.next_steps, 1)]
    return "\n".join(lines) + "\n"


def parse_answer(question: Question, text: str) -> Any:
    """A typed answer from what a person typed (yes/no, numbers, text, a choice or its number); ValueError when it does not parse."""
    if question.kind == "choice" and text.isdigit() and 1 <= int(text) <= len(question.choices):
        return question.choices[int(text) - 1]
    if question.kind == "bool":
        if text.lower() in ("y", "yes", "true", "1"):
            return True
        if text.lower() in ("n", "no", "false", "0"):
            return False
        raise ValueError("answer yes or no")
    if question.kind == "int":
        return int(text)
    if question.kind == "float":
        return float(text)
    return text
