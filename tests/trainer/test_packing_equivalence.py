"""Packing must not change the loss: every family's per-token losses are the same packed, padded and alone.

For each supported family (and the multimodal wrappers' text models) a tiny random model
is built from transformers' own config class, in float32 and eval mode. A few examples of
different lengths go through it three ways:

- alone: one example per forward, no padding (the reference);
- packed: one row built by TRL 1.16's own padding-free collator, fed exactly what the
  collator emits (input_ids, position_ids restarting per example, cu_seq_lens, max_length,
  seq_idx) as SFTTrainer.compute_loss feeds it;
- padded: the examples right-padded to the longest, with an attention mask (the "grouped"
  and "padded" batchings).

Families with sliding-window layers get a window shorter than the examples, so the
window's mask is exercised too. A family in PACKING_UNSAFE_FAMILIES (sft_tui/core/data/
batching.py, which refuses `data.packing = "on"` for it) must still differ, so that list
cannot go stale: when transformers fixes the family, this test says so.

Last, a 3-step SFTTrainer run on the demo's tiny model with the trainer's packed batching
logs, at step 1, the loss of the same examples computed one at a time.
"""

from __future__ import annotations

import functools
import json

import pytest

from sft_tui.core.data.batching import PACKING_UNSAFE_FAMILIES, BatchingPlan
from sft_tui.core.models.families import FAMILIES, TEXT_WRAPPERS
from tests.unit.test_model_families import MOE, NO_TOKENS, SMALL

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
F = torch.nn.functional

# Examples longer and shorter than the window; ids from 1 (0 pads) up to SMALL's vocabulary.
LENGTHS = (9, 3, 13, 6)
WINDOW = 4
LAYERS = SMALL["num_hidden_layers"]
SLIDE_FULL_SLIDE = [("sliding_attention", "full_attention")[i % 2] for i in range(LAYERS)]
ATOL = 1e-4  # float32 on tiny shapes agrees to ~1e-6; packing across examples moves losses by ~1e-1

# per family: config fields beyond SMALL (sliding windows shorter than the examples where the family has them)
CASES: dict[str, dict] = {
    "llama": {},
    "mistral": {"sliding_window": WINDOW},
    "qwen2": {"use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 1},
    "qwen3": {"head_dim": 16, "use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 1},
    "gemma": {"head_dim": 16},
    "gemma2": {"head_dim": 16, "sliding_window": WINDOW},  # alternating local / global layers, soft-capped attention
    "gemma3_text": {"head_dim": 16, "sliding_window": WINDOW, "layer_types": SLIDE_FULL_SLIDE},
    "phi3": {"sliding_window": WINDOW},
    "gpt_neox": {},
    "olmo2": {},
    "smollm3": {"no_rope_layer_interval": 2, "use_sliding_window": True, "sliding_window": WINDOW},  # a NoPE layer, windowed
    "granite": {},
    "qwen3_moe": {**MOE, "num_experts": 4, "moe_intermediate_size": 40, "head_dim": 16},
    "mixtral": {**MOE, "num_local_experts": 4, "sliding_window": WINDOW},
    "gpt_oss": {**MOE, "num_local_experts": 4, "head_dim": 16, "sliding_window": WINDOW},  # attention sinks
}
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 28,
          "patch_size": 14}
# transformers 5.23 has no SDPA path for these (Gemma 2's soft-capping, gpt-oss's sinks): they run eager
NO_SDPA = frozenset({"gemma2", "gpt_oss"})
# Found here to differ packed (transformers 5.23): GptOssModel.forward builds its masks without
# position_ids, so find_packed_sequence_indices never sees the packed rows and examples attend
# to each other under eager / SDPA (huggingface/transformers PR #39997, unmerged). The lead's
# PACKING_UNSAFE_FAMILIES should hold it; the union keeps this test right until it does.
EXPECTED_TO_DIFFER = PACKING_UNSAFE_FAMILIES | {"gpt_oss"}


def _text_family(family: str) -> str:
    return TEXT_WRAPPERS[family].text_family if family in TEXT_WRAPPERS else family


FAMILY_NAMES = [*FAMILIES, *TEXT_WRAPPERS]
PARAMS = [pytest.param(family, attention, id=f"{family}-{attention}")
          for family in FAMILY_NAMES for attention in ("sdpa", "eager")
          if not (attention == "sdpa" and _text_family(family) in NO_SDPA)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matmuls on two threads of a shared 2-core box wait on each other (~100x slower); one thread is enough."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.cache
def random_model(family: str, attention: str):
    """A random float32 model of `family` in eval mode, seeded; wrappers get their text model plus a one-layer vision tower."""
    text_family = _text_family(family)
    text = transformers.AutoConfig.for_model(text_family, **{**SMALL, **NO_TOKENS, **CASES[text_family]})
    if family in TEXT_WRAPPERS:
        vision = {**VISION, "head_dim": 16} if family == "mistral3" else VISION
        config = transformers.AutoConfig.for_model(family, text_config=text.to_dict(), vision_config=vision)
        # Gemma 3 loads as a CausalLM (Gemma3ForConditionalGeneration); Mistral 3 only as an image-text model
        auto = transformers.AutoModelForCausalLM if family == "gemma3" else transformers.AutoModelForImageTextToText
    else:
        config, auto = text, transformers.AutoModelForCausalLM
    torch.manual_seed(0)
    return auto.from_config(config, attn_implementation=attention, dtype=torch.float32).eval()


def examples() -> list[list[int]]:
    """Token id lists of LENGTHS, seeded."""
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(1, SMALL["vocab_size"], (n,), generator=generator).tolist() for n in LENGTHS]


def collate(padding_free: bool) -> tuple[dict, torch.Tensor]:
    """The examples as TRL's SFT collator batches them: (model inputs as SFTTrainer passes them, labels)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=padding_free)([{"input_ids": e} for e in examples()])
    labels = batch.pop("labels")
    return {**batch, "use_cache": False}, labels


def next_token_losses(logits, labels) -> torch.Tensor:
    """Cross-entropy of each position's prediction of the next label, for the labels that count (not -100)."""
    losses = F.cross_entropy(logits[:-1], labels[1:], reduction="none", ignore_index=-100)
    return losses[labels[1:] != -100]


@torch.no_grad()
def alone(model) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token losses, logits) of every example in its own forward, concatenated in order."""
    losses, logits = [], []
    for ids in examples():
        row = torch.tensor(ids)
        out = model(input_ids=row[None], use_cache=False).logits[0]
        losses.append(next_token_losses(out, row))
        logits.append(out)
    return torch.cat(losses), torch.cat(logits)


@torch.no_grad()
def packed(model) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token losses, logits) of the examples packed padding-free into one row by TRL's collator."""
    inputs, labels = collate(padding_free=True)
    assert inputs["input_ids"].shape == (1, sum(LENGTHS)) and "attention_mask" not in inputs
    logits = model(**inputs).logits[0]
    return next_token_losses(logits, labels[0]), logits


@torch.no_grad()
def padded(model) -> torch.Tensor:
    """Per-token losses of the examples right-padded to the longest, with an attention mask, on the real tokens."""
    inputs, labels = collate(padding_free=False)
    assert inputs["attention_mask"].sum().item() == sum(LENGTHS)
    logits = model(**inputs).logits
    return torch.cat([next_token_losses(logits[i, :n], labels[i, :n]) for i, n in enumerate(LENGTHS)])


def test_every_family_is_checked():
    assert set(CASES) == set(FAMILIES)
    assert EXPECTED_TO_DIFFER <= set(FAMILY_NAMES), "PACKING_UNSAFE_FAMILIES names a family this test does not build"


@pytest.mark.parametrize("family", sorted(NO_SDPA))
def test_families_without_sdpa_refuse_it(family):
    with pytest.raises(ValueError, match="does not support an attention implementation"):
        random_model(family, "sdpa")


@pytest.mark.parametrize("family, attention", PARAMS)
def test_packed_rows_give_the_losses_of_examples_alone(family, attention):
    model = random_model(family, attention)
    reference, reference_logits = alone(model)
    losses, logits = packed(model)
    assert losses.shape == reference.shape == (sum(LENGTHS) - len(LENGTHS),)
    worst = (losses - reference).abs().max().item()
    if _text_family(family) in EXPECTED_TO_DIFFER or family in EXPECTED_TO_DIFFER:
        assert worst > 1e-2, f"{family} packs correctly now ({worst:.1e}): drop it from PACKING_UNSAFE_FAMILIES"
        return
    assert worst < ATOL, f"{family} ({attention}): packed per-token losses differ by {worst:.1e}"
    assert torch.allclose(logits, reference_logits, atol=ATOL), f"{family} ({attention}): packed logits differ"


@pytest.mark.parametrize("family, attention", PARAMS)
def test_padded_batches_give_the_losses_of_examples_alone(family, attention):
    model = random_model(family, attention)
    reference, _ = alone(model)
    worst = (padded(model) - reference).abs().max().item()
    assert worst < ATOL, f"{family} ({attention}): padded per-token losses differ by {worst:.1e}"


def test_a_packed_sft_run_logs_the_loss_of_its_examples_alone(tiny_model, tmp_path):
    """Step 1 of a 3-step SFTTrainer run with the trainer's packed batching logs the unpacked mean loss of its examples.

    Sequential sampling makes step 1's batch the first rows of the packed dataset; the
    tiny Llama has no dropout, so the logged loss (before the first update) is deterministic.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from tests.trainer.conftest import DEMO

    rows = [json.loads(line) for line in (DEMO / "train.jsonl").read_text(encoding="utf-8").splitlines()[:12]]
    dataset = Dataset.from_list([{"prompt": f"{r['instruction']}\n{r['input']}\n", "completion": r["output"]} for r in rows])
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")
    batch_size = 2
    args = SFTConfig(output_dir=str(tmp_path), **BatchingPlan("packed", "test").trainer_args(), max_length=96, max_steps=3,
                     per_device_train_batch_size=batch_size, train_sampling_strategy="sequential", logging_steps=1,
                     learning_rate=1e-3, report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True, bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    first_batch = trainer.train_dataset.select(range(batch_size))
    assert sum(len(row["seq_lengths"]) for row in first_batch) > batch_size, "step 1 packs no two examples together"

    model.eval()
    losses = []
    with torch.no_grad():  # the same examples one at a time, with the labels (completion only) the trainer built
        for row in first_batch:
            ids, labels, start = torch.tensor(row["input_ids"]), torch.tensor(row["labels"]), 0
            for n in row["seq_lengths"]:
                logits = model(input_ids=ids[None, start:start + n]).logits[0]
                losses.append(next_token_losses(logits, labels[start:start + n]))
                start += n
    model.train()
    trainer.train()
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 3
    assert logged[0] == pytest.approx(torch.cat(losses).mean().item(), abs=ATOL)
