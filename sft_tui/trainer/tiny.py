"""The offline demo model: a small Llama, briefly pre-trained here, and a tokenizer trained here.

Nothing is downloaded. The tokenizer is a byte-level BPE trained on the project's demo
data, with ChatML tokens and <|im_end|> as EOS. A purely random base gives LoRA nothing
to adapt (its frozen random embeddings cap the loss near 4.7), so the base first reads
the demo's inputs and outputs as separate plain-text documents for a few seconds: it
learns the vocabulary and JSON's shape, not the mapping or the chat format, which are
what the fine-tuning then teaches. Built once (seeded) and cached under $SFT_TUI_HOME/cache.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from sft_tui.core.runs.files import share_tree
from sft_tui.trainer.model_setup import CHATML_TEMPLATE

SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
# ~0.65M parameters: learns the demo task visibly in a minute on two CPU cores. Widths are
# multiples of 64 because bitsandbytes' CPU 4-bit kernels quantise in blocks of 64.
ARCHITECTURE = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=512, tie_word_embeddings=True)


def _corpus(files: list[Path]):
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                yield from (str(v) for v in row.values())
    yield from ("system", "user", "assistant")


def _pretrain(model, tokenizer, corpus_files: list[Path], steps: int, seed: int) -> None:
    """A short plain language-model pass over the corpus' fields (inputs and outputs apart)."""
    import random

    documents = [text for text in _corpus(corpus_files) if len(text) > 8 and not text.startswith("Turn these")]
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = tokenizer(rng.sample(documents, 32), return_tensors="pt", padding=True, truncation=True, max_length=64)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()


def build_tiny_model(folder: Path, corpus_files: list[Path], vocab_size: int = 768, seed: int = 0, pretrain_steps: int = 150) -> Path:
    """Build (or reuse) the tiny model and tokenizer in `folder`; returns it."""
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(_corpus(corpus_files), trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>")
    tokenizer.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None, **ARCHITECTURE)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if pretrain_steps:
        _pretrain(model, tokenizer, corpus_files, pretrain_steps, seed)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=folder.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    share_tree(staging)  # mkdtemp makes 0700: a teammate sharing the cache could not read it
    try:
        staging.rename(folder)  # atomic: a half-built model is never found
    except OSError:  # another process built it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder
