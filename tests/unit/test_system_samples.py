"""System rows: what the supervisor records about a run's GPUs and process, and how the watcher hands them on."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from sft_tui.core.runs.schema import JobStatus, SystemRow, TrainRow, now_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import HostSample, SystemSampler
from sft_tui.core.runs.system_samples import SystemRecorder, record_while, system_row
from sft_tui.core.runs.watch import RunWatcher
from tests.unit.test_sysmon import FakeNvml

GIB = 2**30
HOST = HostSample(50.0, 16, 20 * GIB, 64 * GIB, 3 * GIB, 98.0, 1234.0)


def test_a_row_describes_the_gpus_the_run_uses_not_the_whole_box():
    gpu = SystemSampler(FakeNvml()).sample_gpus()
    row = system_row(7, gpu, HOST, {4242})  # the fake A100 lists pid 4242 with 9 GiB; the T4 is someone else's
    assert (row.step, row.gpu_count, row.gpu_mem_used_gib, row.gpu_mem_total_gib) == (7, 1, 9.0, 80.0)
    assert (row.gpu_util_pct, row.gpu_temp_c, row.gpu_power_w, row.gpu_power_limit_w) == (97.0, 61.0, 301.0, 400.0)
    assert (row.process_rss_gib, row.process_cpu_pct, row.time) == (3.0, 98.0, 1234.0)


def test_when_nvml_names_no_process_every_gpu_counts_and_unsupported_fields_stay_empty():
    gpu = SystemSampler(FakeNvml()).sample_gpus()
    row = system_row(0, gpu, HOST, {99})
    assert row.gpu_count == 2 and row.gpu_mem_used_gib == 10.0 and row.gpu_temp_c == 61.0
    assert row.gpu_power_w == 301.0  # the T4's power is 'not supported': left out, not counted as 0
    assert row.gpu_util_pct == 48.5


def test_a_cpu_box_records_the_process_only():
    gpu = SystemSampler(FakeNvml(fail_init="Driver Not Loaded")).sample_gpus()
    row = system_row(3, gpu, HOST, {1})
    assert row.gpu_count == 0 and row.gpu_mem_used_gib is None and row.gpu_util_pct is None and row.process_rss_gib == 3.0


def test_the_recorder_appends_rows_the_watcher_keeps_apart_from_train_rows(runs_home):
    run = RunStore().create_run('[model]\nname = "m"\n', "m", "lora")
    run.write_status(JobStatus("running", os.getpid(), now_iso(), now_iso(), step=12, max_steps=50))
    run.append_metric(TrainRow(step=10, loss=1.5))
    watcher = RunWatcher(run)
    first = watcher.poll(datetime.now(timezone.utc))
    recorder = SystemRecorder(run, os.getpid(), SystemSampler(FakeNvml()))
    ticks = iter([True, True, True, False])
    record_while(lambda _timeout: next(ticks), recorder, every_s=0.0)
    second = watcher.poll(datetime.now(timezone.utc))
    assert recorder.written == 3 and len(second.system) == 3 and all(isinstance(r, SystemRow) for r in second.system)
    assert second.system[0].step == 12 and second.system[0].process_rss_gib > 0
    assert second.train is first.train  # no new train row: the loss chart has nothing to redraw


def test_a_failing_disk_stops_recording_with_one_line_and_never_raises(runs_home, capsys):
    run = RunStore().create_run('[model]\nname = "m"\n', "m", "lora")
    run.metrics_path.mkdir()  # appending now fails with IsADirectoryError
    recorder = SystemRecorder(run, os.getpid(), SystemSampler(FakeNvml()))
    recorder.record()
    recorder.record()
    assert recorder.written == 0 and "IsADirectoryError" in recorder.stopped
    assert capsys.readouterr().out.count("GPU/host samples stopped") == 1


def test_a_placed_run_whose_process_nvml_hides_is_sampled_on_its_own_gpu():
    from sft_tui.core.runs.system_samples import run_gpus
    from sft_tui.core.runs.sysmon import SystemSampler
    from tests.unit.test_sysmon import FakeNvml

    snapshot = SystemSampler(FakeNvml()).sample_gpus()
    assert [g.index for g in run_gpus(snapshot, {1234}, placed=(1,))] == [1]  # NVML lists no pid 1234: the placement decides
    assert [g.index for g in run_gpus(snapshot, {4242}, placed=(1,))] == [0]  # NVML's own answer comes first
    assert [g.index for g in run_gpus(snapshot, {1234})] == [0, 1]
