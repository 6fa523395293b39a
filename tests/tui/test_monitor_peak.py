"""The monitor puts a CUDA run's measured peak beside the estimate it was launched with; CPU runs show what they did."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sft_tui.core.runs.schema import Placement, SystemRow, TrainRow, TrainSummary
from sft_tui.core.runs.watch import RunWatcher
from sft_tui.tui.screens.monitor import MonitorScreen
from sft_tui.tui.widgets.measured_peak import measured_peak_lines
from tests.tui.conftest import settle
from tests.tui.test_snapshots import FROZEN, SIZES, app_for, frozen_store, laid_out  # noqa: F401 - the frozen_store fixture

SUMMARY = TrainSummary(state="completed", steps=300, max_steps=300, first_loss=3.0, final_loss=0.83, peak_gpu_reserved_gib=12.6,
                       measured_peak_allocated_gib=10.9, measured_peak_phase="backward", measured_context_gib=0.5,
                       gpu_name="NVIDIA A100-SXM4-80GB", estimated_peak_gib=13.5, device="cuda", precision="bf16")


@pytest.fixture()
def peak_store(frozen_store):  # noqa: F811
    """The frozen store with estimates: the live QLoRA run launched at 17.5 GiB; json-lora finished with a measured summary."""
    live = frozen_store.find_run("support-bot")
    live.write_placement(Placement(submitted_at=FROZEN.isoformat(), device="cuda", estimate_gib=17.5, gpus=(0,)))
    done = frozen_store.find_run("json-lora")
    done.write_placement(Placement(submitted_at=FROZEN.isoformat(), device="cuda", estimate_gib=13.5, gpus=(0,)))
    for i in range(30):
        done.append_metric(SystemRow(step=i * 10, time=FROZEN.timestamp() + i * 10, gpu_count=1, gpu_mem_used_gib=min(13.2, 2.0 + i),
                                     gpu_mem_total_gib=80.0, gpu_util_pct=96.0, gpu_temp_c=60.0, gpu_power_w=300.0, process_rss_gib=3.0))
    done.write_summary(SUMMARY)
    return frozen_store


def snapshot_of(run):
    return RunWatcher(run).poll()


def test_a_finished_run_shows_the_summarys_peak_with_the_cuda_context_and_where_it_happened(peak_store):
    lines = measured_peak_lines(snapshot_of(peak_store.find_run("json-lora")), None, width=26)
    assert lines == ["peak 13.1 / est 13.5 GiB", "     in the backward pass"]  # 12.6 reserved + 0.5 context, as the estimate counts
    assert measured_peak_lines(snapshot_of(peak_store.find_run("json-lora")), None, width=40)[0] == "peak 13.1 GiB, estimated 13.5 GiB"
    assert measured_peak_lines(snapshot_of(peak_store.find_run("json-lora")), None, width=30)[0] == "peak 13.1 GiB, est. 13.5 GiB"


def test_a_live_run_shows_the_largest_reserved_row_against_its_launch_estimate(peak_store):
    live = peak_store.find_run("support-bot")
    live.append_metric(TrainRow(step=190, loss=1.0, gpu_reserved_gib=17.3))
    live.append_metric(TrainRow(step=200, loss=1.0, gpu_reserved_gib=17.1))
    assert measured_peak_lines(snapshot_of(live), 17.5, width=26) == ["peak 17.3 / est 17.5 GiB"]


def test_no_line_without_a_gpu_measurement_or_an_estimate(peak_store):
    cpu = snapshot_of(peak_store.find_run("big"))  # no rows at all
    assert measured_peak_lines(cpu, 13.5) == [] and measured_peak_lines(snapshot_of(peak_store.find_run("support-bot")), None) == []
    snapshot = snapshot_of(peak_store.find_run("json-lora"))
    cpu_summary = replace(snapshot, summary=replace(SUMMARY, peak_gpu_reserved_gib=None, device="cpu"),
                          train=tuple(replace(r, gpu_reserved_gib=None) for r in snapshot.train))
    assert measured_peak_lines(cpu_summary, 13.5) == []


def test_a_stale_summary_gives_way_to_the_rows_of_the_resumed_run(peak_store):
    snapshot = snapshot_of(peak_store.find_run("json-lora"))
    stale = replace(snapshot, summary=replace(SUMMARY, stale=True))
    assert measured_peak_lines(stale, 13.5, width=26) == ["peak 11.2 / est 13.5 GiB"]  # the rows' reserved peak, no phase yet


async def test_the_monitor_reads_the_launch_estimate_and_shows_the_line_under_the_gpu(peak_store):
    async with app_for(peak_store, open_run="support-bot").run_test(size=(80, 24)) as pilot:
        await laid_out(pilot)
        monitor = pilot.app.screen
        assert isinstance(monitor, MonitorScreen) and monitor.estimate_gib == 17.5
        lines = str(monitor.query_one("#system").render()).splitlines()
        assert lines.index("peak 17.0 / est 17.5 GiB") == next(i for i, line in enumerate(lines) if line.startswith("host")) - 1


async def test_a_cpu_runs_monitor_has_no_peak_line(frozen_store):  # noqa: F811
    run = frozen_store.find_run("json-lora")
    run.write_placement(Placement(submitted_at=FROZEN.isoformat(), device="cpu", estimate_gib=0.6))
    async with app_for(frozen_store, open_run="json-lora").run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "est" not in str(pilot.app.screen.query_one("#system").render())


@pytest.mark.parametrize("size", SIZES)
def test_monitor_of_a_live_cuda_run_with_its_estimate(snap_compare, peak_store, size):
    assert snap_compare(app_for(peak_store, open_run="support-bot"), terminal_size=size, run_before=laid_out)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_of_a_finished_cuda_run_with_its_measured_peak(snap_compare, peak_store, size):
    assert snap_compare(app_for(peak_store, open_run="json-lora"), terminal_size=size, run_before=laid_out)
