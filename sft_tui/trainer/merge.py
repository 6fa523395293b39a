"""`sft-tui merge RUN -o DIR`: fold a LoRA adapter into its base and save a standalone model.

The base always loads in 16 bits (or 32) for the merge, QLoRA runs included: merging into
a 4-bit base rounds the merged weights back to 4 bits and loses the update, a known
failure in other tools. The result has the run's tokenizer and chat template, so
`AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)` are all
a user needs. Full fine-tuning runs are re-saved in the chosen dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sft_tui.core.errors import UserError
from sft_tui.core.model_card import write_model_card
from sft_tui.core.model_files import find_model_files
from sft_tui.core.runs import RunDir

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # torch dtype names; torch loads only once the request is valid


def check_merge_request(run: RunDir, output: Path, dtype: str, force: bool) -> Path:
    """The run's trained folder, after refusing an unknown dtype, a file as DIR, or a non-empty DIR without --force."""
    trained = run.require_trained_output()
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}", "--dtype", "use bf16, fp16 or fp32")
    if output.exists() and not output.is_dir():
        raise UserError("the output is a file, not a folder", str(output), "choose a folder path")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise UserError("output folder is not empty; not writing into it", str(output), "choose an empty or new folder, or pass --force")
    return trained


def merge_run(run: RunDir, output: Path, dtype: str = "bf16", force: bool = False, say: Callable[[str], None] = print) -> Path:
    """Merge (or re-save) the run's trained model into `output`; returns the folder."""
    trained = check_merge_request(run, output, dtype, force)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sft_tui.trainer.inference import run_config

    torch_dtype = getattr(torch, DTYPES[dtype])
    config = run_config(run)
    kwargs = dict(local_files_only=True, trust_remote_code=config.model.trust_remote_code)
    if config.method.name == "full":
        say(f"full fine-tuning: re-saving {trained} in {dtype}")
        merged = AutoModelForCausalLM.from_pretrained(trained, dtype=torch_dtype, **kwargs)
    else:
        from peft import PeftModel

        base_folder = find_model_files(config.model.name).folder
        if config.method.name == "qlora":
            say(f"QLoRA run: loading the base in {dtype}, not 4 bits, to merge (merging into a 4-bit base would round the update away)")
        say(f"merging {trained} into {base_folder} ({dtype})")
        base = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch_dtype, **kwargs)
        merged = PeftModel.from_pretrained(base, trained).merge_and_unload()
    output.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output, safe_serialization=True)
    AutoTokenizer.from_pretrained(trained, **kwargs).save_pretrained(output)
    write_model_card(run, output / "README.md")
    say(f"wrote a standalone model to {output}: AutoModelForCausalLM.from_pretrained({str(output)!r})")
    return output
