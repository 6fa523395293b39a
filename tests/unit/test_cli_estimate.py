"""`sft-tui estimate` end to end: readable report, JSON contract, run configs, GPU sources, bad input."""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import pytest

from sft_tui.core.estimate.fit import room_now, rooms_on_this_box
from sft_tui.core.runs.schema import JobStatus, Placement, now_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from tests.unit.test_sysmon import FakeNvml

GIB = 2**30


def two_gpu_nvml() -> FakeNvml:
    """A shared box: two 24 GiB GPUs, a process that is not sft-tui's holding 10 GiB on GPU 0."""
    nvml = FakeNvml()
    card = dict(name="NVIDIA GeForce RTX 4090", total=24 * GIB, util=0, temp=40, power=None, limit=450_000, cc=(8, 9))
    nvml.gpus = [card | dict(used=10 * GIB, procs=[SimpleNamespace(pid=999_999_999, usedGpuMemory=10 * GIB)]),
                 card | dict(used=0, procs=[])]
    return nvml


def admit_run(store: RunStore, estimate_gib: float, gpu: int):
    """A run admitted to `gpu` and running (this test process stands in for its trainer), as the queue counts it."""
    run = store.create_run('[model]\nname = "qwen2.5-7b"\n', "qwen2.5-7b", "lora", name=f"admitted-{gpu}", gpus=(gpu,))
    run.write_status(JobStatus("running", os.getpid(), now_iso(), now_iso(), step=1, max_steps=10))
    run.write_placement(Placement(submitted_at=now_iso(), estimate_gib=estimate_gib, gpus=(gpu,), admitted_at=now_iso()))
    return run


@pytest.fixture()
def shared_box(monkeypatch):
    """`sft-tui estimate` in-process sees the two-GPU box (NVML is imported where it is used)."""
    nvml = two_gpu_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    return nvml


def test_a_run_goes_where_there_is_most_room_now(runs_home):
    store = RunStore(runs_home)
    rooms = rooms_on_this_box(SystemSampler(two_gpu_nvml()), store)
    room = room_now(12.0, rooms)
    assert (room.gpu, room.free_gib, room.fits_now) == (1, 24.0, True)  # GPU0 has 14 free: GPU1 has more
    assert room.line() == "on this box now: GPU1 has 24.0 of 24.0 GiB free (0.0 other processes, 0.0 sft-tui runs): fits now"
    admit_run(store, 20.0, gpu=1)  # an sft-tui run will take 20 GiB of GPU1
    rooms = rooms_on_this_box(SystemSampler(two_gpu_nvml()), store)
    room = room_now(12.0, rooms)
    assert (room.gpu, room.free_gib, room.other_gib, room.reserved_gib, room.fits_now) == (0, 14.0, 10.0, 0.0, True)
    waits = room_now(20.0, rooms)  # 14 free on GPU0, 4 on GPU1: no room now, but an empty 24 GiB GPU holds it
    assert (waits.gpu, waits.fits_now, waits.empty_fit) == (0, False, 0)
    assert waits.line("run.toml") == ("on this box now: GPU0 has 14.0 of 24.0 GiB free (10.0 other processes, 0.0 sft-tui runs): "
                                      "does not fit now; it fits the GPU when empty: queue it (sft-tui train run.toml --queue)")
    never = room_now(30.0, rooms)
    assert never.empty_fit is None and never.outlook().startswith("does not fit now, nor on any GPU here when empty")
    assert room_now(12.0, ()) is None  # no GPU: nothing to say


def test_the_cli_reports_the_room_now_for_the_detected_gpu_only(cli, shared_box, runs_home):
    data = json.loads(cli("estimate", "qwen2.5-1.5b", "--json").out)
    assert data["fits"] is True and data["gpu_gib"] == 24.0  # the fit against the GPU's total stays as it was
    assert data["placement"] | {"need_gib": None} == {"gpu": 1, "name": "NVIDIA GeForce RTX 4090", "free_gib": 24.0, "total_gib": 24.0,
                                                      "fits_now": True, "other_gib": 0.0, "reserved_gib": 0.0, "used_gib": 0.0,
                                                      "processes_known": False, "need_gib": None, "fits_when_empty": True}
    admit_run(RunStore(runs_home), 20.0, gpu=1)
    data = json.loads(cli("estimate", "qwen2.5-1.5b", "--json").out)
    placement = data["placement"]
    assert (placement["gpu"], placement["free_gib"], placement["other_gib"], placement["fits_now"]) == (0, 14.0, 10.0, True)
    out = cli("estimate", "qwen2.5-7b").out  # about 16.5 GiB (TRL's fused LM head): fits a 24 GiB GPU, not the 14 GiB free now
    assert "-> fits, 7.5 GiB headroom" in out
    assert ("on this box now: GPU0 has 14.0 of 24.0 GiB free (10.0 other processes, 0.0 sft-tui runs): "
            "does not fit now; it fits the GPU when empty: queue it (sft-tui train CONFIG --queue)") in out
    for override in (("--gpu", "4090"), ("--gpu-gib", "24")):  # another machine's GPU: this box's room says nothing about it
        result = cli("estimate", "qwen2.5-7b", *override, "--json")
        assert result.code == 0 and json.loads(result.out)["placement"] is None
        assert "on this box now" not in cli("estimate", "qwen2.5-7b", *override).out


def test_the_queue_hint_names_the_run_config(cli, shared_box, runs_home, tmp_path):
    admit_run(RunStore(runs_home), 20.0, gpu=1)
    path = tmp_path / "run.toml"
    path.write_text('recipe = "lora"\n[model]\nname = "qwen2.5-7b"\n[data]\ntrain = "x.jsonl"\n[training]\nmax_seq_length = 2048\nmicro_batch_size = 1\n')
    assert f"queue it (sft-tui train {path} --queue)" in cli("estimate", "--config", str(path)).out


def test_json_report_against_a_named_gpu(cli):
    result = cli("estimate", "llama3.1-8b", "--method", "qlora", "--gpu", "4090", "--tokens", "1e7", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["model"] == "llama3.1-8b" and data["method"] == "qlora" and data["params"] == 8_030_261_248
    assert data["gpu_gib"] == 24.0 and data["fits"] is True and data["max_batch_size"] >= 1
    assert data["tokens_per_s"] > 0 and data["eta_s"] == pytest.approx(1e7 / data["tokens_per_s"], rel=1e-3)
    assert abs(sum(data["breakdown_gib"].values()) - data["peak_gib"]) < 0.01


def test_readable_report_has_a_bar_per_term_and_the_verdict(cli):
    out = cli("estimate", "qwen2.5-7b", "--method", "full", "--gpu", "a100-80gb").out
    for key in ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "overhead", "peak"):
        assert f"  {key}" in out
    assert "does NOT fit" in out and "to make it fit:" in out and "assumptions:" in out


def test_gpu_gib_and_no_gpu(cli):
    data = json.loads(cli("estimate", "smollm2-135m", "--gpu-gib", "8", "--json").out)
    assert data["gpu_gib"] == 8.0 and data["fits"] is True and data["tokens_per_s"] is None  # memory only
    data = json.loads(cli("estimate", "smollm2-135m", "--json").out)  # this machine has no GPU
    assert data["gpu_gib"] is None and data["fits"] is None and data["max_seq_len"] is None
    assert data["placement"] is None


def test_detected_gpu_comes_from_nvml():
    from sft_tui.cli.estimate import resolve_gpu
    from sft_tui.core.runs.sysmon import SystemSampler

    target = resolve_gpu(None, None, sampler=SystemSampler(FakeNvml()))
    assert target.name == "NVIDIA A100-SXM4-80GB" and target.memory_gib == 80.0
    assert target.info.key == "a100-80gb" and target.source == "detected"


def test_run_config_supplies_the_settings_and_options_override(cli, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('recipe = "qlora"\n[model]\nname = "qwen2.5-1.5b"\n[data]\ntrain = "x.jsonl"\n[training]\nmax_seq_length = 3072\nmicro_batch_size = 2\n')
    data = json.loads(cli("estimate", "--config", str(path), "--gpu", "l4", "--json").out)
    assert (data["model"], data["method"], data["seq_len"], data["batch_size"]) == ("qwen2.5-1.5b", "qlora", 3072, 2)
    assert data["settings"]["optimizer"] == "paged_adamw_8bit"
    data = json.loads(cli("estimate", "--config", str(path), "--seq-len", "512", "--json").out)
    assert data["seq_len"] == 512 and data["method"] == "qlora"


def _one_line(result, needle):
    assert result.code == 2, result
    assert result.err.count("\n") == 1 and result.err.startswith("error: ") and needle in result.err
    assert result.out == ""


def test_bad_input_ends_in_one_line(cli, tmp_path):
    _one_line(cli("estimate", "llama-9000"), "unknown model 'llama-9000'")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 8, "vocab_size": 10}')
    _one_line(cli("estimate", str(folder)), 'missing field "hidden_size"')
    _one_line(cli("estimate", "qwen2.5-7b", "--seq-len", "0"), "seq_len must be at least 1")
    _one_line(cli("estimate", "qwen2.5-7b", "--gpu", "rtx9090"), "unknown GPU 'rtx9090'")
    _one_line(cli("estimate", "qwen2.5-7b", "--gpu-gib", "-1"), "--gpu-gib must be more than 0")
    _one_line(cli("estimate", "qwen2.5-7b", "--method", "dora"), "method must be one of full, lora, qlora")
    _one_line(cli("estimate", "phi3-mini", "--lora-targets", "q,v"), "LoRA target 'q' is not a linear layer of phi3-mini")
    _one_line(cli("estimate"), "no model given")


def test_without_a_named_gpu_the_fit_is_checked_against_the_largest_gpu_here_as_train_does():
    from sft_tui.cli.estimate import resolve_gpu
    from sft_tui.core.runs.sysmon import SystemSampler
    from tests.unit.test_sysmon import FakeNvml

    nvml = FakeNvml()
    nvml.gpus.reverse()  # the T4 is GPU 0, the A100 GPU 1
    assert resolve_gpu(None, None, SystemSampler(nvml)).name == "NVIDIA A100-SXM4-80GB"


def test_qlora_is_estimated_with_the_optimizer_its_recipe_trains_with(cli):
    result = cli("estimate", "qwen2.5-1.5b", "--method", "qlora")
    assert result.code == 0 and "· qlora · " in result.out and "· paged_adamw_8bit" in result.out.splitlines()[0]
    named = cli("estimate", "qwen2.5-1.5b", "--method", "qlora", "--optimizer", "adamw_torch")
    assert "· adamw_torch" in named.out.splitlines()[0]
