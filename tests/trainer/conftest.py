"""Trainer tests: one tiny offline model per session, runs made from the demo config."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The demo's tiny model (fewer pre-training steps: tests need it to train, not to learn well)."""
    from sft_tui.trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", [DEMO / "train.jsonl"], pretrain_steps=20)


@pytest.fixture()
def make_run(runs_home, tiny_model):
    """A queued run dir from the demo config plus overrides (`section.key=value`)."""
    from sft_tui.core.config import dump_run_config, load_run_config
    from sft_tui.core.runs import RunStore

    def make(*overrides: str):
        resolved = load_run_config(DEMO / "demo.toml", [f"model.name={tiny_model}", *overrides])
        return RunStore().create_run(dump_run_config(resolved.config), "tiny", resolved.config.method.name, name="t")

    return make


def run_trainer(run, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m sft_tui.trainer RUN` in the foreground."""
    import os

    return subprocess.run([sys.executable, "-m", "sft_tui.trainer", str(run.path), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def metrics(run) -> list[dict]:
    """Every row of the run's metrics.jsonl."""
    return [json.loads(line) for line in run.metrics_path.read_text().splitlines() if line.strip()]
