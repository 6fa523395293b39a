"""Snapshots of Home, Monitor, Data, Chat and the key overlay at 80x24 and 120x40, from frozen data (no clock, no live GPU).

The Wizard, Launch, Estimator, Compare, log viewer and eval report have their own snapshot files.

Update after an intended change: `python -m pytest tests/tui/test_snapshots.py --snapshot-update`,
then look at the SVGs in tests/tui/__snapshots__/ before committing them.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

from sft_tui.core.runs.schema import EvalRow, JobError, JobStatus, SystemRow, TrainRow, now_iso
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
    # a run training now on the fake A100 (this test process stands in for its trainer) with the GPU samples its supervisor wrote
    live = store.create_run('[model]\nname = "qwen2.5-7b"\n[method]\nname = "qlora"\n', "qwen2.5-7b", "qlora", name="support-bot-qlora",
                            now=FROZEN.replace(hour=11))
    live.write_status(JobStatus("running", os.getpid(), stamp, now_iso(), step=180, max_steps=600, eta_s=1260.0, owner="ana", host="gpu-box"))
    for step in range(10, 181, 10):
        live.append_metric(TrainRow(step=step, loss=0.9 + 1.6 / (1 + step / 40), learning_rate=1e-4, grad_norm=0.5 + 0.3 * (step % 30 == 0),
                                    tokens_per_s=2900.0 + step, wall_s=step * 3.0, epoch=step / 400, gpu_reserved_gib=17.0))
    start = FROZEN.timestamp()
    for i in range(60):
        live.append_metric(SystemRow(step=i * 3, time=start + i * 10, gpu_count=1, gpu_mem_used_gib=min(17.4, 2.0 + i), gpu_mem_total_gib=80.0,
                                     gpu_util_pct=96.0 if i > 3 else 10.0, gpu_temp_c=45.0 + min(i, 20), gpu_power_w=300.0 if i > 3 else 80.0,
                                     gpu_power_limit_w=400.0, host_cpu_pct=12.0, process_rss_gib=3.0, process_cpu_pct=100.0))
    live.log_path.write_text("".join(f"step {s:>5}/600  loss {0.9 + 1.6 / (1 + s / 40):.3f}  lr 1.0e-04  grad 0.50  2,900 tok/s  ETA 21m\n"
                                     for s in range(10, 181, 10)))
    queued = store.create_run('[model]\nname = "llama3.2-3b"\n[method]\nname = "lora"\n', "llama3.2-3b", "lora", name="sql-lora",
                              now=FROZEN.replace(hour=12))
    queued.write_status(JobStatus("queued", 0, stamp, now_iso(), max_steps=400, owner="ben", host="gpu-box"))
    return store


def app_for(store, sampler=None, **kwargs):
    from tests.tui.test_app import no_launch

    kwargs.setdefault("launch_fn", no_launch)  # never the real launcher, also not from the app's queue admission
    kwargs.setdefault("current_owner", lambda: ("ana", "gpu-box"))  # the same person at the keyboard on every machine
    return SftApp(store, sampler or FixedSampler(), poll_s=NO_TIMERS, **kwargs)


class NoGpuSampler(FixedSampler):
    """A box whose NVML is missing: the monitor says so in one line."""

    def __init__(self):
        SystemSampler.__init__(self, FakeNvml(fail_init="NVML Shared Library Not Found"), clock=lambda: 0.0)


SIZES = [(80, 24), (120, 40)]


async def laid_out(pilot):
    """Settled, and (on a monitor) the GPU readings in: they arrive from a worker after the first snapshot.

    Never raises: run_before runs inside the app, where a failing pytest outcome (a BaseException)
    would leave the app running and the test hanging; a picture that differs fails the test instead.
    """
    await settle(pilot)
    for _ in range(50):
        system = pilot.app.screen.query("#system")
        if not system or "sampling" not in str(system.first().render()):
            return
        await settle(pilot, rounds=1)


def keys(*pressed):
    async def run_before(pilot):
        await laid_out(pilot)
        for key in pressed:
            await pilot.press(key)
            await laid_out(pilot)
    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_home(snap_compare, frozen_store, size):
    """Queued, running, completed and failed runs: name, owner, state, progress, loss, tok/s and ETA fit 80 columns."""
    assert snap_compare(app_for(frozen_store), terminal_size=size, run_before=laid_out)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_of_a_running_run_on_a_gpu(snap_compare, frozen_store, size):
    assert snap_compare(app_for(frozen_store, open_run="support-bot"), terminal_size=size, run_before=laid_out)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_gpu_chart_from_recorded_samples(snap_compare, frozen_store, size):
    """`c` three times: loss -> tokens/s -> GPU memory -> utilisation/temperature/power, told apart by markers."""
    assert snap_compare(app_for(frozen_store, open_run="support-bot"), terminal_size=size, run_before=keys("c", "c", "c"))


@pytest.mark.parametrize("size", SIZES)
def test_monitor_of_a_finished_run_without_a_gpu(snap_compare, frozen_store, size):
    assert snap_compare(app_for(frozen_store, NoGpuSampler(), open_run="json-lora"), terminal_size=size, run_before=laid_out)


@pytest.mark.parametrize("size", SIZES)
def test_key_overlay(snap_compare, frozen_store, size):
    assert snap_compare(app_for(frozen_store, open_run="support-bot"), terminal_size=size, run_before=keys("question_mark"))


def test_stop_asks_first(snap_compare, frozen_store):
    assert snap_compare(app_for(frozen_store, open_run="support-bot"), terminal_size=(80, 24), run_before=keys("s"))


def test_monitor_at_60x20_keeps_eta_and_the_gpu(snap_compare, frozen_store):
    assert snap_compare(app_for(frozen_store, open_run="support-bot"), terminal_size=(60, 20), run_before=laid_out)


def test_monitor_without_colour(snap_compare, frozen_store, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")  # readable without colour: states and errors are words, not only colours
    assert snap_compare(app_for(frozen_store, open_run="big"), terminal_size=(80, 24), run_before=laid_out)


@pytest.mark.parametrize("size", SIZES)
def test_data_screen_inspecting_the_demo_data(snap_compare, frozen_store, monkeypatch, size):
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

    assert snap_compare(app_for(frozen_store), terminal_size=size, run_before=inspect)


class ScriptedChat:
    """A chat backend that answers at once, the same every time (no model, no process)."""

    def start(self):
        return "adapter of json-lora on qwen2.5-1.5b"

    def reply(self, messages, which):
        yield '{"age": 3, "city": "Oslo"}' if which == "tuned" else "Sure! Here is some JSON about age and city."

    def close(self):
        pass


@pytest.mark.parametrize("size", SIZES)
def test_chat(snap_compare, frozen_store, size):
    done = frozen_store.find_run("json-lora")
    (done.path / "adapter").mkdir()
    (done.path / "adapter" / "adapter_config.json").write_text("{}")

    async def ask(pilot):
        await settle(pilot)
        await pilot.press(*"age=3 city=Oslo")
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(app_for(frozen_store, chat_run="json-lora", chat_backend=lambda run: ScriptedChat()), terminal_size=size, run_before=ask)
