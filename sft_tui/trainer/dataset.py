"""From normalised examples (core.data) to the rows TRL's SFTTrainer trains on, plus the data report.

Conversations become TRL's conversational prompt/completion: everything before the last
assistant turn is the prompt, that turn is the completion. With completion_only_loss
(the default) the loss then covers only the answer, and the chat template closes it with
the end-of-turn token, so the model learns to stop.

Tool-calling conversations (any row that declares tools or calls one) are tokenized here
instead (tool_rows.py): the tools go to the chat template, the loss covers every assistant
turn (each call and the answer) but not the user or the tool results, and a template that
cannot show tools stops the run with the fix.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from sft_tui.core.config.schema import RunConfig
from sft_tui.core.data.formats import DataError, Example, load_examples, uses_tools


@dataclass(frozen=True)
class DataReport:
    """What the run trains and evaluates on."""

    format: str
    train_rows: int
    eval_rows: int
    skipped: tuple[tuple[str, str], ...]
    truncated: int  # training examples longer than max_seq_length
    notes: tuple[str, ...] = ()  # what train.log should say about how the rows are used
    lengths: tuple[int, ...] = ()  # training rows' token counts (before truncation): how much random batches would pad


def to_trl_row(example: Example) -> dict:
    """One TRL row: conversational prompt/completion, plain prompt/completion, or text."""
    if example.text is not None:
        return {"text": example.text}
    if example.completion is not None:
        return {"prompt": example.prompt, "completion": example.completion}
    turns = [{"role": t.role, "content": t.content} for t in example.turns]
    return {"prompt": turns[:-1], "completion": turns[-1:]}


def split_examples(config: RunConfig) -> tuple[str, list[Example], list[Example], tuple]:
    """(format, train, eval, skipped): the eval file, or a seeded eval_fraction of the training rows."""
    loaded = load_examples(Path(config.data.train), config.data.format)
    train, skipped = list(loaded.examples), loaded.skipped
    if config.data.eval:
        evaluation = load_examples(Path(config.data.eval), config.data.format)
        return loaded.format, train, list(evaluation.examples), skipped + evaluation.skipped
    kept, held = hold_out(train, config.data.eval_fraction, config.training.seed)
    return loaded.format, kept, held, skipped


def hold_out(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, eval): a seeded `fraction` of the examples held out, the same split for every objective and for eval."""
    count = int(len(examples) * fraction)
    if count == 0:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]


def token_lengths(examples: list[Example], tokenizer) -> tuple[int, ...]:
    """Each example's length in tokens once formatted as the trainer formats it."""
    lengths = []
    for example in examples:
        row = to_trl_row(example)
        if "text" in row:
            length = len(tokenizer(row["text"])["input_ids"])
        elif isinstance(row["prompt"], str):
            length = len(tokenizer(row["prompt"] + row["completion"])["input_ids"])
        else:
            text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
            length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        lengths.append(length)
    return tuple(lengths)


def build_datasets(config: RunConfig, tokenizer):
    """(train Dataset, eval Dataset or None, DataReport)."""
    from datasets import Dataset

    fmt, train, evaluation, skipped = split_examples(config)
    if any(uses_tools(e) for e in train + evaluation):
        return _tool_datasets(config, tokenizer, fmt, train, evaluation, skipped)
    lengths = token_lengths(train, tokenizer)
    truncated = sum(n > config.training.max_seq_length for n in lengths)
    report = DataReport(fmt, len(train), len(evaluation), skipped, truncated, lengths=lengths)
    train_ds = Dataset.from_list([to_trl_row(e) for e in train])
    eval_ds = Dataset.from_list([to_trl_row(e) for e in evaluation]) if evaluation else None
    return train_ds, eval_ds, report


def _tool_datasets(config: RunConfig, tokenizer, fmt: str, train: list[Example], evaluation: list[Example], skipped: tuple):
    """build_datasets for tool-calling rows: token ids and loss masks made here, the template checked first."""
    from datasets import Dataset

    from sft_tui.trainer.tool_rows import check_tool_template, tokenized_rows

    check_tool_template(tokenizer, config.model.name)
    train_rows = [row for e in train for row in tokenized_rows(e, tokenizer)]
    eval_rows = [row for e in evaluation for row in tokenized_rows(e, tokenizer)]
    limit = config.training.max_seq_length
    truncated = sum(len(row["input_ids"]) > limit for row in train_rows)
    # a row cut before its first answer token has nothing to learn: TRL drops it, and with none left it fails unreadably
    answerless = [row for row in train_rows if 1 not in row["completion_mask"][:limit]]
    if train_rows and len(answerless) == len(train_rows):
        shortest = min(row["completion_mask"].index(1) + 1 for row in train_rows if 1 in row["completion_mask"])
        raise DataError(f"every training row is cut at training.max_seq_length = {limit} tokens before its first answer token "
                        f"(the tool definitions and the prompt alone are longer)", config.data.train,
                        f"raise training.max_seq_length to at least {shortest} (better: the longest row's length)")
    calls = sum(len(t.tool_calls) for e in train for t in e.turns)
    note = (f"tool-calling rows: {calls} tool calls in {len(train)} conversations; the loss covers every call and answer "
            f"the assistant makes, not the tool results or the user" + (f" ({len(train_rows)} sequences)" if len(train_rows) != len(train) else ""))
    cut = (f"{len(answerless)} of {len(train_rows)} training sequences are cut at {limit} tokens before their first "
           f"answer token and teach nothing: raise training.max_seq_length")
    notes = (note, cut) if answerless else (note,)
    report = DataReport(fmt, len(train_rows), len(eval_rows), skipped, truncated, notes, tuple(len(r["input_ids"]) for r in train_rows))
    return Dataset.from_list(train_rows), (Dataset.from_list(eval_rows) if eval_rows else None), report
