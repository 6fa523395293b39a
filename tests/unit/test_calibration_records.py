"""Calibration from the user's own GPU: records, the fit, `sft-tui estimate` on a calibrated GPU, `sft-tui calibrate`."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace

import pytest

from sft_tui.core.estimate.calibration import (
    CalibrationRecord,
    append_record,
    calibrate_estimator,
    gpu_model_key,
    home_records,
    read_grid_records,
    records_file,
)
from sft_tui.core.estimate.memory import (
    DEFAULT_CALIBRATION,
    Calibration,
    TrainSettings,
    estimate_memory,
)
from sft_tui.core.models.modelspec import spec_from_preset
from sft_tui.core.runs.schema import JobStatus, TrainSummary, now_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.core.units import GIB
from tests.unit.test_sysmon import FakeNvml

RTX4090 = "NVIDIA GeForce RTX 4090"


# --- the fit, by hand: a fake estimator with one phase, peak = tensors + slack x temporaries + context ---------

@dataclass(frozen=True)
class _FakeEstimate:
    peak_gib: float
    phase_bytes: tuple[tuple[str, float], ...]


def _fake_estimator(shapes: dict[str, tuple[float, float]]):
    """model name -> (tensors GiB, temporaries GiB)."""

    def estimate(spec, settings, cal: Calibration):
        tensors, temporaries = shapes[spec]
        reserved = (tensors + cal.allocator_slack * temporaries) * GIB
        return _FakeEstimate((reserved / GIB) + cal.cuda_context_gib, (("backward start", reserved + cal.cuda_context_gib * GIB),))

    return estimate


def _record(model: str, reserved: float, gpu: str = RTX4090, method: str = "lora", context: float | None = None, source: str = "run"):
    return CalibrationRecord(source, f"{model}-{method}-{gpu[-4:]}", gpu, model, TrainSettings(method=method), reserved, cuda_context_gib=context)


SHAPES = {"a": (4.0, 2.0), "b": (6.0, 4.0), "c": (10.0, 5.0)}
# measured reserved peaks: slack 25%, 25% and 30% of the temporaries
MEASURED = [_record("a", 4.5), _record("b", 7.0), _record("c", 11.5)]


def test_three_runs_correct_the_slack_and_state_the_error_before_and_after():
    result = calibrate_estimator(MEASURED, "rtx4090", RTX4090, "lora", resolve=lambda name: name, estimate=_fake_estimator(SHAPES))
    # least absolute relative deviations: below 25% all three fall short; above it two of them overshoot (slopes 2/4.5 + 4/7 > 5/11.5)
    assert result.corrected and result.calibration.allocator_slack == 0.25
    assert result.calibration.cuda_context_gib == 0.6 and result.context_measured == 0  # runs do not measure the context: assumed
    # uncalibrated (slack 10%, context 0.6): a 4.8 vs 5.1, b 7.0 vs 7.6, c 11.1 vs 12.1
    errors = [c.error for c in result.checks]
    assert errors == pytest.approx([4.8 / 5.1 - 1, 7.0 / 7.6 - 1, 11.1 / 12.1 - 1])
    # corrected (slack 25%): a 5.1, b 7.6, c 11.85 vs 12.1
    assert [c.corrected_gib for c in result.checks] == pytest.approx([5.1, 7.6, 11.85])
    assert result.lines() == ["calibration: on this NVIDIA GeForce RTX 4090, 3 lora runs: estimate within -8% .. -6%",
                              "  corrected: allocator slack 25% (fitted), CUDA context 0.60 GiB (assumed); now within -2% .. +0%"]
    assert "NVIDIA GeForce RTX 4090: 3 lora measurements" in result.calibration.calibrated_on


def test_a_measured_context_replaces_the_assumed_one_and_other_gpus_and_methods_are_ignored():
    others = [_record("a", 9.0, gpu="NVIDIA A100-SXM4-80GB"), _record("b", 1.0, method="qlora"),
              _record("c", 99.0, gpu="NVIDIA A100-SXM4-40GB")]
    grid = [replace(_record("a", 4.5, method="full", context=0.40, source="calibrate"), id="g1"),
            replace(_record("a", 4.5, method="qlora", context=0.50, source="calibrate"), id="g2"),
            replace(_record("a", 4.5, method="full", context=0.46, source="calibrate"), id="g3")]
    result = calibrate_estimator(MEASURED + others + grid, "rtx4090", RTX4090, "lora", resolve=lambda name: name,
                                 estimate=_fake_estimator(SHAPES))
    assert result.count == 3 and result.calibration.allocator_slack == 0.25  # the qlora run, the A100 runs and the grid's full/qlora points: not lora here
    assert result.context_measured == 3 and result.calibration.cuda_context_gib == 0.46  # the context: median of this GPU's grid, any method
    # the measured peak now counts the measured context: a's uncalibrated estimate 4 + 0.2 + 0.6 vs 4.5 + 0.46 measured
    assert result.checks[0].error == pytest.approx(4.8 / 4.96 - 1)
    assert "CUDA context 0.46 GiB (measured)" in result.line()


def test_fewer_than_three_runs_state_the_error_but_correct_nothing():
    result = calibrate_estimator(MEASURED[:2], "rtx4090", RTX4090, "lora", resolve=lambda name: name, estimate=_fake_estimator(SHAPES))
    assert not result.corrected and result.calibration == DEFAULT_CALIBRATION
    assert all(c.corrected_gib is None for c in result.checks)
    assert result.line(here=False) == "calibration: on NVIDIA GeForce RTX 4090, 2 lora runs: estimate within -8% .. -6%; not corrected (3 are needed)"
    none = calibrate_estimator([], "rtx4090", RTX4090, "lora")
    assert none.count == 0 and none.lines() == ["calibration: no lora runs measured on this NVIDIA GeForce RTX 4090 in this SFT_TUI_HOME",
                                                ("  CUDA context 0.6 GiB and allocator slack 10% assumed; `sft-tui calibrate` on this GPU "
                                                 "measures them in minutes")]


def test_gpu_models_group_names_as_nvml_torch_and_the_user_write_them():
    assert gpu_model_key("NVIDIA GeForce RTX 4090") == gpu_model_key("NVIDIA GeForce RTX 4090 D") == "rtx4090"
    assert gpu_model_key("NVIDIA A100-SXM4-40GB") == "a100-40gb" != gpu_model_key("NVIDIA A100-SXM4-80GB")
    assert gpu_model_key("NVIDIA A100 80GB PCIe", 79.2) == "a100-80gb"
    assert gpu_model_key("NVIDIA RTX PRO 6000 Blackwell") == "rtxpro6000blackwell"  # not in the table: its own model


def test_records_round_trip_and_a_torn_line_is_skipped(tmp_path):
    record = CalibrationRecord("calibrate", "qwen2.5-0.5b lora seq 2048 x1 ckpt", RTX4090, "qwen2.5-0.5b",
                               TrainSettings(seq_len=2048), 3.21, 2.9, 0.45, 24.0, now_iso(), 1234.5, {"torch": "2.9"})
    path = append_record(tmp_path, record)
    assert path == records_file(tmp_path, RTX4090) == tmp_path / "calibration" / "rtx4090.jsonl"
    again = replace(record, measured_reserved_gib=3.30)  # the same point measured again: the newest counts
    append_record(tmp_path, again)
    with path.open("a") as handle:
        handle.write('{"source": "calibrate", "id": "torn')
    assert read_grid_records(tmp_path) == [again]
    assert CalibrationRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


# --- finished runs in $SFT_TUI_HOME --------------------------------------------------------------------

LORA_RUN = '[model]\nname = "qwen2.5-0.5b"\n[method]\nname = "{method}"\n[data]\ntrain = "x.jsonl"\n[training]\nmax_seq_length = {seq}\nmicro_batch_size = {batch}\noptimizer = "{optimizer}"\n'


def _reserved_at(settings: TrainSettings, slack: float) -> float:
    """What a GPU with this allocator slack reserves for the qwen2.5-0.5b run: the estimate without the CUDA context."""
    return estimate_memory(spec_from_preset("qwen2.5-0.5b"), settings, Calibration(cuda_context_gib=0.0, allocator_slack=slack)).peak_gib


def finished_run(store: RunStore, seq: int, batch: int, gpu: str = RTX4090, method: str = "lora", slack: float = 0.25, **summary):
    """A completed run of qwen2.5-0.5b on `gpu` whose measured reserved peak is what `slack` makes it."""
    optimizer = "paged_adamw_8bit" if method == "qlora" else "adamw_torch"
    run = store.create_run(LORA_RUN.format(method=method, seq=seq, batch=batch, optimizer=optimizer), "qwen2.5-0.5b", method,
                           name=f"{method}-{seq}-{batch}-{gpu[-4:]}")
    run.write_status(JobStatus("completed", 0, now_iso(), now_iso(), step=20, max_steps=20))
    settings = TrainSettings(method=method, seq_len=seq, batch_size=batch, grad_accum=4, optimizer=optimizer)
    fields = {"state": "completed", "steps": 20, "max_steps": 20, "peak_gpu_reserved_gib": round(_reserved_at(settings, slack), 4),
              "gpu_name": gpu, "precision": "bf16", "device": "cuda"}
    run.write_summary(TrainSummary(**(fields | summary)))
    return run, settings


def test_finished_runs_are_read_as_measurements(runs_home):
    store = RunStore(runs_home)
    finished_run(store, 1024, 2)
    finished_run(store, 512, 1, gpu="NVIDIA A100-SXM4-80GB")
    finished_run(store, 256, 1, steps=1)  # stopped at step 1: no optimizer state yet
    finished_run(store, 256, 2, measured_peak_phase="eval")  # its peak was in evaluation, not a training step
    cpu = store.create_run(LORA_RUN.format(method="lora", seq=128, batch=1, optimizer="adamw_torch"), "qwen2.5-0.5b", "lora", name="cpu")
    cpu.write_summary(TrainSummary("completed", 20, 20, device="cpu"))  # measured nothing
    records, skipped = home_records(runs_home, "rtx4090")
    assert [(r.source, r.model, r.settings.seq_len, r.settings.batch_size) for r in records] == [("run", "qwen2.5-0.5b", 1024, 2)]
    assert len(skipped) == 2 and "before step 2" in " ".join(skipped) and "peak was in eval" in " ".join(skipped)


def test_estimate_on_a_gpu_with_three_measured_runs_is_corrected(cli, runs_home):
    store = RunStore(runs_home)
    runs = [finished_run(store, seq, batch) for seq, batch in ((1024, 2), (2048, 1), (512, 4))]
    finished_run(store, 2048, 2, gpu="NVIDIA A100-SXM4-80GB", slack=0.9)  # another GPU model: ignored
    finished_run(store, 2048, 2, method="qlora", slack=0.9)  # another method: ignored
    result = cli("estimate", "qwen2.5-0.5b", "--seq-len", "4096", "--batch-size", "2", "--gpu", "4090", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    cal = data["calibration"]
    assert (cal["measurements"], cal["corrected"], cal["allocator_slack"], cal["cuda_context_gib"]) == (3, True, 0.25, 0.6)
    assert cal["corrected_error_range"] == [0.0, 0.0]  # the runs were made with slack 25%: the corrected estimate meets them
    low, high = cal["error_range"]
    uncalibrated = [estimate_memory(spec_from_preset("qwen2.5-0.5b"), s).peak_gib for _, s in runs]
    measured = [_reserved_at(s, 0.25) + 0.6 for _, s in runs]
    errors = [e / m - 1 for e, m in zip(uncalibrated, measured)]
    assert (low, high) == (pytest.approx(min(errors), abs=1e-4), pytest.approx(max(errors), abs=1e-4)) and high < 0
    asked = TrainSettings(seq_len=4096, batch_size=2)
    assert data["peak_gib"] == round(_reserved_at(asked, 0.25) + 0.6, 3)  # the corrected estimate
    assert data["peak_gib"] > round(estimate_memory(spec_from_preset("qwen2.5-0.5b"), asked).peak_gib, 3)
    assert any("calibrated on NVIDIA GeForce RTX 4090 24GB: 3 lora measurements" in a for a in data["assumptions"])
    out = cli("estimate", "qwen2.5-0.5b", "--seq-len", "4096", "--batch-size", "2", "--gpu", "4090").out
    assert out.rstrip().splitlines()[-2:] == [
        f"calibration: on NVIDIA GeForce RTX 4090 24GB, 3 lora runs: estimate off by {100 * low:+.0f}%",
        "  corrected: allocator slack 25% (fitted), CUDA context 0.60 GiB (assumed); now off by +0%"]
    assert cal["line"] == "; ".join(line.strip() for line in out.rstrip().splitlines()[-2:])
    assert f"  peak        {data['peak_gib']:8.2f} GiB" in out
    raw = json.loads(cli("estimate", "qwen2.5-0.5b", "--seq-len", "4096", "--batch-size", "2", "--gpu", "4090", "--uncalibrated", "--json").out)
    assert raw["calibration"] is None and raw["peak_gib"] == round(estimate_memory(spec_from_preset("qwen2.5-0.5b"), asked).peak_gib, 3)
    qlora = json.loads(cli("estimate", "qwen2.5-0.5b", "--method", "qlora", "--gpu", "4090", "--json").out)["calibration"]
    assert (qlora["measurements"], qlora["corrected"]) == (1, False)  # one qlora run: its error, no correction
    assert json.loads(cli("estimate", "qwen2.5-0.5b", "--gpu-gib", "24", "--json").out)["calibration"] is None  # no GPU model


# --- sft-tui calibrate ------------------------------------------------------------------------------

def test_calibrate_without_a_gpu_says_so_in_one_line(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(fail_init="NVML Shared Library Not Found"))
    result = cli("calibrate")
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith("error: no NVIDIA GPU found (NVML: NVML Shared Library Not Found): "
                                                                  "sft-tui calibrate measures training peaks on a CUDA GPU; run it on the GPU machine")


def test_calibrate_stores_each_measured_point_and_states_the_calibration(runs_home):
    from sft_tui.cli.calibrate import CalibrationGpu, plan_points, run_calibration

    gpu = CalibrationGpu(0, RTX4090, 23.99, 23.5, "560.35.03")
    points, left_out = plan_points("short", gpu.free_gib)
    assert [p["method"] for p, _ in points].count("lora") == 3 and all(e <= 0.9 * 23.5 for _, e in points)
    assert {p["method"] for p, _ in left_out} <= {"full"}  # full fine-tuning of the 1.5B and 3B models does not fit 24 GiB

    def measure(point, on):  # a GPU whose allocator reserves 20% of the temporaries, with a 0.5 GiB context; the 3B QLoRA point OOMs
        if point["method"] == "qlora" and point["model"] == "llama3.2-3b":
            return {"status": "oom"}
        from sft_tui.trainer.calibrate import settings_of

        reserved = estimate_memory(spec_from_preset(point["model"]), settings_of(point), Calibration(cuda_context_gib=0.0, allocator_slack=0.2)).peak_gib
        return {"status": "ok", "peak_reserved_gib": reserved, "peak_allocated_gib": reserved * 0.9, "cuda_context_gib": 0.5,
                "tokens_per_s": 1000.0, "versions": {"torch": "2.9.0"}}

    lines: list[str] = []
    outcomes = run_calibration(gpu, points, runs_home, measure, lines.append)
    assert [o["status"] for o in outcomes].count("oom") == 1 and len(lines) == len(points)
    assert "llama3.2-3b qlora seq 4096 x1 ckpt: oom" in lines[[p["method"] for p, _ in points].index("qlora") + 2]
    stored = read_grid_records(runs_home)
    assert len(stored) == len(points) - 1 and all(r.cuda_context_gib == 0.5 and r.versions["driver"] == "560.35.03" for r in stored)
    lora = calibrate_estimator(stored, "rtx4090", RTX4090, "lora")
    assert lora.corrected and lora.calibration.allocator_slack == 0.2 and lora.calibration.cuda_context_gib == 0.5
    assert lora.error_range(corrected=True) == (pytest.approx(0.0, abs=1e-9), pytest.approx(0.0, abs=1e-9))
    qlora = calibrate_estimator(stored, "rtx4090", RTX4090, "qlora")
    assert qlora.count == 2 and not qlora.corrected  # the OOM left two: not enough to correct


def test_a_runs_measured_cuda_context_counts_as_measured(runs_home):
    from sft_tui.core.estimate.calibration import calibration_for
    from sft_tui.core.models.gpus import gpu_by_name

    store = RunStore(runs_home)
    for seq, batch, context in ((512, 1, 0.42), (1024, 1, 0.46), (1024, 2, 0.50)):
        finished_run(store, seq, batch, measured_context_gib=context)
    found = calibration_for(runs_home, RTX4090, gpu_by_name("4090"), "lora")
    assert found.count == 3 and found.context_measured == 3
    assert found.calibration.cuda_context_gib == pytest.approx(0.46) and "CUDA context 0.46 GiB (measured)" in found.line()
