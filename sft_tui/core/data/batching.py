"""How a run's examples are put into batches: the fastest correct way per device and attention kernel.

Four ways, all of them TRL's or transformers' own:

- ``grouped``: padded batches of examples of similar length (transformers'
  LengthGroupedSampler: random mega-batches of 50 optimizer steps, sorted by length
  inside), so a batch pads little. The same examples, but grouped differently: each
  batch's loss is its own tokens' mean, so short examples weigh more than in random
  batches (Alpaca, bench/throughput.py: held-out loss +1.4% at 2.18x the speed).
- ``padded``: padded batches in random order (TRL's default).
- ``packed``: TRL's padding-free packing (best-fit decreasing): several examples in one
  row, position ids restarting per example, no attention across examples.
- ``wrapped``: TRL's "wrapped" packing: the token stream cut every max_seq_length
  tokens; examples attend to each other. Only when asked for by name
  (pre-training-style text).

"auto" picks by measurement (bench/throughput.py --packed, bench/results/): on the CPU with
SDPA, padding-free packing was slower than random padded batches (0.64x on Alpaca), let
alone length-grouped ones: the block-diagonal mask built from packed position ids costs
more than the padding it saves. So "auto" packs only where attention runs packed rows
natively (flash-attention's varlen kernels on CUDA). SDPA on CUDA has not been measured
here: it gets the measured-safe choice.

Grouping changes which examples share a batch, and that is not free: on the demo
(15% padding in random batches) it made the held-out loss 1.10-1.17 instead of
0.98-1.04 (three seeds, each worse) for 15% more speed. So "auto" groups only where random batches would
pad heavily (at least GROUP_WHEN_PADDING of their tokens, e.g. Alpaca's 46%).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

BATCHINGS = ("grouped", "padded", "packed", "wrapped")
PACKING_CHOICES = ("auto", "on", "off", "wrapped")
# attention kernels that read packed rows natively (varlen: cu_seqlens from position ids)
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")
# families whose packed rows gave per-token losses different from the same examples
# unpacked (tests/trainer/test_packing_equivalence.py); packing is refused for them
PACKING_UNSAFE_FAMILIES: frozenset[str] = frozenset({"gpt_oss"})  # transformers 5.23 builds its mask without position_ids

# random batches padding less than this share keep their random order (see the module docstring)
GROUP_WHEN_PADDING = 0.25

LABELS = {
    "grouped": "length-grouped padded batches",
    "padded": "random padded batches",
    "packed": "padding-free packing",
    "wrapped": "wrapped packing, examples see each other",
}


@dataclass(frozen=True)
class BatchingPlan:
    """The batching a run uses and why (one line for the log and the launch summary)."""

    mode: str  # one of BATCHINGS
    reason: str

    @property
    def padded(self) -> bool:
        """Whether batches carry padding and an attention mask (the estimator's `padded`)."""
        return self.mode in ("grouped", "padded")

    @property
    def packs(self) -> bool:
        """Whether several examples share one row."""
        return self.mode in ("packed", "wrapped")

    def line(self) -> str:
        """'batching: length-grouped padded batches (auto: ...)'."""
        return f"batching: {LABELS[self.mode]} ({self.reason})"

    def trainer_args(self) -> dict:
        """The SFTConfig / TrainingArguments fields that give this batching (TRL 1.16, transformers 5)."""
        if self.mode == "packed":
            return {"packing": True, "packing_strategy": "bfd"}  # bfd turns padding-free on
        if self.mode == "wrapped":
            return {"packing": True, "packing_strategy": "wrapped"}
        return {"packing": False, "train_sampling_strategy": "group_by_length" if self.mode == "grouped" else "random"}


def has_mask(padded: bool, attention: str) -> bool:
    """Whether batches reach attention with a mask: padded ones always; packed rows unless the kernel reads them natively.

    With SDPA or eager, transformers builds a block-diagonal mask from packed position ids.
    """
    return padded or attention not in VARLEN_ATTENTION


def choose_batching(packing: str, group_by_length: bool, objective: str, device: str, attention: str,
                    family: str | None = None, random_padding: float | None = None) -> BatchingPlan:
    """The batching for a run: what the user forced, else the measured-fastest correct one for this device.

    `device` is "cuda" or "cpu"; `family` the model_type (for families packing is unsafe on);
    `random_padding` the share of padding random batches of this data would carry
    (padding_share), None when the data has not been measured.
    Raises ValueError with a user-facing sentence when packing is forced where it is wrong.
    """
    unpacked = ("grouped", "length-grouped") if group_by_length else ("padded", "data.group_by_length = false")
    if objective != "sft":
        if packing in ("on", "wrapped"):
            raise ValueError(f"packing {packing} works for method.objective = sft only: "
                             f"TRL's {objective.upper()} trainer pads its pairs")
        return BatchingPlan("padded", f"TRL's {objective.upper()} trainer pads its pairs")
    if packing in ("on", "wrapped") and family in PACKING_UNSAFE_FAMILIES:
        raise ValueError(f"packing gives {family} models different losses than unpacked examples "
                         "(tests/trainer/test_packing_equivalence.py)")
    if packing == "on":
        return BatchingPlan("packed", "data.packing = on" + ("; on the CPU it measured 0.64x random padded batches" if device == "cpu" else ""))
    if packing == "wrapped":
        return BatchingPlan("wrapped", "data.packing = wrapped")
    if packing == "off":
        return BatchingPlan(unpacked[0], "data.packing = off" + ("" if group_by_length else f", {unpacked[1]}"))
    if device == "cuda" and attention in VARLEN_ATTENTION and family not in PACKING_UNSAFE_FAMILIES:
        return BatchingPlan("packed", f"auto: {attention} reads packed rows natively")
    if device == "cuda":
        why = f"auto: {attention} on CUDA, packing not measured faster"
    else:
        why = f"auto: {attention} on CPU, packing measured slower"
    if not group_by_length:
        return BatchingPlan("padded", f"{why}; {unpacked[1]}")
    if random_padding is not None and random_padding < GROUP_WHEN_PADDING:
        return BatchingPlan("padded", f"auto: only {random_padding:.0%} padding, not worth grouping")
    return BatchingPlan("grouped", why)


def batch_order(lengths: Sequence[int], batch_size: int, mode: str, seed: int = 0, accumulation: int = 1) -> list[list[int]]:
    """Example indices per micro-batch as the sampler would order them.

    "grouped" follows transformers' LengthGroupedSampler, which groups by optimizer step
    (micro-batch x accumulation examples) in mega-batches of up to 50 steps.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if mode == "grouped":
        step = batch_size * accumulation
        mega = max(1, min(len(lengths) // (step * 4), 50)) * step
        chunks = [sorted(order[i:i + mega], key=lambda j: lengths[j], reverse=True) for i in range(0, len(order), mega)]
        order = [j for chunk in chunks for j in chunk]
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padding_share(lengths: Sequence[int], batch_size: int, mode: str, max_length: int, seed: int = 0, accumulation: int = 1) -> float:
    """Share of the tokens in the batches that are padding (0 for packing: packed rows carry none).

    Lengths are cut at max_length, as the trainer truncates them.
    """
    if mode in ("packed", "wrapped") or not lengths:
        return 0.0
    cut = [min(max(1, n), max_length) for n in lengths]
    real = padded = 0
    for batch in batch_order(cut, batch_size, mode, seed, accumulation):
        longest = max(cut[j] for j in batch)
        real += sum(cut[j] for j in batch)
        padded += longest * len(batch)
    return 1.0 - real / padded if padded else 0.0
