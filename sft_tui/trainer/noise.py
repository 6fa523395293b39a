"""Library messages that tell our users nothing, kept out of train.log and job logs.

Each is named, with why it is harmless; anything else a library says still reaches the log.
"""

from __future__ import annotations

import logging
import warnings


def quiet_known_noise() -> None:
    """Silence the few known-harmless messages (call once, before importing torch/transformers/bitsandbytes)."""
    # bitsandbytes on a CPU with AVX512-BF16 tries an optional kernel from the `kernels` hub and says
    # "please pip install kernels" when it is absent; its own fallback is used, and the log's first line
    # read like a missing dependency
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # transformers 5 deprecates a property its own Trainer still reads: nothing for a user to change
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
