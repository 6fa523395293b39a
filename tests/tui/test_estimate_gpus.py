"""The estimator screen on several GPUs: the GPUs field and the strategy (DDP / FSDP full shard) beside the other fields,
per-GPU figures as `sft-tui estimate --gpus N --strategy S` gives them, one GPU unchanged, bad counts in one line.

Snapshots: `python -m pytest tests/tui/test_estimate_gpus.py --snapshot-update`, then look at
the SVGs in tests/tui/__snapshots__/test_estimate_gpus/ before committing them.
"""

from __future__ import annotations

import math

import pytest
from textual.widgets import Input, Select

from sft_tui.core.estimate.memory import TrainSettings, estimate_memory
from sft_tui.core.models.modelspec import resolve_model
from sft_tui.core.runs.store import RunStore
from sft_tui.tui.screens.estimate import breakdown_lines
from tests.tui.conftest import settle, until
from tests.tui.test_estimate_screen import (
    app_for,
    fill,
    open_estimator,
    steady_cursor,
    verdict,
)


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "home")


def breakdown(screen) -> str:
    return "\n".join(markup for markup, _ in breakdown_lines(screen.outcome))


async def test_a_70b_lora_on_four_80gb_gpus_with_fsdp_fits_per_gpu(store, cli):
    spec = resolve_model("llama3.1-70b")
    one = estimate_memory(spec, TrainSettings()).peak_gib
    four = estimate_memory(spec, TrainSettings(gpus=4, strategy="fsdp")).peak_gib
    assert four < 80.0 < one  # what the screen must show: one 80 GB GPU cannot hold it, four with FSDP can
    # outside the app: a running app takes over stdout
    out = cli("estimate", "llama3.1-70b", "--method", "lora", "--gpu", "a100-80gb", "--gpus", "4", "--strategy", "fsdp").out
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        await fill(pilot, model="llama3.1-70b", gpu="a100-80gb")
        assert f"peak {one:.2f} GiB of 80.0 GiB" in verdict(screen) and "✗ does NOT fit" in verdict(screen)
        await fill(pilot, gpus="4", strategy="fsdp")
        lines = verdict(screen).splitlines()
        assert lines[0] == "per GPU (4 GPUs, FSDP full shard): every memory figure below is one GPU's"
        assert lines[1].startswith(f"peak {four:.2f} GiB of 80.0 GiB · NVIDIA A100 80GB (picked)")
        assert lines[2].startswith(f"✓ fits each GPU, {80.0 - four:.1f} GiB headroom")
        assert lines[4].startswith("global batch 4 (1 × 1 accum × 4 GPUs) · ~")  # each GPU its own micro-batch
        assert all(len(line) <= 78 for line in lines) and screen.query_one("#verdict").region.bottom <= 23
        text = breakdown(screen)
        assert f"where the {four:.2f} GiB per GPU go" in text
        assert "sharded weights / 4: " in text and "gathered layers (FSDP): " in text and "on 4 GPUs at an assumed 85% scaling" in text
        # every figure is the CLI's: the report the screen copies out is the start of `sft-tui estimate`'s (the GPU named there by --gpu)
        assert "per GPU (4 GPUs, FSDP full shard)" in screen.report and out.startswith(screen.report.replace("(picked)", "(--gpu)"))
        await fill(pilot, tokens="10M")  # 4 GPUs step 4 sequences at once: a quarter of one GPU's optimizer steps
        assert f"at least {math.ceil(1e7 / (4 * 2048)):,} optimizer steps of 4 sequences" in breakdown(screen)


async def test_ddp_keeps_a_replica_and_adds_gradient_buckets(store):
    spec = resolve_model("qwen2.5-7b")
    two = estimate_memory(spec, TrainSettings(gpus=2, strategy="ddp"))
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        await fill(pilot, model="qwen2.5-7b", gpu="a100-80gb", gpus="2")
        assert screen.query_one("#strategy", Select).value == "ddp"  # the default, as [distributed] strategy
        lines = verdict(screen).splitlines()
        assert lines[0] == "per GPU (2 GPUs, DDP): every memory figure below is one GPU's" and f"peak {two.peak_gib:.2f} GiB" in lines[1]
        assert "DDP gradient buckets: " in breakdown(screen)


async def test_the_gpus_and_strategy_fields_are_reached_by_keys(store):
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        row = screen.query_one("#strategy-row")
        assert not row.display  # one GPU: no strategy to choose
        await pilot.press("shift+tab", "shift+tab")  # from the model field, past the breakdown, to the last field
        assert pilot.app.focused is screen.query_one("#gpus", Input)
        before = screen.outcome
        await pilot.press("4")  # the field's value is selected on focus: the key replaces it
        await pilot.press("tab")
        assert row.display and pilot.app.focused is screen.query_one("#strategy", Select)
        await pilot.press("enter", "down", "enter")
        await settle(pilot)
        assert screen.query_one("#strategy", Select).value == "fsdp"
        # the recompute runs once typing stops (a short timer)
        await until(pilot, lambda: screen.outcome != before and screen.outcome.estimate.memory.settings.strategy == "fsdp",
                    "the estimate on 4 GPUs with FSDP")
        assert screen.outcome.estimate.memory.settings.gpus == 4
        assert verdict(screen).startswith("per GPU (4 GPUs, FSDP full shard)")
        bottom = screen.query_one("#estimate-form").region.bottom
        assert row.region.bottom <= bottom <= 23  # the strategy row is on screen at 80x24, above the footer


async def test_one_gpu_is_the_estimate_of_before(store):
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        assert screen.query_one("#gpus", Input).value == "1"
        before, text = screen.outcome, verdict(screen)
        assert before.estimate.memory.settings == TrainSettings()
        await fill(pilot, gpus="4", strategy="fsdp")
        assert screen.outcome.estimate.memory.peak_gib < before.estimate.memory.peak_gib
        await fill(pilot, gpus="1")  # FSDP still picked: on one GPU it changes nothing
        assert screen.outcome == before and verdict(screen) == text and "per GPU" not in verdict(screen)
        assert not screen.query_one("#strategy-row").display


@pytest.mark.parametrize("value", ["0", "x", "65", ""])
async def test_a_bad_gpu_count_is_one_line(store, value):
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        good = screen.outcome
        await fill(pilot, gpus=value)
        shown = value or "empty"
        line = f"GPUs: {shown} is not 1 to 64 GPUs; type how many the run trains on, e.g. 4"
        assert screen.outcome.problem == line and screen.outcome.estimate is None
        assert verdict(screen) == f"✗ {line}" and len(verdict(screen)) <= 78 and screen.query_one("#verdict").has_class("-problem")
        await fill(pilot, gpus="1")
        assert screen.outcome == good


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_four_gpus_fsdp_snapshot(snap_compare, store, size):
    async def seventy_b_on_four(pilot):
        await open_estimator(pilot)
        await fill(pilot, model="llama3.1-70b", gpu="a100-80gb", gpus="4", strategy="fsdp", tokens="10M")
        await steady_cursor(pilot)

    assert snap_compare(app_for(store), terminal_size=size, run_before=seventy_b_on_four)
