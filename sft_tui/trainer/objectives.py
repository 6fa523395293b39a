"""One TRL trainer per objective: SFT, DPO, KTO (trl) and ORPO (trl.experimental), built from the same arguments.

train.py builds everything the objectives share (schedule, precision, saving, logging) and
this module adds what each one needs: its config class, its data columns and its knobs
(beta, loss variant). The reference model of DPO and KTO is never a second copy under
LoRA: TRL disables the adapter for the reference forward (or, training on from an SFT
adapter, keeps a frozen "ref" copy of that adapter, a few MiB); full fine-tuning gets a
frozen copy of the whole model, which the estimator counts.
"""

from __future__ import annotations

from pathlib import Path

from sft_tui.core.config.schema import RunConfig
from sft_tui.core.data.batching import BatchingPlan
from sft_tui.core.data.formats import DataError, Example
from sft_tui.core.data.preference import load_for_objective, unpair
from sft_tui.trainer.dataset import DataReport, hold_out

# TRL's logged metric names that belong to the objective (train rows carry them in objective_metrics)
OBJECTIVE_METRIC_PREFIXES = ("rewards/", "logps/", "kl", "log_odds", "nll_loss")


def objective_metrics(logs: dict, eval_row: bool = False) -> dict[str, float]:
    """The objective's own metrics from one TRL log dict (eval_ prefixes dropped): rewards, margins, accuracies, KL."""
    out = {}
    for key, value in logs.items():
        name = key[len("eval_"):] if eval_row and key.startswith("eval_") else key
        if (eval_row and not key.startswith("eval_")) or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if name.startswith(OBJECTIVE_METRIC_PREFIXES):
            out[name] = round(float(value), 6)
    return out


def _messages(example: Example) -> list[dict]:
    return [{"role": t.role, "content": t.content} for t in example.turns]


def preference_row(example: Example, objective: str) -> dict:
    """One TRL row: conversational prompt/chosen/rejected (DPO, ORPO) or prompt/completion/label (KTO)."""
    if example.text is not None:
        raise DataError("a text row has no prompt to prefer answers for", example.where,
                        "use conversations, prompt/completion, or prompt/chosen/rejected rows")
    if example.tools or any(t.tool_calls or t.role == "tool" for t in example.turns):
        # the rows below carry role/content only: the calls would be dropped without a word
        raise DataError("preference tuning on tool-calling rows is not supported yet", example.where,
                        "train tool calling with method.objective = 'sft'")
    if objective == "kto":
        if example.completion is not None:
            return {"prompt": example.prompt, "completion": example.completion, "label": bool(example.label)}
        turns = _messages(example)
        return {"prompt": turns[:-1], "completion": turns[-1:], "label": bool(example.label)}
    turns = _messages(example)
    return {"prompt": turns[:-1], "chosen": turns[-1:], "rejected": [{"role": "assistant", "content": example.rejected or ""}]}


def split_preference_examples(config: RunConfig) -> tuple[str, list[Example], list[Example], tuple, tuple[str, ...]]:
    """(format, train, eval, skipped, notes) for a dpo/kto/orpo run.

    KTO on pairs splits the pairs first and then unpairs each side, so a pair's chosen and
    rejected answers never land on both sides of the split.
    """
    objective = config.method.objective
    read_as = "dpo" if objective == "kto" else objective
    path = Path(config.data.train)
    try:
        loaded = load_for_objective(path, config.data.format, read_as)
    except DataError:
        if objective != "kto":
            raise
        loaded = load_for_objective(path, config.data.format, "kto")  # labelled rows: read as they are
        read_as = "kto"
    examples, skipped, notes = list(loaded.examples), loaded.skipped, list(loaded.notes)
    if config.data.eval:
        held = load_for_objective(Path(config.data.eval), config.data.format, read_as)
        train, evaluation, skipped = examples, list(held.examples), skipped + held.skipped
    else:
        train, evaluation = hold_out(examples, config.data.eval_fraction, config.training.seed)
    if objective == "kto" and read_as == "dpo":
        pairs = len(train)
        train = [row for e in train for row in unpair(e)]
        evaluation = [row for e in evaluation for row in unpair(e)]
        notes.append(f"{path.name}: {pairs} training pairs read as {len(train)} KTO rows (chosen desirable, rejected undesirable)")
    return loaded.format, train, evaluation, skipped, tuple(notes)


def count_truncated(rows: list[dict], tokenizer, max_length: int) -> int:
    """Preference rows whose prompt plus longest answer is longer than max_length tokens (TRL truncates them)."""
    count = 0
    for row in rows:
        answers = [row[k] for k in ("chosen", "rejected", "completion") if k in row]
        for answer in answers:
            if isinstance(row["prompt"], str):
                text = row["prompt"] + answer
            else:
                text = tokenizer.apply_chat_template(row["prompt"] + answer, tokenize=False)
            if len(tokenizer(text, add_special_tokens=False)["input_ids"]) > max_length:
                count += 1
                break
    return count


def build_preference_datasets(config: RunConfig, tokenizer):
    """(train Dataset, eval Dataset or None, DataReport) in the columns the objective's TRL trainer reads."""
    from datasets import Dataset

    objective = config.method.objective
    fmt, train, evaluation, skipped, notes = split_preference_examples(config)
    train_rows = [preference_row(e, objective) for e in train]
    eval_rows = [preference_row(e, objective) for e in evaluation]
    if objective == "kto":
        for side, rows in (("training", train_rows), ("eval", eval_rows)):
            labels = {row["label"] for row in rows}
            if rows and len(labels) == 1:
                which = "desirable" if labels == {True} else "undesirable"
                raise DataError(f"every {side} row is labelled {which}: KTO needs some of each", config.data.train,
                                "add rows of the other label, or use method.objective = 'sft' for examples of good answers")
    truncated = count_truncated(train_rows, tokenizer, config.training.max_seq_length)
    report = DataReport(fmt, len(train_rows), len(eval_rows), tuple(skipped), truncated, notes)
    return Dataset.from_list(train_rows), (Dataset.from_list(eval_rows) if eval_rows else None), report


def build_trainer(config: RunConfig, model, tokenizer, train_ds, eval_ds, common: dict, peft_config, callbacks: list,
                  batching: BatchingPlan | None = None):
    """The TRL trainer for config.method.objective, with the shared TrainingArguments fields in `common`.

    `batching` (core/data/batching.py) sets SFT's packing and sampler; the preference
    trainers always pad their pairs.
    """
    objective = config.method.objective
    method = config.method
    max_length = config.training.max_seq_length
    if objective == "sft":
        from trl import SFTConfig, SFTTrainer

        from sft_tui.trainer.samplers import seeded_grouping

        batch_args = (batching or BatchingPlan("padded", "")).trainer_args()
        args = SFTConfig(**common, **batch_args, max_length=max_length, completion_only_loss=config.data.completion_only_loss)
        return seeded_grouping(SFTTrainer)(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
                          peft_config=peft_config, callbacks=callbacks)
    if objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        losses, weights = [method.loss_type or "sigmoid"], None
        if method.sft_weight > 0:  # TRL's multi-loss form: the preference loss plus a weighted NLL on the chosen answers
            losses, weights = losses + ["sft"], [1.0, method.sft_weight]
        args = DPOConfig(**common, max_length=max_length, beta=method.beta, loss_type=losses, loss_weights=weights)
        return DPOTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
                          peft_config=peft_config, callbacks=callbacks)
    if objective == "kto":
        from trl import KTOConfig, KTOTrainer

        args = KTOConfig(**common, max_length=max_length, beta=method.beta, loss_type=method.loss_type or "kto")
        return KTOTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
                          peft_config=peft_config, callbacks=callbacks)
    if objective == "orpo":
        import warnings

        with warnings.catch_warnings():  # "experimental" is TRL's word for where ORPO lives now; the README says so once
            warnings.simplefilter("ignore")
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer
        # ORPO's batches have no plain input_ids (chosen_/rejected_ ones), so transformers cannot count tokens:
        # without this it warns on every step; and its collator needs the raw columns kept
        common = {**common, "include_num_input_tokens_seen": False, "remove_unused_columns": False}
        args = ORPOConfig(**common, max_length=max_length, beta=method.beta)
        return ORPOTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
                           peft_config=peft_config, callbacks=callbacks)
    raise ValueError(objective)  # pragma: no cover - the schema allows only the four
