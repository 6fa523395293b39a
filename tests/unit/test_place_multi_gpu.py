"""`sft-tui train` with [distributed] gpus = N: the run starts on the N GPUs with the most room, its per-GPU estimate
counted on each, or is refused in one line naming what is short; queued, it records how many GPUs it needs."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from sft_tui.core.errors import UserError
from sft_tui.core.runs import preflight, queue
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from tests.unit.test_queue import GIB, FakeStarter, _proc
from tests.unit.test_sysmon import FakeNvml


class FourGpuBox(FakeNvml):
    """Four 80 GiB GPUs; another user's process holds 50 GiB on GPU 1."""

    def __init__(self):
        super().__init__()
        gpu = dict(name="NVIDIA H100 80GB HBM3", used=0, total=80 * GIB, util=0, temp=40, power=50_000, limit=700_000, cc=(9, 0), procs=[])
        self.gpus = [dict(gpu), dict(gpu, used=50 * GIB, procs=[_proc(999_999_999, 50)]), dict(gpu), dict(gpu)]


def _config(*overrides: str):
    from sft_tui.core.config.load import load_run_config
    from tests.trainer.conftest import DEMO

    return load_run_config(DEMO / "demo.toml", list(overrides))


def test_a_two_gpu_run_takes_the_two_roomiest_gpus_and_a_third_is_refused_or_queued(monkeypatch):
    seen = []
    monkeypatch.setattr(preflight, "run_peak_gib", lambda config, gpu, *visible: seen.append(config.distributed.gpus) or 40.0)
    store, lines, starter, box = RunStore(), [], FakeStarter(), SystemSampler(FourGpuBox())
    first = preflight.start_run(_config("distributed.gpus=2"), "run.toml", lines.append, launch_fn=starter, store=store, sampler=box)
    assert first.read_placement().gpus == (0, 2) and first.read_placement().gpu_count == 2 and first.read_status().gpus == (0, 2)
    assert "GPU: placed on GPU0, GPU2 (rank i on the i-th); this run needs 40.0 GiB on each of 2 GPUs" in "\n".join(lines)
    assert queue.placement_env(first.read_placement())["CUDA_VISIBLE_DEVICES"] == "0,2"
    first.write_status(replace(first.read_status(), pid=os.getpid()))  # its trainer is up: 40 GiB counted on GPU0 and GPU2
    for expected in ((0, 3), (2, 3)):  # GPU3's 80 GiB takes two of them; GPU1 (30 GiB free) none
        run = preflight.start_run(_config("distributed.gpus=2"), "run.toml", lines.append, launch_fn=starter, store=store, sampler=box)
        assert run.read_placement().gpus == expected
        run.write_status(replace(run.read_status(), pid=os.getpid()))
    with pytest.raises(UserError, match=r"no 2 GPUs have room for this run now: it needs 40.0 GiB on each of 2 GPUs; the most: GPU1 30.0"):
        preflight.start_run(_config("distributed.gpus=2"), "run.toml", lines.append, launch_fn=starter, store=store, sampler=box)
    queued = preflight.start_run(_config("distributed.gpus=2"), "run.toml", lines.append, launch_fn=starter, store=store, sampler=box,
                                 request=preflight.PlacementRequest(queue=True))
    assert queued.read_placement().queued and queued.read_placement().gpu_count == 2 and queued.read_placement().estimate_gib == 40.0
    listed = preflight.start_run(_config("distributed.gpus=[1, 3]"), "run.toml", lines.append, launch_fn=starter, store=store, sampler=box,
                                 request=preflight.PlacementRequest(queue=True))
    assert listed.read_placement().allowed_gpus == (1, 3) and listed.read_placement().gpu_count == 2  # it waits for exactly those
    assert set(seen) == {"2", "[1, 3]"}


def test_a_run_asking_for_more_gpus_than_the_box_has_is_one_line():
    store, box = RunStore(), SystemSampler(FourGpuBox())
    with pytest.raises(UserError) as caught:
        preflight.start_run(_config("distributed.gpus=6"), "run.toml", print, launch_fn=FakeStarter(), store=store, sampler=box)
    assert "needs 6 GPUs" in caught.value.line() and "distributed.gpus" in caught.value.line()
    assert not store.run_dirs()
