"""The estimator screen at 80x24: focus, the verdict above the fold, time from tokens, accumulation, GPUs by name, bad input,
the room on this box now.

Snapshots: `python -m pytest tests/tui/test_estimate_screen.py --snapshot-update`, then look
at the SVGs in tests/tui/__snapshots__/test_estimate_screen/ before committing them.
"""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input, OptionList, Static

from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from sft_tui.tui.app import SftApp
from sft_tui.tui.screens.estimate import (
    EstimateScreen,
    breakdown_lines,
    format_duration,
    parse_token_count,
)
from tests.tui.conftest import NO_TIMERS, settle, until
from tests.tui.test_snapshots import FixedSampler
from tests.unit.test_cli_estimate import admit_run, two_gpu_nvml
from tests.unit.test_sysmon import FakeNvml


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "home")


def app_for(store, sampler=None):
    return SftApp(store, sampler or FixedSampler(), poll_s=NO_TIMERS)


async def open_estimator(pilot) -> EstimateScreen:
    await settle(pilot)
    await pilot.press("e")
    await settle(pilot)
    assert isinstance(pilot.app.screen, EstimateScreen)
    return pilot.app.screen


async def fill(pilot, **values: str) -> None:
    """Set form fields the way typing does (each posts Changed) and wait for the estimate to change."""
    screen = pilot.app.screen
    before = screen.outcome
    for widget_id, value in values.items():
        screen.query_one(f"#{widget_id}").value = value
    await until(pilot, lambda: screen.outcome != before, "the estimate to recompute")


def verdict(screen) -> str:
    return screen.query_one("#verdict", Static).visual.plain


async def test_focus_starts_on_the_model_field_so_the_first_key_edits_it(store):
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        assert pilot.app.focused is screen.query_one("#model")
        await pilot.press("p", "h", "i")  # the default name is selected: typing replaces it, no key lost
        assert screen.query_one("#model").value == "phi"


async def test_the_verdict_is_above_the_fold_at_80x24(store):
    from sft_tui.core.estimate.fit import build_estimate, detected_gpu
    from sft_tui.core.estimate.memory import TrainSettings
    from sft_tui.core.models.modelspec import resolve_model

    expected = build_estimate(resolve_model("qwen2.5-1.5b"), TrainSettings(), detected_gpu(FixedSampler()))
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        box = screen.query_one("#verdict")
        assert box.region.y == 0 and box.region.bottom <= 23 and box.region.width == 80  # the footer takes row 23
        text = verdict(screen)
        assert f"peak {expected.memory.peak_gib:.2f} GiB of 80.0 GiB · NVIDIA A100-SXM4-80GB (detected)" in text
        assert f"✓ fits, {expected.headroom_gib:.1f} GiB headroom" in text
        assert f"largest micro-batch at seq 2,048: {expected.max_batch_size} · longest seq at micro-batch 1: {expected.max_seq_len:,}" in text
        assert all(len(line) <= 78 for line in text.splitlines())  # one row each: nothing wraps the breakdown away

        await fill(pilot, model="llama3.1-8b", gpu="t4")
        text = verdict(screen)
        assert "of 15.0 GiB · NVIDIA T4 16GB (picked)" in text and "✗ does NOT fit:" in text and "GiB over · try: " in text
        assert screen.outcome.estimate.fits is False
        assert box.region.bottom <= 23


async def test_tokens_give_the_same_time_as_the_cli(store, cli):
    data = json.loads(cli("estimate", "qwen2.5-1.5b", "--gpu", "a100-80gb", "--tokens", "1e7", "--json").out)
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        assert "type tokens for a time" in verdict(screen)
        await fill(pilot, tokens="10M", gpu="a100-80gb")
        time = screen.outcome.estimate.time
        assert time.eta_s == pytest.approx(data["eta_s"], abs=0.1) and time.tokens_per_s == pytest.approx(data["tokens_per_s"], abs=0.1)
        assert f"~{data['tokens_per_s']:,.0f} tok/s · 10M tokens: ~{format_duration(data['eta_s'])}" in verdict(screen)


async def test_accumulation_sets_the_effective_batch_and_leaves_the_time_alone(store):
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        await fill(pilot, tokens="10M")
        one = screen.outcome.estimate
        await fill(pilot, grad_accum="8")
        eight = screen.outcome.estimate
        assert "effective batch 8 (1 × 8 accum)" in verdict(screen)
        assert eight.memory.settings.grad_accum == 8 and eight.time.eta_s == one.time.eta_s  # time follows tokens
        await fill(pilot, batch_size="4")
        four = screen.outcome.estimate
        assert "effective batch 32 (4 × 8 accum)" in verdict(screen)
        assert four.memory.peak_gib > eight.memory.peak_gib  # memory follows the micro-batch
        assert any("10M tokens: ~" in text and "at least 153 optimizer steps of 32 sequences" in text for text, _ in breakdown_lines(screen.outcome))


async def test_gpus_by_name_detected_or_sized(store):
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        gpu = screen.query_one("#gpu")
        listing = gpu.query_one(OptionList)
        prompts = [str(listing.get_option_at_index(i).prompt) for i in range(listing.option_count)]
        assert prompts[:3] == ["#0 A100-SXM4-80GB", "#1 T4", "T4 16GB"] and "H100 80GB (SXM)" in prompts  # detected first, then the table
        assert gpu.value == "detected:0"
        await fill(pilot, gpu="detected:1")
        assert "of 15.0 GiB · Tesla T4 (detected)" in verdict(screen) and screen.outcome.estimate.time is not None
        await fill(pilot, gpu="rtx4090")
        assert "of 24.0 GiB · NVIDIA GeForce RTX 4090 24GB (picked)" in verdict(screen)
        await fill(pilot, gpu_gib="20")  # the picked GPU with less memory (another job holds some), as --gpu with --gpu-gib
        assert "of 20.0 GiB · NVIDIA GeForce RTX 4090 24GB" in verdict(screen) and screen.outcome.estimate.time is not None


async def test_without_a_detected_gpu_it_asks_for_one(store):
    async with app_for(store, SystemSampler(FakeNvml(fail_init="Driver Not Loaded"))).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        assert screen.query_one("#gpu").value == "none"
        assert "no NVIDIA GPU detected here" in verdict(screen) and "pick a GPU by name" in verdict(screen)
        assert " now: " not in verdict(screen) and screen.outcome.estimate.room is None  # no room to speak of
        await fill(pilot, gpu="l4")
        assert "NVIDIA L4 24GB (picked)" in verdict(screen)


async def test_the_verdict_says_whether_the_run_starts_now_on_this_box(store):
    admit_run(store, 20.0, gpu=1)  # GPU1: 4 GiB free; GPU0: 14 (another process holds 10)
    async with app_for(store, SystemSampler(two_gpu_nvml())).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        lines = verdict(screen).splitlines()
        assert "of 24.0 GiB · NVIDIA GeForce RTX 4090 (detected)" in lines[0] and "✓ fits" in lines[1]  # against the whole GPU, as before
        assert lines[-1] == "GPU0 now: 14.0 of 24.0 GiB free (10.0 other, 0.0 sft-tui) · ✓ starts now"
        await fill(pilot, model="qwen2.5-7b")  # ~20.9 GiB: fits an empty 24 GiB GPU, not the 14 free now
        lines = verdict(screen).splitlines()
        assert "✓ fits" in lines[1] and lines[-1] == "GPU0 now: 14.0 of 24.0 GiB free (10.0 other, 0.0 sft-tui) · ✗ waits: queue it"
        assert all(len(line) <= 78 for line in lines) and screen.query_one("#verdict").region.bottom <= 23
        text = " ".join(markup for markup, _ in breakdown_lines(screen.outcome))
        assert "does not fit now; it fits the GPU when empty: queue it (sft-tui train CONFIG --queue)" in text
        await fill(pilot, model="llama3.1-8b", method="full")  # no GPU here holds it, even empty
        assert verdict(screen).splitlines()[-1].endswith("· ✗ no GPU here holds it")
        await fill(pilot, gpu="rtx4090")  # a GPU by name is any machine's: this box's room says nothing about it
        assert " now: " not in verdict(screen) and screen.outcome.estimate.room is None


async def test_the_room_is_sampled_again_while_the_screen_is_open(store):
    async with app_for(store, SystemSampler(two_gpu_nvml())).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        assert verdict(screen).splitlines()[-1].startswith("GPU1 now: 24.0 of 24.0 GiB free (0.0 other, 0.0 sft-tui)")
        admit_run(store, 20.0, gpu=1)  # someone's run was admitted to GPU1 meanwhile
        before = screen.outcome
        screen.sample_rooms()  # the screen's timer does this every few seconds
        await until(pilot, lambda: screen.outcome != before, "the room to be sampled again")
        assert verdict(screen).splitlines()[-1].startswith("GPU0 now: 14.0 of 24.0 GiB free (10.0 other, 0.0 sft-tui)")


@pytest.mark.parametrize("field, value, line, fix", [
    ("tokens", "lots", "tokens: 'lots' is not a token count; type e.g. 10M", ""),
    ("tokens", "-5", "tokens: must be more than 0", ""),
    ("seq_len", "", "seq len: empty is not a whole number of at least 1", "2048"),
    ("batch_size", "0", "micro-batch: 0 is not a whole number of at least 1", "1"),
    ("grad_accum", "", "accumulation: empty is not a whole number", "1"),
    ("gpu_gib", "0", "GPU GiB: 0 is not a GPU's memory", ""),
    ("model", "no-such-model", "unknown model 'no-such-model'", "qwen2.5-1.5b"),
    ("model", "", "model: empty; type a preset", "qwen2.5-1.5b"),
    ("lora_targets", "nonsense", "LoRA on: LoRA target 'nonsense' is not a linear layer", "all-linear"),
])
async def test_bad_input_is_one_line_on_the_screen(store, field, value, line, fix):
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        good = screen.outcome
        await fill(pilot, **{field: value})
        assert line in screen.outcome.problem and "\n" not in screen.outcome.problem and screen.outcome.estimate is None
        assert line in verdict(screen).replace("\n", " ") and screen.query_one("#verdict").has_class("-problem")
        await fill(pilot, **{field: fix})
        assert screen.outcome == good  # fixing the field brings the estimate back


async def test_page_keys_scroll_the_breakdown_from_any_field(store):
    async with app_for(store).run_test(size=(80, 24)) as pilot:
        screen = await open_estimator(pilot)
        box = screen.query_one("#estimate-breakdown")
        assert box.scroll_y == 0 and box.max_scroll_y > 0
        await pilot.press("pagedown")
        await settle(pilot)
        assert box.scroll_y > 0 and pilot.app.focused is screen.query_one("#model")
        await pilot.press("pageup")
        await settle(pilot)
        assert box.scroll_y == 0
        await pilot.press("tab", "enter")  # an open GPU list keeps its own paging
        await settle(pilot)
        listing = pilot.app.focused
        assert listing.highlighted == 0
        await pilot.press("pagedown")
        await settle(pilot)
        assert listing.highlighted > 0 and box.scroll_y == 0


@pytest.mark.parametrize("text, tokens", [("10M", 1e7), ("1.5b", 1.5e9), ("250k", 2.5e5), ("1e7", 1e7), ("10,000,000", 1e7), ("", None)])
def test_token_counts_as_people_write_them(text, tokens):
    assert parse_token_count(text) == tokens


@pytest.mark.parametrize("text", ["abc", "-5", "0", "inf", "nan", "10X"])
def test_token_counts_that_are_not(text):
    from sft_tui.core.errors import UserError

    with pytest.raises(UserError):
        parse_token_count(text)


async def steady_cursor(pilot) -> None:
    """The focused field's cursor blinks on a timer: hold it on so the picture does not depend on timing."""
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_estimator_snapshot(snap_compare, store, size):
    async def with_tokens(pilot):
        await open_estimator(pilot)
        await fill(pilot, tokens="10M", grad_accum="8")
        await steady_cursor(pilot)

    assert snap_compare(app_for(store), terminal_size=size, run_before=with_tokens)


def test_estimator_snapshot_when_it_does_not_fit(snap_compare, store):
    async def too_big(pilot):
        await open_estimator(pilot)
        await fill(pilot, model="llama3.1-8b", gpu="t4", tokens="50M")
        await steady_cursor(pilot)

    assert snap_compare(app_for(store), terminal_size=(80, 24), run_before=too_big)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_estimator_snapshot_when_it_waits_for_room(snap_compare, store, size):
    admit_run(store, 20.0, gpu=1)

    async def busy_box(pilot):
        await open_estimator(pilot)
        await fill(pilot, model="qwen2.5-7b", tokens="10M")
        await steady_cursor(pilot)

    assert snap_compare(app_for(store, SystemSampler(two_gpu_nvml())), terminal_size=size, run_before=busy_box)
