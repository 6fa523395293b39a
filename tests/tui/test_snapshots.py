"""Snapshots of Home, Monitor and Estimator at 80x24 and 120x40, from frozen data (no clock, no live GPU).

Update after an intended change: `python -m pytest tests/tui/test_snapshots.py --snapshot-update`,
then look at the SVGs in tests/tui/__snapshots__/ before committing them.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from sft_tui.core.runs.schema import EvalRow, JobError, JobStatus, TrainRow
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import HostSample, SystemSampler
from sft_tui.tui.app import SftApp
from tests.tui.conftest import NO_TIMERS, settle
from tests.unit.test_sysmon import FakeNvml

FROZEN = datetime(2026, 11, 22, 9, 30, tzinfo=timezone.utc)


class FixedSampler(SystemSampler):
    """The fake NVML's two GPUs and a host that never changes."""

    def __init__(self):
        super().__init__(FakeNvml(), clock=lambda: 0.0)

    def sample_host(self, pid=None):
        return HostSample(12.0, 16, 24 * 2**30, 128 * 2**30, 3 * 2**30 if pid else None, 95.0 if pid else None, 0.0)


@pytest.fixture()
def frozen_store(tmp_path):
    store = RunStore(tmp_path / "home")
    stamp = FROZEN.isoformat()
    done = store.create_run('[model]\nname = "qwen2.5-1.5b"\n[method]\nname = "lora"\n', "qwen2.5-1.5b", "lora", name="json-lora", now=FROZEN)
    done.write_status(JobStatus("completed", 4242, stamp, stamp, step=300, max_steps=300))
    for step in range(1, 301, 3):
        done.append_metric(TrainRow(step=step, loss=0.6 + 2.4 / (1 + step / 25), learning_rate=2e-4 * (1 - step / 300), grad_norm=0.8,
                                    tokens_per_s=4100.0, gpu_mem_gib=9.5, gpu_reserved_gib=11.2))
        if step % 60 == 1:
            done.append_metric(EvalRow(step=step, eval_loss=0.7 + 2.4 / (1 + step / 25)))
    done.log_path.write_text("[sft-tui] data: alpaca, 4,800 training rows, 200 eval rows\n[sft-tui] completed at step 300: loss 3.0 -> 0.83\n")
    oom = store.create_run('[model]\nname = "llama3.1-8b"\n[method]\nname = "lora"\n', "llama3.1-8b", "lora", name="big", now=FROZEN.replace(hour=10))
    oom.write_status(JobStatus("failed", 4343, stamp, stamp, step=12, max_steps=500,
                               error=JobError("oom", "out of memory at step 12; peak reserved 79.2 of 79.6 GiB",
                                              "the estimator says this fits in 80 GiB: gradient checkpointing on (about 38.1 GiB)")))
    return store


def app_for(store, **kwargs):
    return SftApp(store, FixedSampler(), poll_s=NO_TIMERS, **kwargs)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_home(snap_compare, frozen_store, size):
    assert snap_compare(app_for(frozen_store), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_monitor(snap_compare, frozen_store, size):
    assert snap_compare(app_for(frozen_store, open_run="json-lora"), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_estimator(snap_compare, frozen_store, size):
    async def open_estimator(pilot):
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)

    assert snap_compare(app_for(frozen_store), terminal_size=size, run_before=open_estimator)


def test_monitor_without_colour(snap_compare, frozen_store, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")  # readable without colour: states and errors are words, not only colours
    assert snap_compare(app_for(frozen_store, open_run="big"), terminal_size=(80, 24), run_before=settle)


def test_data_screen_inspecting_the_demo_data(snap_compare, frozen_store, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # a relative path keeps the picture the same on every machine

    async def inspect(pilot):
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        pilot.app.screen.query_one("#data-path").value = "assets/demo/train.jsonl"
        pilot.app.screen.query_one("#data-seq-len").value = "40"
        await pilot.click("#data-inspect")
        await settle(pilot)

    assert snap_compare(app_for(frozen_store), terminal_size=(120, 40), run_before=inspect)
