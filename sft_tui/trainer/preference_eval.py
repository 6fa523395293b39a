"""Preference accuracy for `sft-tui eval`: the likelihood each model gives held-out chosen, rejected, good and bad answers.

Which rows: a dpo/orpo/kto run's own held-out rows come from the split its training used
(trainer.objectives.split_preference_examples: same file, same seed, same fraction), so no
held-out pair was a training pair. The measures themselves are core.evaluate.preference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sft_tui.core.config.schema import RunConfig
from sft_tui.core.data.formats import Example
from sft_tui.core.evaluate.preference import AnswerLikelihood, PairLikelihoods
from sft_tui.trainer.eval_tokens import answer_ids, conversation, eval_prompt


@dataclass(frozen=True)
class PreferenceRows:
    """Held-out rows to score: 'pairs' (each with .rejected) or 'labelled' (each with .label), and their token ids."""

    kind: str
    examples: list[Example]
    sequences: list[tuple[tuple[list[int], int], ...]]  # per row: (chosen, rejected) or (answer,): (ids, answer start)


def preference_kind(examples: list[Example]) -> str | None:
    """'pairs' when every row has a rejected answer, 'labelled' when rows carry good/bad labels, else None."""
    if examples and all(e.rejected is not None for e in examples):
        return "pairs"
    if any(e.label is not None for e in examples):
        return "labelled"
    return None


def held_out_preference_rows(config: RunConfig) -> list[Example]:
    """A preference run's eval rows, split exactly as its training split them."""
    from sft_tui.trainer.objectives import split_preference_examples

    return split_preference_examples(config)[2]


def tokenise_rows(tokenizer, examples: list[Example]) -> PreferenceRows | None:
    """The rows' answers as token ids (None when the rows are neither pairs nor labelled)."""
    kind = preference_kind(examples)
    if kind is None:
        return None
    rows = [e for e in examples if kind == "pairs" or e.label is not None]
    sequences = []
    for example in rows:
        prompt = eval_prompt(example)
        if example.completion is not None:  # a raw prompt/completion row (labelled)
            sequences.append((answer_ids(tokenizer, prompt, example.completion),))
            continue
        answer = conversation(example)[-1]
        if kind == "pairs":
            sequences.append((answer_ids(tokenizer, prompt, answer), answer_ids(tokenizer, prompt, {"role": "assistant", "content": example.rejected})))
        else:
            sequences.append((answer_ids(tokenizer, prompt, answer),))
    return PreferenceRows(kind, rows, sequences)


@torch.inference_mode()
def answer_likelihoods(model, device: str, sequences: list[tuple[list[int], int]], max_length: int) -> list[AnswerLikelihood | None]:
    """The summed log-probability of each sequence's answer tokens (from its start position); None when truncation leaves none."""
    out: list[AnswerLikelihood | None] = []
    for ids, start in sequences:
        ids = ids[:max_length]
        if start >= len(ids):
            out.append(None)
            continue
        tensor = torch.tensor([ids], device=device)
        logits = model(input_ids=tensor).logits[0, start - 1:-1].float()
        targets = tensor[0, start:]
        logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).sum()
        out.append(AnswerLikelihood(float(logp), len(ids) - start))
    return out


def score_rows(model, device: str, rows: PreferenceRows, max_length: int) -> list[PairLikelihoods | AnswerLikelihood | None]:
    """Each row under `model`: a PairLikelihoods for pairs, an AnswerLikelihood for labelled rows (None when truncated away)."""
    flat = answer_likelihoods(model, device, [s for row in rows.sequences for s in row], max_length)
    if rows.kind == "pairs":
        return [None if c is None or r is None else PairLikelihoods(c, r) for c, r in zip(flat[0::2], flat[1::2], strict=True)]
    return flat
