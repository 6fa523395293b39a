"""The monitor of a multi-GPU run (issue 18): one line per rank with its GPU, fitted to the side panel's width and rows."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from sft_tui.core.runs.schema import JobStatus, Placement, SystemRow, TrainRow, now_iso
from sft_tui.core.runs.sysmon import GpuProcess, GpuSample, GpuSnapshot, SystemSampler
from sft_tui.tui.screens.monitor import rank_lines
from tests.tui.test_snapshots import FROZEN, SIZES, FixedSampler, app_for, laid_out
from tests.unit.test_sysmon import FakeNvml

GIB = 2**30


def _h100(index: int, used_gib: float, util: float | None, temp: float | None, power: float | None) -> GpuSample:
    return GpuSample(index, "NVIDIA H100 80GB HBM3", int(used_gib * GIB), 80 * GIB, util, temp, power, 700.0, "9.0", True, ())


def eight_gpus() -> GpuSnapshot:
    """An 8-GPU box: GPUs 2-5 busy with the run, the others idle or someone else's."""
    readings = [(3.1, 0, 31, 69), (41.0, 88, 58, 410), (30.1, 97, 65, 300), (30.4, 96, 66, 305), (30.2, 100, 64, 298),
                (30.6, 95, 67, 311), (0.5, 0, 30, 68), (0.5, None, None, None)]
    return GpuSnapshot(True, "", "560.35.03", tuple(_h100(i, *r) for i, r in enumerate(readings)), 0.0)


def test_one_line_per_rank_in_rank_order_with_columns_aligned():
    lines = rank_lines(eight_gpus(), (2, 3, 4, 5), width=30)
    assert lines == ["r0 GPU2 30.1/80G  97% 65C 300W",
                     "r1 GPU3 30.4/80G  96% 66C 305W",
                     "r2 GPU4 30.2/80G 100% 64C 298W",
                     "r3 GPU5 30.6/80G  95% 67C 311W"]


def test_narrower_panels_drop_temperature_then_power_then_the_decimal():
    snapshot = eight_gpus()
    assert rank_lines(snapshot, (2, 3), width=26) == ["r0 GPU2 30.1/80G 97% 300W", "r1 GPU3 30.4/80G 96% 305W"]
    assert rank_lines(snapshot, (2, 3), width=20) == ["r0 GPU2 30.1/80G 97%", "r1 GPU3 30.4/80G 96%"]
    assert rank_lines(snapshot, (2, 3), width=18) == ["r0 GPU2 30/80G 97%", "r1 GPU3 30/80G 96%"]
    # a GPU NVML no longer lists, and one that reports nothing but memory
    assert rank_lines(snapshot, (7, 9), width=26) == ["r0 GPU7  0.5/80G -", "r1 GPU9 not seen"]


def test_ranks_that_do_not_fit_the_rows_are_counted():
    all_eight = tuple(range(8))
    assert len(rank_lines(eight_gpus(), all_eight, width=26, rows=8)) == 8
    cut = rank_lines(eight_gpus(), all_eight, width=26, rows=5)
    assert cut == rank_lines(eight_gpus(), all_eight, width=26)[:4] + ["   and 4 more ranks"]


class RankSampler(FixedSampler):
    """The 8-GPU box; this test process stands in for rank 0's trainer on GPU2."""

    def __init__(self):
        SystemSampler.__init__(self, FakeNvml(), clock=lambda: 0.0)

    def sample_gpus(self):
        snapshot = eight_gpus()
        gpus = list(snapshot.gpus)
        gpus[2] = replace(gpus[2], processes=(GpuProcess(os.getpid(), int(29.5 * GIB)),))
        return replace(snapshot, gpus=tuple(gpus))


def ranks_store(store, gpus: tuple[int, ...]):
    """A DDP run training now on `gpus` (rank i on gpus[i]), launched with a 31 GiB per-GPU estimate."""
    stamp = FROZEN.isoformat()
    run = store.create_run('[model]\nname = "llama3.1-8b"\n[method]\nname = "lora"\n[distributed]\ngpus = 4\n', "llama3.1-8b", "lora",
                           name="ddp-lora", now=FROZEN.replace(hour=13))
    run.write_status(JobStatus("running", os.getpid(), stamp, now_iso(), step=120, max_steps=500, eta_s=1900.0, owner="ana",
                               host="gpu-box", gpus=gpus))
    run.write_placement(Placement(submitted_at=stamp, device="cuda", estimate_gib=31.0, gpus=gpus, gpu_count=len(gpus), admitted_at=stamp))
    for step in range(10, 121, 10):
        run.append_metric(TrainRow(step=step, loss=1.0 + 1.4 / (1 + step / 30), learning_rate=1e-4, grad_norm=0.6,
                                   tokens_per_s=11800.0 + step, wall_s=step * 4.0, epoch=step / 500, gpu_reserved_gib=29.8))
    for i in range(20):
        run.append_metric(SystemRow(step=i * 6, time=FROZEN.timestamp() + i * 10, gpu_count=len(gpus), gpu_mem_used_gib=30.0,
                                    gpu_mem_total_gib=80.0, gpu_util_pct=97.0, gpu_temp_c=65.0, gpu_power_w=300.0, host_cpu_pct=40.0,
                                    process_rss_gib=3.0, process_cpu_pct=100.0))
    run.log_path.write_text("".join(f"step {s:>5}/500  loss {1.0 + 1.4 / (1 + s / 30):.3f}  11,900 tok/s  ETA 32m\n" for s in range(10, 121, 10)))
    return store


@pytest.fixture()
def four_rank_store(tmp_path):
    from sft_tui.core.runs.store import RunStore

    return ranks_store(RunStore(tmp_path / "home"), (2, 3, 4, 5))


@pytest.mark.parametrize("size", SIZES)
def test_monitor_of_a_four_gpu_run(snap_compare, four_rank_store, size):
    """Each rank's GPU with its memory, utilisation and power (and temperature where the panel is wider)."""
    assert snap_compare(app_for(four_rank_store, RankSampler(), open_run="ddp-lora"), terminal_size=size, run_before=laid_out)


@pytest.mark.parametrize("size, shown", [((80, 24), 8), ((80, 17), 6), ((120, 40), 8)])
async def test_eight_ranks_fit_the_panel_or_are_counted_and_the_host_line_stays(tmp_path, size, shown):
    """At 80x24 (and down to 80x18) the side panel has the rows for eight ranks; a shorter pane shows what fits and `and N more ranks`."""
    from sft_tui.core.runs.store import RunStore

    store = ranks_store(RunStore(tmp_path / "home"), tuple(range(8)))
    async with app_for(store, RankSampler(), open_run="ddp-lora").run_test(size=size) as pilot:
        await laid_out(pilot)
        screen = pilot.app.screen
        lines = str(screen.query_one("#system").render()).splitlines()
        numbers = screen.query_one("#numbers")
        assert numbers.outer_size.height + 1 + len(lines) <= screen.query_one("#side").size.height  # nothing falls off the panel
        ranks = [line for line in lines if line.startswith("r")]
        assert [line[:7] for line in ranks] == [f"r{i} GPU{i}" for i in range(shown)]
        assert (lines[shown] == f"   and {8 - shown} more ranks" if shown < 8 else "more ranks" not in "".join(lines))
        assert lines[-2].startswith("host CPU") and lines[-1].startswith("trainer")
