"""TRL 1.16's fused LM head, counted (sft_tui/core/estimate/lm_head.py) and measured on the CPU.

The estimator's "logits" term for SFT, DPO and KTO is the fused head's working set, never a
(tokens x vocab) tensor; ORPO keeps the full logits. The measurement runs TRL's own
ChunkedLogProbFunction and records every tensor it allocates (a TorchDispatchMode that
follows each new storage until it is freed), leaving out the temporaries of the CPU-only
torch fallback of its Triton kernels (`_forward_tile` / `_backward_tile`, which allocate
nothing on CUDA) and the fp32 upcasts of `_addmm_fp32`'s CPU path (CUDA accumulates in
fp32 in place). On the CPU TRL scores every position rather than compacting the valid
ones (`compact` is False without Triton); the estimator follows CUDA, where with every
label valid the two are the same size.
"""

from __future__ import annotations

import weakref

import pytest

from sft_tui.core.estimate import lm_head
from sft_tui.core.estimate import memory as est
from sft_tui.core.models.modelspec import spec_from_preset

GIB = 1024**3


def test_the_logits_term_never_holds_a_full_tokens_by_vocab_tensor_except_for_orpo():
    spec = spec_from_preset("qwen2.5-1.5b")  # a 151,936-token vocabulary
    for seq, batch in ((2048, 1), (8192, 4)):
        full_logits_bytes = 2 * batch * seq * spec.vocab_size  # one bf16 copy of the logits
        for liger in (False, True):
            for objective in ("sft", "dpo", "kto"):
                s = est.TrainSettings(seq_len=seq, batch_size=batch, liger=liger, objective=objective)
                e = est.estimate_memory(spec, s)
                logits = sum(t.bytes for t in e.terms if t.key == "logits")
                assert logits < full_logits_bytes / 4, (seq, batch, liger, objective)
                assert any("fused LM head" in a for a in e.assumptions)
                named = [t for t in e.terms if t.key == "logits" and not t.label]
                assert named[0].explanation.startswith("TRL's fused LM head: tiles of 4,096 tokens x 32,768 vocab, no full logits")
        orpo = est.estimate_memory(spec, est.TrainSettings(seq_len=seq, batch_size=batch, objective="orpo"))
        # ORPO (trl.experimental) builds the full logits: bf16 logits + fp32 log-probs + two fp32 gradients, both answers
        assert orpo.breakdown_gib()["logits"] == pytest.approx(2 * batch * seq * spec.vocab_size * 14 / GIB)


def test_the_fused_head_counts_by_hand():
    # 5,000 positions, hidden 64, vocab 3,000, LoRA in bf16 (no casts): a 4096 x 32768 bf16 tile (its width is the chunk
    # size whatever the vocabulary); per token the compacted 16-bit hidden state 128 B, target 8 + mask 1, 7 fp32 stats
    head = lm_head.fused_head(5000, 64, 3000, 2, 2, 2, "sft", weight_grad_temp=False)
    tile = 4096 * 32768 * 2
    assert head.forward == 5000 * (128 + 9 + 28) + tile
    assert head.saved == 5000 * (128 + 8 + 4 + 4 + 1)
    assert head.held == head.saved + 5000 * (4 + 4 + 1)  # SFT's outputs: log-probs, entropy, is_top1
    # backward: the fp32 gradient of the log-probs 4 and of the hidden states 4 x 64, cast back to bf16 on return
    assert head.backward == head.saved + 5000 * (4 + 4 * 64 + 2 * 64) + tile
    # an fp32 head and fp32 hidden states (full fine-tuning) add a bf16 slice of each: 3,000 weight rows, 4,096 tokens
    full = lm_head.fused_head(5000, 64, 3000, 2, 4, 4, "sft", weight_grad_temp=True)
    assert full.forward - head.forward == 5000 * 64 * 2 + 3000 * 64 * 2 + 4096 * 64 * 2
    assert full.backward - full.saved == 5000 * (4 + 4 * 64) + tile + 3000 * 64 * 2 + 4096 * 64 * 2 + 4 * 3000 * 64


# --- measured: TRL's own ChunkedLogProbFunction on the CPU ---------------------------------------------------------

torch = pytest.importorskip("torch")
chunked = pytest.importorskip("trl.kernels.chunked_logprob")


class _NewStorages:
    """Peak bytes of the storages allocated while active (each followed until its last tensor is freed)."""

    def __init__(self, existing):
        self.existing = {t.untyped_storage().data_ptr() for t in existing}
        self.live: dict[int, list[int]] = {}
        self.now = self.peak = 0
        self.paused = False

    def seen(self, tensor) -> None:
        if self.paused or not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
            return
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in self.existing or ptr == 0:
            return
        if ptr not in self.live:
            self.live[ptr] = [tensor.untyped_storage().nbytes(), 0]
            self.now += self.live[ptr][0]
            self.peak = max(self.peak, self.now)
        self.live[ptr][1] += 1
        weakref.finalize(tensor, self.freed, ptr)

    def freed(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[ptr]


def _tracked(counter: _NewStorages):
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in tree_flatten(out)[0]:
                counter.seen(tensor)
            return out

    return Track()


def _paused(counter: _NewStorages, fold):
    """The CPU fallback of a Triton kernel, run untracked: on CUDA the kernel allocates nothing."""
    def run(*args, **kwargs):
        counter.paused = True
        try:
            return fold(*args, **kwargs)
        finally:
            counter.paused = False
    return run


@pytest.mark.parametrize("full", [False, True], ids=["lora-bf16-head", "full-fp32-head"])
def test_the_measured_working_set_matches_the_count(monkeypatch, full):
    n, hidden, vocab = 512, 64, 3000
    torch.manual_seed(0)
    dtype = torch.float32 if full else torch.bfloat16  # full fine-tuning: fp32 master weights, fp32 final hidden states
    weight = torch.randn(vocab, hidden, dtype=dtype, requires_grad=full)
    hidden_states = torch.randn(n, hidden, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, vocab, (n,))
    counter = _NewStorages([weight, hidden_states, targets])
    monkeypatch.setattr(chunked, "_forward_tile", _paused(counter, chunked._forward_tile))
    monkeypatch.setattr(chunked, "_backward_tile", _paused(counter, chunked._backward_tile))
    # on CUDA the gradient GEMMs accumulate in fp32 in place (addmm out_dtype); the CPU path upcasts both operands first
    monkeypatch.setattr(chunked, "_addmm_fp32", _paused(counter, chunked._addmm_fp32))
    with torch.autocast("cpu", dtype=torch.bfloat16), _tracked(counter):
        logprobs, *_ = chunked.ChunkedLogProbFunction.apply(hidden_states, weight, None, targets, 1.0, lm_head.VOCAB_TILE, None, 1.0,
                                                            ("entropy", "is_top1"))
        forward_peak = counter.peak
    loss = -logprobs.sum()
    before_backward = counter.peak = counter.now  # what the forward left: log_z, entropy and the outputs
    with _tracked(counter):
        loss.backward()
    backward_added = counter.peak - before_backward
    head = lm_head.fused_head(n, hidden, vocab, 2, 4 if full else 2, 4 if full else 2, "sft", weight_grad_temp=full)
    # the hidden states, targets and mask exist before the head runs (the trainer's compacted copy): not allocated here
    assert forward_peak == pytest.approx(head.forward - n * hidden * (4 if full else 2) - n * 9, rel=0.01)
    # the backward's own allocations: the gradients of the log-probs and hidden states (and the head's), a tile, the casts
    assert backward_added == pytest.approx(head.backward - head.saved, rel=0.01)
