"""The monitor of a preference run (DPO, KTO) names its loss and shows the objective's own metrics: numbers and charts.

Runs are written by hand (metrics rows with TRL's metric names in objective_metrics), as the
trainer writes them; an SFT run's monitor is unchanged (tests/tui/test_snapshots.py).
"""

from __future__ import annotations

import math
import os

import pytest

from sft_tui.core.runs.schema import EvalRow, JobStatus, SystemRow, TrainRow, now_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.watch import RunWatcher
from sft_tui.tui.screens.monitor import MonitorScreen, numbers_lines
from sft_tui.tui.widgets.loss_chart import LossChart
from sft_tui.tui.widgets.preference_views import (
    objective_of,
    preference_family,
    preference_views,
)
from sft_tui.tui.widgets.series_chart import ChartView, Series, SeriesChart
from tests.tui.conftest import settle
from tests.tui.test_snapshots import (  # noqa: F401 - fixture
    FROZEN,
    SIZES,
    NoGpuSampler,
    app_for,
    frozen_store,
    keys,
    laid_out,
)

CONFIG = '[model]\nname = "tiny-demo-model"\n\n[method]\nname = "lora"\nobjective = "{objective}"   # default\nbeta = 0.1\n'


def dpo_row(step: int, total: int) -> dict[str, float]:
    """TRL DPO's metrics at a step of a run that learns: the margin opens, accuracy climbs from a coin toss."""
    t = step / total
    chosen, rejected = 0.02 + 0.35 * t, -0.04 - 1.5 * t + 0.05 * math.sin(step)
    return {"rewards/chosen": round(chosen, 4), "rewards/rejected": round(rejected, 4), "rewards/margins": round(chosen - rejected, 4),
            "rewards/accuracies": round(min(1.0, 0.5 + 0.6 * t + 0.08 * math.sin(step / 3)), 4),
            "logps/chosen": round(-40 + 3 * t, 3), "logps/rejected": round(-42 - 15 * t, 3)}


def kto_row(step: int, total: int) -> dict[str, float]:
    """TRL KTO's metrics: the KL baseline, the good and bad answers' rewards and their margin (no accuracy)."""
    t = step / total
    good, bad = 0.05 + 0.6 * t, -0.02 - 0.9 * t
    return {"kl": round(0.002 + 0.04 * t, 4), "rewards/chosen": round(good, 4), "rewards/rejected": round(bad, 4),
            "rewards/margins": round(good - bad, 4), "logps/chosen": round(-30 + 4 * t, 3), "logps/rejected": round(-33 - 9 * t, 3)}


def write_preference_runs(store: RunStore, pid: int) -> None:
    """A completed DPO run on the CPU (the demo's shape) and a KTO run training now on the fake GPU (`pid` stands in for its trainer)."""
    stamp = FROZEN.isoformat()
    start = FROZEN.timestamp()
    dpo = store.create_run(CONFIG.format(objective="dpo"), "tiny-demo-model", "lora", name="demo-dpo", now=FROZEN)
    dpo.write_status(JobStatus("completed", 4242, stamp, stamp, step=60, max_steps=60))
    for step in range(2, 61, 2):
        dpo.append_metric(TrainRow(step=step, loss=round(0.05 + 0.643 * math.exp(-step / 15), 4), learning_rate=1e-3 * (1 - step / 60),
                                   grad_norm=1.2, tokens_per_s=850.0, wall_s=step * 2.0, epoch=step / 30, objective_metrics=dpo_row(step, 60)))
        if step % 20 == 0:
            measured = {k: round(v * 0.9, 4) for k, v in dpo_row(step, 60).items()}
            dpo.append_metric(EvalRow(step=step, eval_loss=round(0.1 + 0.6 * math.exp(-step / 18), 4), epoch=step / 30,
                                      objective_metrics=measured))
    for i in range(24):
        dpo.append_metric(SystemRow(step=i * 3, time=start + i * 5, process_rss_gib=1.1, process_cpu_pct=190.0, host_cpu_pct=95.0))
    dpo.log_path.write_text("".join(f"step {s:>3}/60  loss {0.05 + 0.643 * math.exp(-s / 15):.3f}  margin "
                                    f"{dpo_row(s, 60)['rewards/margins']:+.3f}  acc {dpo_row(s, 60)['rewards/accuracies']:.0%}\n"
                                    for s in range(2, 61, 2)))
    kto = store.create_run(CONFIG.format(objective="kto"), "qwen2.5-1.5b", "lora", name="support-kto", now=FROZEN.replace(hour=11))
    kto.write_status(JobStatus("running", pid, stamp, now_iso(), step=120, max_steps=300, eta_s=540.0, owner="ana", host="gpu-box"))
    for step in range(5, 121, 5):
        metrics = kto_row(step, 300)
        if step % 15 == 0:  # a logging window whose batches held no bad answers: TRL logs no rejected reward then
            metrics = {k: v for k, v in metrics.items() if k not in ("rewards/rejected", "rewards/margins", "logps/rejected")}
        kto.append_metric(TrainRow(step=step, loss=round(0.5 - 0.25 * step / 300, 4), learning_rate=5e-5, grad_norm=0.7,
                                   tokens_per_s=3100.0, wall_s=step * 4.5, epoch=step / 150, gpu_reserved_gib=9.0, objective_metrics=metrics))
        if step % 60 == 0:
            kto.append_metric(EvalRow(step=step, eval_loss=round(0.49 - 0.2 * step / 300, 4), objective_metrics=kto_row(step, 300)))
    for i in range(60):
        kto.append_metric(SystemRow(step=i * 2, time=start + i * 10, gpu_count=1, gpu_mem_used_gib=9.4, gpu_mem_total_gib=80.0,
                                    gpu_util_pct=88.0, gpu_temp_c=61.0, gpu_power_w=280.0, gpu_power_limit_w=400.0,
                                    host_cpu_pct=12.0, process_rss_gib=3.0, process_cpu_pct=100.0))
    kto.log_path.write_text("".join(f"step {s:>5}/300  loss {0.5 - 0.25 * s / 300:.3f}  margin {kto_row(s, 300)['rewards/margins']:+.3f}"
                                    f"  kl {kto_row(s, 300)['kl']:.3f}\n" for s in range(5, 121, 5)))


@pytest.fixture()
def preference_store(frozen_store):  # noqa: F811 - the fixture, imported
    write_preference_runs(frozen_store, os.getpid())
    return frozen_store


def snapshot_of(store, name):
    return RunWatcher(store.find_run(name)).poll()


def test_the_objective_is_read_from_the_runs_config():
    assert objective_of(CONFIG.format(objective="DPO")) == "dpo"
    assert objective_of('[method]\nname = "lora"\n') == "sft"  # configs from before preference tuning
    assert objective_of("not toml [") == "sft"


def test_dpo_numbers_name_the_loss_and_show_accuracy_margin_and_rewards(preference_store):
    lines = numbers_lines(snapshot_of(preference_store, "demo-dpo"), "dpo")
    assert lines[:5] == ["DPO loss 0.062  eval 0.121", "best eval 0.121 @ 60", "acc 100%  eval 90%",
                         "margin +1.925  eval +1.733", "chosen +0.370  rej -1.555"]
    assert all(len(line) <= 26 for line in lines)  # the side panel at 80 columns


def test_kto_numbers_show_kl_and_the_newest_reward_of_each_label(preference_store):
    lines = numbers_lines(snapshot_of(preference_store, "support-kto"), "kto")
    # step 120 logged no bad answers: the bad reward is step 115's, the margin too
    assert lines[2:5] == ["kl 0.018  eval 0.018", "margin +0.645  eval +0.670", "good +0.290  bad -0.365"]


def test_an_sft_run_has_no_preference_numbers_or_charts(preference_store):
    snapshot = snapshot_of(preference_store, "json-lora")
    assert numbers_lines(snapshot, "sft")[0].startswith("loss 0.")
    assert preference_views(snapshot, "sft") == ()


def test_metrics_bring_the_charts_when_the_config_cannot_say(preference_store):
    assert preference_family("sft", snapshot_of(preference_store, "demo-dpo")) == "paired"
    assert preference_family("sft", snapshot_of(preference_store, "support-kto")) == "kto"


def test_dpo_charts_accuracy_in_percent_with_eval_points_then_rewards(preference_store):
    accuracy, rewards = preference_views(snapshot_of(preference_store, "demo-dpo"), "dpo", smoothed=False)
    train, held = accuracy.series
    assert accuracy.name == "accuracy" and accuracy.y_max == 100.0 and max(train.ys) == 100.0
    assert held.points_only and held.xs == (20.0, 40.0, 60.0) and held.ys == pytest.approx((65.69, 85.99, 90.0))
    assert [s.label for s in rewards.series] == ["chosen", "rejected", "margin"] and len(rewards.series[2].xs) == 30


def test_train_lines_are_smoothed_like_the_loss_and_eval_points_are_not(preference_store):
    snapshot = snapshot_of(preference_store, "demo-dpo")
    raw, smoothed = (preference_views(snapshot, "dpo", smoothed=flag)[0] for flag in (False, True))
    assert "(smoothed)" in smoothed.title and "(smoothed)" not in raw.title
    assert smoothed.series[0].ys != raw.series[0].ys and smoothed.series[1] == raw.series[1]


def test_a_narrow_chart_keeps_the_title_before_its_colon():
    chart = SeriesChart()
    chart.view = ChartView("rewards", "KTO rewards (smoothed): good, bad, margin", "step", "reward",
                           (Series("margin", (1.0,), (0.5,), "x"),), "no steps logged yet")
    assert chart.title_for(60) == "KTO rewards (smoothed): good, bad, margin"
    assert chart.title_for(34) == "KTO rewards (smoothed)"  # plotext draws no title at all when it is too long


async def test_c_goes_from_the_dpo_loss_to_accuracy_and_rewards(preference_store):
    run = preference_store.find_run("demo-dpo")
    async with app_for(preference_store, NoGpuSampler(), open_run=run.id).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        monitor = pilot.app.screen
        assert isinstance(monitor, MonitorScreen) and monitor.objective == "dpo"
        assert monitor.query_one(LossChart).loss_label == "DPO loss"
        assert "acc 100%" in str(monitor.query_one("#numbers").render())
        seen = []
        for _ in range(3):
            await pilot.press("c")
            await settle(pilot)
            seen.append(monitor.query_one(SeriesChart).view.name)
        assert seen == ["accuracy", "rewards", "speed"]


@pytest.mark.parametrize("size", SIZES)
def test_monitor_of_a_dpo_run(snap_compare, preference_store, size):
    """Named loss and the accuracy, margin and rewards in the side panel."""
    assert snap_compare(app_for(preference_store, NoGpuSampler(), open_run="demo-dpo"), terminal_size=size, run_before=laid_out)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_dpo_accuracy_chart(snap_compare, preference_store, size):
    assert snap_compare(app_for(preference_store, NoGpuSampler(), open_run="demo-dpo"), terminal_size=size, run_before=keys("c"))


@pytest.mark.parametrize("size", SIZES)
def test_monitor_of_a_running_kto_run(snap_compare, preference_store, size):
    assert snap_compare(app_for(preference_store, open_run="support-kto"), terminal_size=size, run_before=laid_out)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_kto_rewards_chart(snap_compare, preference_store, size):
    """`c` twice: KL, then the good and bad answers' rewards and their margin."""
    assert snap_compare(app_for(preference_store, open_run="support-kto"), terminal_size=size, run_before=keys("c", "c"))


def test_the_loss_is_named_for_what_it_sums():
    from sft_tui.tui.widgets.preference_views import loss_label

    assert loss_label('[method]\nobjective = "dpo"\nsft_weight = 1.0\n') == "DPO+SFT loss"
    assert loss_label('[method]\nobjective = "dpo"\nsft_weight = 0.0\n') == "DPO loss"
    assert loss_label('[method]\nobjective = "kto"\n') == "KTO loss" and loss_label("[method]\n") == "loss"
