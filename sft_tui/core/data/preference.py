"""Which data each training objective can learn from, and the rows it reads.

sft reads examples (load_examples: undesirable rows left out, pairs train their chosen
answer). dpo and orpo need pairs: one prompt, a better and a worse answer. kto needs
answers marked good or bad; pairs work too, split into one good and one bad row each
(what TRL's own unpairing does). A file of the wrong kind is refused with the objective
that fits it, so nobody runs DPO on thumbs-up/down data by mistake.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sft_tui.core.data.formats import DataError, Example, LoadedData, Turn, iter_records, load_examples

PAIRED = ("dpo", "orpo")  # objectives that compare a chosen and a rejected answer to one prompt
FITS = {"pairwise": "dpo (or orpo, or kto)", "unpaired-labelled": "kto", "sft": "sft"}


def _records(path: Path, fmt: str) -> tuple[str, list[Example], list[tuple[str, str]]]:
    examples, skipped, detected = [], [], "unknown"
    for record in iter_records(path, fmt):
        if record.error is not None:
            raise DataError(record.error, record.where, "fix or remove that row; `sft-tui data inspect` lists every bad row")
        detected = record.format
        example = record.example
        if not example.response.strip() or (example.rejected is not None and not example.rejected.strip()):
            skipped.append((example.where, "empty answer"))
        else:
            examples.append(example)
    return detected, examples, skipped


def unpair(example: Example) -> tuple[Example, Example]:
    """A pair as two labelled rows: the chosen answer desirable, the rejected one undesirable."""
    prompt = example.turns[:-1]
    good = replace(example, rejected=None, label=True)
    bad = replace(example, turns=prompt + (Turn("assistant", example.rejected or ""),), rejected=None, label=False)
    return good, bad


def load_for_objective(path: Path, fmt: str, objective: str) -> LoadedData:
    """The rows `objective` trains on, or a DataError naming the objective that fits the file.

    dpo/orpo: pairs (examples keep `rejected`). kto: labelled rows, pairs unpaired; a row
    with no label in a labelled file is an error (KTO must know which way to push it).
    """
    if objective == "sft":
        return load_examples(path, fmt)
    detected, examples, skipped = _records(path, fmt)
    if not examples:
        raise DataError("the file holds no usable rows" + (f" ({len(skipped)} with an empty answer)" if skipped else ""),
                        str(path), "add training examples")
    pairs = detected == "pairwise"
    labelled = [e for e in examples if e.label is not None]
    kind = "pairwise" if pairs else "unpaired-labelled" if labelled else "sft"
    if objective in PAIRED and not pairs:
        raise DataError(f"{objective.upper()} learns from pairs (prompt, chosen, rejected), but {path.name} holds {kind} rows",
                        str(path), f"use method.objective = {FITS[kind].split()[0]!r} for this file, or give pairwise rows")
    if objective == "kto":
        if pairs:
            split = [row for e in examples for row in unpair(e)]
            note = f"{path.name}: {len(examples)} pairs read as {len(split)} KTO rows (each chosen answer desirable, each rejected one undesirable)"
            return LoadedData(detected, tuple(split), tuple(skipped), kind, len(examples), (note,))
        if not labelled:
            raise DataError(f"KTO learns from answers labelled good or bad, but {path.name} has no 'label' field",
                            str(path), "add \"label\": true/false to each row, or use method.objective = 'sft'")
        unlabelled = next((e for e in examples if e.label is None), None)
        if unlabelled is not None:
            raise DataError("this row has no 'label' but the file is labelled (KTO's format)", unlabelled.where,
                            "add \"label\": true or false to every row")
        undesirable = sum(1 for e in examples if e.label is False)
        if undesirable in (0, len(examples)):
            which = "undesirable" if undesirable else "desirable"
            raise DataError(f"every row is labelled {which}: KTO needs answers of both labels", str(path),
                            "add rows of the other label, or use method.objective = 'sft' for examples of good answers")
        return LoadedData(detected, tuple(examples), tuple(skipped), kind, undesirable)
    return LoadedData(detected, tuple(examples), tuple(skipped), kind)


def objective_for_kind(kind: str) -> str:
    """The objective a file of this kind suits best ('sft' for plain examples)."""
    return {"pairwise": "dpo", "unpaired-labelled": "kto"}.get(kind, "sft")
