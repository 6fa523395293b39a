"""Length-grouped batches that come back in the same order after a resume.

transformers' LengthGroupedSampler draws its permutation from torch's global random
state when an epoch starts. A run resumed in its second epoch or later draws it at a
different point of that state than the run it continues, so skipping the steps already
trained would skip the wrong batches: some examples twice, others never, in that epoch.
(accelerate swaps plain random samplers for seeded ones; it leaves this one alone.) Here
each epoch's permutation comes from the run's seed plus the epoch number, which
transformers passes to the sampler's set_epoch before every epoch.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """LengthGroupedSampler whose order depends only on (seed, epoch)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by transformers before each epoch (and on resume, with the epoch it resumes in)."""
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


def seeded_grouping(trainer_class):
    """`trainer_class` with its length-grouped sampler replaced by the epoch-seeded one (other samplers untouched)."""

    class SeededGrouping(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler) and not isinstance(sampler, EpochSeededLengthGroupedSampler):
                return EpochSeededLengthGroupedSampler(sampler.batch_size, list(sampler.lengths), self.args.seed)
            return sampler

    SeededGrouping.__name__ = SeededGrouping.__qualname__ = trainer_class.__name__
    return SeededGrouping
