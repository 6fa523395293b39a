"""Sentence vectors from a local causal LM, for `data select --embed model`.

Mean of the last hidden states over the real (non-padding) tokens, L2-normalised, as in
Chen et al. 2023. Batched, on the GPU when there is one, in bf16 there and fp32 on the
CPU. The model is found offline like the trainer finds it (core.model_files).
"""

from __future__ import annotations

from collections.abc import Callable

BATCH = 32
MAX_TOKENS = 256  # enough to tell tasks apart; longer only costs time


def model_embedder(model: str, progress: Callable[[str, int], None] | None = None) -> Callable[[list[str]], object]:
    """A function texts -> (n, hidden) float32 numpy matrix using `model` (path, preset or cached repo)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from sft_tui.core.models.files import find_model_files

    folder = find_model_files(model).folder
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    encoder = AutoModel.from_pretrained(folder, local_files_only=True, dtype=dtype).to(device).eval()

    @torch.inference_mode()
    def embed(texts: list[str]):
        out = []
        for start in range(0, len(texts), BATCH):
            if progress:
                progress("embed with the model", start)
            batch = tokenizer(texts[start:start + BATCH], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt").to(device)
            hidden = encoder(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(out).numpy()

    return embed
