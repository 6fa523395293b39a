"""Whether a run uses Liger Kernel's fused layers (RMSNorm, RoPE, SwiGLU) on CUDA.

Liger Kernel is an optional install (`pip install 'sft-tui[gpu]'`) of Triton kernels; it
runs on CUDA only. TRL 1.16 applies its layer kernels through transformers'
`use_liger_kernel` and keeps its own fused, tiled LM head for the loss in every case (it
switches Liger's fused linear cross-entropy off: both avoid the full logits tensor), so
the full logits are never built whether Liger is on or not (see the estimator).
"""

from __future__ import annotations

from dataclasses import dataclass

LIGER_CHOICES = ("auto", "on", "off")
# transformers 5.23 refuses attn_implementation="sdpa" for these (Gemma 2's soft-capping, gpt-oss's attention sinks)
NO_SDPA_FAMILIES = frozenset({"gemma2", "gpt_oss"})
# model_types liger-kernel 0.8.5 patches (liger_kernel.transformers.monkey_patch.MODEL_TYPE_TO_APPLY_LIGER_FN),
# limited to the families sft-tui reads; mistral3 and gpt_neox are not among them
LIGER_FAMILIES = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
                            "gemma3", "phi3", "granite", "olmo2", "smollm3", "gpt_oss"})


@dataclass(frozen=True)
class KernelPlan:
    """Liger on or off for a run, and why."""

    liger: bool
    reason: str

    def line(self) -> str:
        """'kernels: Liger (RMSNorm, RoPE, SwiGLU) ...' or 'kernels: PyTorch's (...)'."""
        if self.liger:
            return f"kernels: Liger RMSNorm, RoPE, SwiGLU + TRL's fused LM head ({self.reason})"
        return f"kernels: PyTorch + TRL's fused LM head ({self.reason})"


def choose_kernels(setting: str, device: str, family: str | None, installed: bool, objective: str = "sft") -> KernelPlan:
    """Liger for this run: "auto" turns it on on CUDA for supported families when installed.

    Raises ValueError with a user-facing sentence when "on" cannot be honoured.
    """
    if setting == "off":
        return KernelPlan(False, "training.liger = off")
    problem = ("Liger runs on CUDA only" if device != "cuda" else
               f"Liger has no kernels for {family} models" if family not in LIGER_FAMILIES else
               "ORPO's experimental trainer in TRL 1.16 does not apply Liger" if objective == "orpo" else
               "liger-kernel is not installed (pip install 'sft-tui[gpu]')" if not installed else "")
    if setting == "on":
        if problem:
            raise ValueError(f"liger is on, but {problem}")
        return KernelPlan(True, "training.liger = on")
    if problem:
        return KernelPlan(False, f"auto: {problem}")
    return KernelPlan(True, "auto: CUDA, liger-kernel installed")


def attention_for(family: str | None, attention: str) -> str:
    """The attention kernel a family can load with: eager where transformers has no SDPA path for it."""
    return "eager" if attention == "sdpa" and family in NO_SDPA_FAMILIES else attention
