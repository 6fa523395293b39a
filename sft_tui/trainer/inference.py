"""Load a finished run for inference: eval, chat and merge share this.

LoRA/QLoRA: the base model with the run's adapter on top (peft). The base model's own
answers come from the same object inside `model.disable_adapter()`, so one copy of the
weights serves both. Full fine-tuning: the saved model, and the base loaded beside it.
QLoRA runs load their base in 4 bits on a GPU, as they were trained; on a CPU (no
bitsandbytes 4-bit kernels there) the base loads in 32 bits, and the report says so.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from sft_tui.core.config.load import config_from_toml_text
from sft_tui.core.config.schema import RunConfig
from sft_tui.core.models.files import find_model_files
from sft_tui.core.runs.rundir import RunDir


@dataclass
class LoadedRun:
    """A run ready to generate: the tuned model, a way to switch to the base, and the run's tokenizer."""

    config: RunConfig
    tokenizer: object
    tuned: object
    base_model: object | None  # full fine-tuning only; LoRA uses the adapter switch
    device: str
    note: str  # how the models were loaded, for reports

    @contextmanager
    def use(self, which: str):
        """Yield the model for 'tuned' or 'base'."""
        if which == "tuned":
            yield self.tuned
        elif self.base_model is not None:
            yield self.base_model
        else:
            with self.tuned.disable_adapter():
                yield self.tuned


def run_config(run: RunDir) -> RunConfig:
    """The resolved config the run used."""
    return config_from_toml_text(run.read_config_text(), str(run.config_path))


def _dtype(device: str) -> torch.dtype:
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_run(run: RunDir) -> LoadedRun:
    """The run's tuned model (and base) with its saved tokenizer and chat template, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = run.require_trained_output()
    config = run_config(run)
    base_folder = find_model_files(config.model.name).folder
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = _dtype(device)
    kwargs = dict(local_files_only=True, trust_remote_code=config.model.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(output, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    note = f"{device}, {str(dtype).removeprefix('torch.')}"
    if config.method.name == "full":
        tuned = AutoModelForCausalLM.from_pretrained(output, dtype=dtype, **kwargs).to(device).eval()
        base = AutoModelForCausalLM.from_pretrained(base_folder, dtype=dtype, **kwargs).to(device).eval()
        return LoadedRun(config, tokenizer, tuned, base, device, note)
    from peft import PeftModel

    quantization = None
    if config.method.name == "qlora":
        if device == "cuda":
            from transformers import BitsAndBytesConfig

            quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=config.method.quant_type,
                                              bnb_4bit_use_double_quant=config.method.double_quant, bnb_4bit_compute_dtype=dtype)
            note += ", base in 4 bits as trained"
        else:
            note += ", QLoRA base in 32 bits (no 4-bit kernels on the CPU)"
    base = AutoModelForCausalLM.from_pretrained(base_folder, dtype=dtype, quantization_config=quantization,
                                                **({"device_map": {"": device}} if quantization else {}), **kwargs)
    if quantization is None:
        base = base.to(device)
    tuned = PeftModel.from_pretrained(base, output, is_trainable=False).eval()
    return LoadedRun(config, tokenizer, tuned, None, device, note)


def end_token_ids(tokenizer, model) -> list[int]:
    """Token ids that end an answer: the tokenizer's EOS and the generation config's."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in configured if isinstance(configured, list) else [configured]:
        if value is not None:
            ids.add(int(value))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>") if token in vocab)
    return sorted(ids)


def prompt_text(tokenizer, messages: list[dict]) -> str:
    """The chat template applied to a conversation, ready for the assistant's turn."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


