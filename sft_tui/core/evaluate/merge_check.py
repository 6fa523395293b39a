"""The checks a merge request passes before any torch loads: a trained run, a known dtype, an empty or new folder."""

from __future__ import annotations

from pathlib import Path

from sft_tui.core.errors import UserError
from sft_tui.core.runs.rundir import RunDir

MERGE_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # our names -> torch dtype names


def check_merge_request(run: RunDir, output: Path, dtype: str, force: bool) -> Path:
    """The run's trained folder, after refusing an unknown dtype, a file as DIR, or a non-empty DIR without --force."""
    trained = run.require_trained_output()
    if dtype not in MERGE_DTYPES:
        raise UserError(f"unknown dtype {dtype!r}", "--dtype", "use bf16, fp16 or fp32")
    if output.exists() and not output.is_dir():
        raise UserError("the output is a file, not a folder", str(output), "choose a folder path")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise UserError("output folder is not empty; not writing into it", str(output), "choose an empty or new folder, or pass --force")
    return trained
