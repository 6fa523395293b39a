"""`sft-tui merge RUN -o DIR`: fold a LoRA adapter into its base and save a standalone model.

The base always loads in 16 bits (or 32) for the merge, QLoRA runs included: merging into
a 4-bit base rounds the merged weights back to 4 bits and loses the update, a known
failure in other tools. The result has the run's tokenizer and chat template, so
`AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)` are all
a user needs. Full fine-tuning runs are re-saved in the chosen dtype.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sft_tui.core.evaluate.merge_check import MERGE_DTYPES, check_merge_request
from sft_tui.core.evaluate.model_card import write_model_card
from sft_tui.core.models.files import find_model_files
from sft_tui.core.runs.files import share_tree
from sft_tui.core.runs.rundir import MODEL_CARD_NAME, RunDir


def merge_run(run: RunDir, output: Path, dtype: str = "bf16", force: bool = False, say: Callable[[str], None] = print) -> Path:
    """Merge (or re-save) the run's trained model into `output`; returns the folder."""
    trained = check_merge_request(run, output, dtype, force)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sft_tui.trainer.inference import run_config

    torch_dtype = getattr(torch, MERGE_DTYPES[dtype])
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
    # written beside the output and moved in when complete: a merge killed while it loads, merges or saves
    # leaves no half model; with --force each file is then replaced by a rename (other files in the folder stay)
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    say(f"saving the merged model ({dtype})")
    merged.save_pretrained(staging, safe_serialization=True)
    AutoTokenizer.from_pretrained(trained, **kwargs).save_pretrained(staging)
    write_model_card(run, staging / MODEL_CARD_NAME)
    share_tree(staging)
    if output.is_dir() and any(output.iterdir()):
        for item in staging.iterdir():
            os.replace(item, output / item.name)
        staging.rmdir()
    else:
        if output.is_dir():
            output.rmdir()
        staging.rename(output)
    say(f"wrote a standalone model to {output}: AutoModelForCausalLM.from_pretrained({str(output)!r})")
    return output
