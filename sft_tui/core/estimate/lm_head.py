"""The loss's memory at the model's output, and what Liger Kernel's layer kernels keep for backward.

TRL 1.16's SFT, DPO and KTO trainers compute the loss through their fused LM head
(trl.trainer.utils.add_fused_lm_head + trl.kernels.chunked_logprob.ChunkedLogProbFunction):
the (tokens x vocab) logits are never built. Counted from that code, with N the scored
positions (every position of the batch here: the worst case; a completion-only loss
scores fewer):

  forward    `hidden_states[mask]`, a compacted copy of the scored positions (N x hidden,
             in the final norm's output dtype), their int64 targets, seven fp32 running
             statistics per token and one tile buffer of min(N, 4096) x 32,768 in the
             compute dtype (its width is the chunk size whatever the vocabulary), plus a
             compute-dtype copy of a 32,768-row slice of the head's weight when the weight
             is fp32 (full fine-tuning, QLoRA) and of a 4,096-token slice of the hidden
             states when they are fp32.
  saved      the compacted hidden states, the targets, log_z and the entropy (fp32), the
             label mask; the per-token outputs (log-probs, entropy, accuracy flags) live
             until the loss is taken.
  backward   grad_hidden in fp32 (N x hidden) and its cast to the hidden dtype on return,
             the same tile buffer and weight slice; grad_weight in fp32 (vocab x hidden)
             only when the head trains: then it becomes the head's gradient, which the
             estimator already counts under "gradients" unless a gradient is accumulating.

On the CPU (no Triton) TRL scores every position instead of compacting them; with every
label valid the saved tensors are the same size (tests/unit/test_estimate_fused_head.py).

ORPO (trl.experimental.orpo) still builds the full logits and transformers' loss upcasts
them to fp32; `full_logits` counts that.

Liger Kernel 0.8.5 (liger_kernel/ops): LigerRMSNormFunction saves its input X in its own
dtype and one fp32 rstd per row (no fp32 copy, no normalised value even when the weight
trains); LigerSiLUMulFunction / LigerGELUMulFunction save the gate and up outputs only
(the activation is recomputed); LigerRopeFunction saves cos and sin, as transformers'
rotary embedding already does (shared by every layer), so RoPE changes nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass

TOKEN_TILE = 4096  # trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE
VOCAB_TILE = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE: the tile buffer's width
RUNNING_STATS = 7 * 4  # running max, sum of exps, x * exp, squares, logit sum, max before target, target logit (fp32)
SAVED_PER_TOKEN = 8 + 4 + 4 + 1  # int64 target, fp32 log_z and entropy, the bool label mask
# per-token outputs each trainer asks the head for (fp32, is_top1 a bool), held until the loss is taken
OUTPUTS_PER_TOKEN = {"sft": 4 + 4 + 1, "dpo": 4 + 4 + 4 + 1, "kto": 4 + 4 + 4}


@dataclass(frozen=True)
class HeadMemory:
    """Bytes at the model's output for one forward of `tokens` positions."""

    forward: float  # at the head's fullest during the forward (what the forward-end phase holds)
    saved: float  # what autograd keeps for the head's backward (the fp32 log-probs, with full logits)
    held: float  # kept once the forward returned, until the head's backward (what the reference forward sees)
    backward: float  # during the head's own backward
    after_backward: float  # the gradient flowing into the layers once the head's backward is done
    no_grad: float  # a forward without gradients (the reference's), at its fullest
    fused: bool
    tokens: int

    def text(self, phase: str, vocab: int, dtype: str) -> str:
        """Why this many bytes, for the breakdown line of `phase`."""
        if not self.fused:
            if phase == "backward start":
                return f"{self.tokens:,} tokens x {vocab:,} vocab: full logits ({dtype}) + fp32 log-probs + two fp32 gradients"
            return f"{self.tokens:,} tokens x {vocab:,} vocab: full logits ({dtype}) + fp32 copy + fp32 log-probs"
        tiles = f"TRL's fused LM head: tiles of {TOKEN_TILE:,} tokens x {VOCAB_TILE:,} vocab, no full logits"
        if phase == "backward start":
            return f"{tiles}; its backward: fp32 gradient of the {self.tokens:,} hidden states + one tile"
        if phase == "layers' backward":
            return f"{tiles}; at this moment only the gradient it passes to the layers ({self.tokens:,} hidden states)"
        if phase == "reference forward":
            return f"{tiles}; what the policy's head saved ({self.tokens:,} hidden states, targets, log_z) and its outputs"
        return f"{tiles}; {self.tokens:,} hidden states saved + 7 fp32 running stats per token + one tile"


def fused_head(tokens: int, hidden: int, vocab: int, compute_bytes: int, hidden_bytes: int, weight_bytes: int,
               objective: str, weight_grad_temp: bool) -> HeadMemory:
    """TRL 1.16's fused LM head for `tokens` scored positions (see the module docstring for the count).

    hidden_bytes: dtype of the final hidden states (fp32 when the final norm's weight is fp32);
    weight_bytes: the head weight's dtype; weight_grad_temp: the head trains and its fresh
    fp32 gradient is a temporary (accumulated into an existing .grad).
    """
    tile = min(tokens, TOKEN_TILE) * VOCAB_TILE * compute_bytes
    casts = (min(vocab, VOCAB_TILE) * hidden * compute_bytes if weight_bytes != compute_bytes else 0) \
        + (min(tokens, TOKEN_TILE) * hidden * compute_bytes if hidden_bytes != compute_bytes else 0)
    compact = tokens * hidden * hidden_bytes
    saved = compact + tokens * SAVED_PER_TOKEN
    outputs = tokens * OUTPUTS_PER_TOKEN.get(objective, OUTPUTS_PER_TOKEN["dpo"])
    forward = compact + tokens * (8 + 1 + RUNNING_STATS) + tile + casts  # inside the tile loop: targets, mask, statistics
    grad_hidden = tokens * hidden * 4 + (tokens * hidden * hidden_bytes if hidden_bytes != 4 else 0)  # fp32, then cast back
    backward = saved + 4 * tokens + grad_hidden + tile + casts + (4.0 * vocab * hidden if weight_grad_temp else 0.0)
    no_grad = compact + tokens * (8 + 1 + RUNNING_STATS) + tile + casts
    return HeadMemory(forward, saved, saved + outputs, backward, tokens * hidden * hidden_bytes, no_grad, True, tokens)


def full_logits(tokens: int, vocab: int, compute_bytes: int) -> HeadMemory:
    """The full (tokens x vocab) logits, as ORPO builds them: transformers' loss upcasts them to fp32 and keeps log-probs."""
    upcast = 0 if compute_bytes == 4 else 4
    forward = tokens * vocab * (compute_bytes + upcast + 4)
    return HeadMemory(forward, 4.0 * tokens * vocab, forward, tokens * vocab * (compute_bytes + 12), 0.0, forward, False, tokens)


def liger_norm_bytes(hidden: int, input_bytes: int) -> int:
    """Per token, what one LigerRMSNorm keeps: its input in its own dtype + one fp32 rstd."""
    return input_bytes * hidden + 4


def gated_mlp_saved(intermediate: int, compute_bytes: int, liger: bool) -> int:
    """Per token, what a gated MLP's activation keeps: gate output, activation, up output; Liger's fused SwiGLU/GeGLU drops the activation."""
    return (2 if liger else 3) * compute_bytes * intermediate
