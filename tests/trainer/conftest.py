"""Trainer tests: one tiny offline model per session, runs made from the demo config."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

T = TypeVar("T")

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
    from sft_tui.core.config.load import dump_run_config, load_run_config
    from sft_tui.core.runs.store import RunStore

    def make(*overrides: str):
        resolved = load_run_config(DEMO / "demo.toml", [f"model.name={tiny_model}", *overrides])
        return RunStore().create_run(dump_run_config(resolved.config), "tiny", resolved.config.method.name, name="t")

    return make


# Deadlines for waiting on real processes. They only bound a failure: a passing test returns
# as soon as the state it waits for appears. Sized for a loaded 2-core machine (load 10).
START_S = 300.0  # a job's process is up and has stepped (python + torch imports under load)
FINISH_S = 900.0  # a short run or job goes from started to done


def run_trainer(run, *args: str, env: dict | None = None, timeout: float = FINISH_S) -> subprocess.CompletedProcess:
    """Run `python -m sft_tui.trainer RUN` in the foreground."""
    import os

    return subprocess.run([sys.executable, "-m", "sft_tui.trainer", str(run.path), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `predicate` until it gives something true (a state change), and return that; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def state(run) -> str:
    """The effective state of a run or job ('unknown' when its status cannot be read)."""
    from sft_tui.core.runs.liveness import effective_state

    status, _ = run.status_or_reason()
    return effective_state(status) if status else "unknown"


def train_rows(run) -> list:
    """Every train row of the run's metrics.jsonl, typed."""
    return list(run.read_new_rows().train)


def events(run) -> list:
    """Every event row of the run's metrics.jsonl, typed."""
    return list(run.read_new_rows().events)
