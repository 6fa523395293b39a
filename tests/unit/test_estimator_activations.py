"""The estimator's activation count against what autograd really keeps, measured on the CPU.

Which tensors backward needs does not depend on the device, so a tiny random model of
each family, under bf16 autocast as the trainer runs it, shows the saved bytes exactly
(torch.autograd.graph.saved_tensors_hooks, unique storages, weights excluded). The
estimator must land within 5% of that for every family and setting below.

The loss runs as the trainer runs it: TRL 1.16's fused LM head (trl.trainer.utils.add_fused_lm_head)
for SFT, the plain forward with full logits where the estimator says so (ORPO, full_logits).
On the CPU TRL scores every position instead of compacting the valid ones (CUDA): with every
label valid, as here, the saved tensors are the same size.

Left out on purpose, where the CPU differs from CUDA and the estimator follows CUDA:
LoRA dropout (CPU keeps a float noise tensor, CUDA a one-byte mask) and GPT-NeoX's
LayerNorm (CPU autocast runs it in bf16, CUDA autocast in fp32).
"""

from __future__ import annotations

import pytest

from sft_tui.core.estimate import memory as est
from sft_tui.core.models.modelspec import spec_from_hf_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
trl_utils = pytest.importorskip("trl.trainer.utils")

TOLERANCE = 0.05
TINY = dict(hidden_size=256, num_attention_heads=8, num_key_value_heads=2, intermediate_size=704, vocab_size=3000,
            tie_word_embeddings=False, num_hidden_layers=3, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _measure_saved_bytes(config: dict, s: est.TrainSettings) -> int:
    torch.manual_seed(0)
    hf_config = transformers.AutoConfig.for_model(**config)
    hf_config._attn_implementation = est.effective_attention(spec_from_hf_config(config, "tiny"), s)
    dtype = torch.float32 if s.method == "full" else torch.bfloat16  # full keeps fp32 master weights
    model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=dtype)
    if s.method != "full":
        targets = "all-linear" if "all-linear" in s.lora_targets else list(s.lora_targets)
        model = peft.get_peft_model(model, peft.LoraConfig(r=s.lora_r, lora_alpha=2 * s.lora_r, lora_dropout=0.0, target_modules=targets))
    model.train()
    if s.gradient_checkpointing:
        model.activation_checkpointing_enable() if hasattr(model, "activation_checkpointing_enable") else model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    ids = torch.randint(3, config["vocab_size"], (s.batch_size, s.seq_len))
    mask = torch.ones_like(ids)
    if s.padded:
        mask[0, -s.seq_len // 4:] = 0
    return saved_bytes(model, ids, mask if s.padded else None, est.uses_fused_head(s))


def saved_bytes(model, ids, mask, fused: bool) -> int:
    """Bytes autograd keeps for backward after one forward under bf16 autocast (unique storages, weights excluded).

    `fused`: the loss as TRL 1.16's SFTTrainer takes it, through its fused LM head patched
    on the base model (under any adapter); otherwise the model's own loss on full logits.
    """
    storages: dict[int, int] = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        storages.setdefault(storage.data_ptr(), storage.nbytes())
        return tensor

    if fused:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        trl_utils.add_fused_lm_head(base, outputs=("log_probs", "entropy", "is_top1"))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids, attention_mask=mask, labels=ids, **({"fused_lm_head": True} if fused else {}))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(size for ptr, size in storages.items() if ptr not in weights)


CASES = [
    ("llama", {}, dict(method="lora")),
    ("llama", {}, dict(method="lora", padded=False)),
    ("llama", {}, dict(method="lora", attention="eager")),
    ("llama", {}, dict(method="lora", lora_targets=("q_proj", "v_proj"), lora_r=8)),
    ("llama", {}, dict(method="lora", gradient_checkpointing=True)),
    ("llama", {}, dict(method="full")),
    ("llama", {}, dict(method="full", gradient_checkpointing=True)),
    ("llama", {}, dict(method="lora", seq_len=384, batch_size=1)),
    ("qwen2", {}, dict(method="lora")),
    ("qwen3", {"head_dim": 32}, dict(method="lora")),
    ("mistral", {}, dict(method="lora")),
    ("phi3", {"num_key_value_heads": 8}, dict(method="lora")),
    ("gemma", {"head_dim": 32, "tie_word_embeddings": True}, dict(method="full")),
    ("gemma2", {"head_dim": 32, "tie_word_embeddings": True}, dict(method="lora")),
    # the full logits, as ORPO's trainer builds them (transformers' loss: fp32 log-probabilities over the vocabulary)
    ("llama", {}, dict(method="lora", full_logits=True)),
    ("llama", {}, dict(method="full", full_logits=True)),
    ("gemma2", {"head_dim": 32, "tie_word_embeddings": True}, dict(method="lora", full_logits=True)),
]


@pytest.mark.parametrize("family, arch, settings", CASES, ids=[f"{c[0]}-{'-'.join(f'{k}={v}' for k, v in c[2].items())}" for c in CASES])
def test_saved_activations_match_autograd(family, arch, settings):
    config = {"model_type": family, **TINY, **arch}
    s = est.TrainSettings(**{"seq_len": 128, "batch_size": 2, "gradient_checkpointing": False, "lora_dropout": 0.0, **settings})
    measured = _measure_saved_bytes(config, s)
    predicted = est.saved_activation_bytes(spec_from_hf_config(config, "tiny"), s)
    assert abs(predicted - measured) / measured <= TOLERANCE, f"predicted {predicted / 2**20:.2f} MiB, measured {measured / 2**20:.2f} MiB"
