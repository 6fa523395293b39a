"""A run's speed settings as resolved for a device: batching (core/data/batching.py) and kernels (core/models/kernels.py).

Preflight resolves them for the GPU the run will get (or the CPU), the trainer again for
the device it finds, and both log the same line; the estimator reads them for its
padding-mask and activation terms.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from sft_tui.core.config.schema import RunConfig
from sft_tui.core.data.batching import BatchingPlan, choose_batching, padding_share
from sft_tui.core.errors import UserError
from sft_tui.core.models.kernels import KernelPlan, choose_kernels


@dataclass(frozen=True)
class SpeedPlan:
    """How a run batches and which kernels it uses, with the reasons."""

    batching: BatchingPlan
    kernels: KernelPlan


def liger_installed() -> bool:
    """Whether liger-kernel can be imported here (found without importing it: it pulls in torch and triton)."""
    return importlib.util.find_spec("liger_kernel") is not None


def random_padding(config: RunConfig, lengths) -> float | None:
    """The padding share random batches of these token lengths would carry (None without lengths)."""
    if not lengths:
        return None
    return padding_share(lengths, config.training.micro_batch_size, "padded", config.training.max_seq_length,
                         config.training.seed, config.training.gradient_accumulation_steps)


def speed_plan(config: RunConfig, device: str, family: str | None, installed: bool | None = None,
               lengths=None) -> SpeedPlan:
    """The batching and kernels of `config` on `device` ("cuda" or "cpu"); UserError naming the field when forced wrongly.

    `lengths` are the training rows' token counts, when known: "auto" groups by length only
    where random batches of them would pad heavily.
    """
    try:
        batching = choose_batching(config.data.packing, config.data.group_by_length, config.method.objective, device,
                                   config.training.attention, family, random_padding(config, lengths))
    except ValueError as error:
        raise UserError(str(error), "data.packing", "set data.packing = \"auto\" (or leave it out)") from None
    try:
        kernels = choose_kernels(config.training.liger, device, family, liger_installed() if installed is None else installed,
                                 config.method.objective)
    except ValueError as error:
        raise UserError(str(error), "training.liger", "set training.liger = \"auto\" (or leave it out)") from None
    return SpeedPlan(batching, kernels)


def batching_line(config: RunConfig, plan: SpeedPlan, lengths=None) -> str:
    """The batching line with the padding the batches will carry on this data, e.g. '...; 3% padding (random order: 46%)'."""
    line = plan.batching.line()
    if not lengths or plan.batching.packs or plan.batching.reason.endswith("not worth grouping"):
        return line  # packed rows carry no padding; the auto reason for random order already gives the share
    t = config.training
    share = padding_share(lengths, t.micro_batch_size, plan.batching.mode, t.max_seq_length, t.seed, t.gradient_accumulation_steps)
    line += f"; {share:.0%} padding"
    return line + (f" (random order: {random_padding(config, lengths):.0%})" if plan.batching.mode == "grouped" else "")
