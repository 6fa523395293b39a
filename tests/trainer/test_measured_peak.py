"""Every CUDA run measures its peak by phase and keeps it beside its estimate (CUDA memory calls injected: no GPU here)."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest
import torch

from sft_tui.core.runs.reporter import StatusReporter
from sft_tui.core.runs.schema import Placement, TrainSummary, now_iso
from sft_tui.core.units import GIB
from sft_tui.trainer.callbacks import RunCallback
from sft_tui.trainer.cuda_memory import PeakTracker

GPU = "NVIDIA GeForce RTX 4090"


class FakeCuda:
    """A caching allocator on command: tests allocate and free GiB; peaks and resets behave as torch.cuda's.

    Reserved memory grows to cover what is allocated and is never given back (as torch's
    cache keeps it); NVML sees the reserved memory plus a CUDA context.
    """

    def __init__(self, context_gib: float | None = 0.5):
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0
        self.context_gib = context_gib

    def alloc(self, gib: float) -> None:
        self.allocated += int(gib * GIB)
        self.reserved = max(self.reserved, self.allocated)
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def free(self, gib: float) -> None:
        self.allocated -= int(gib * GIB)

    def max_memory_allocated(self) -> int:
        return self.peak_allocated

    def max_memory_reserved(self) -> int:
        return self.peak_reserved

    def memory_reserved(self) -> int:
        return self.reserved

    def reset_peak_memory_stats(self) -> None:
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

    def device_name(self) -> str:
        return GPU

    def process_used_bytes(self) -> int | None:
        return None if self.context_gib is None else self.reserved + int(self.context_gib * GIB)


class ForwardAllocates(torch.nn.Module):
    """A model whose forward holds `activations` GiB on the fake GPU (saved for the backward)."""

    def __init__(self, cuda: FakeCuda):
        super().__init__()
        self.cuda = cuda
        self.activations = 0.0

    def forward(self, x):
        self.cuda.alloc(self.activations)
        return x


class Harness:
    """Calls RunCallback's hooks in the order transformers' training loop does, with the fake GPU moving as a step would."""

    def __init__(self, tmp_path, cuda: FakeCuda, hooked: bool = True):
        from sft_tui.core.runs.rundir import RunDir

        (tmp_path / "run").mkdir()
        self.run = RunDir(tmp_path / "run")
        self.cuda = cuda
        self.model = ForwardAllocates(cuda)
        self.callback = RunCallback(self.run, StatusReporter(self.run, "train"), threading.Event(), cuda=cuda)
        self.state = SimpleNamespace(global_step=0, max_steps=10, epoch=0.0, num_input_tokens_seen=0, is_world_process_zero=False)
        self.control = SimpleNamespace(should_save=False, should_training_stop=False)
        self.callback.on_train_begin(None, self.state, self.control, model=self.model if hooked else None)

    def call(self, hook: str, **kwargs) -> None:
        getattr(self.callback, hook)(None, self.state, self.control, **kwargs)

    def step(self, forward: float = 4.0, backward: float = 6.0, optimizer: float = 2.0, micro_batches: int = 1) -> None:
        """forward: activations saved; backward: its temporaries on top of them; optimizer: the update's temporaries."""
        self.call("on_step_begin")
        for _ in range(micro_batches):
            self.model.activations = forward
            self.model(torch.zeros(1))
            self.cuda.alloc(backward)
            self.cuda.free(backward + forward)
        self.call("on_pre_optimizer_step")
        self.cuda.alloc(optimizer)
        self.cuda.free(optimizer)
        self.call("on_optimizer_step")
        self.state.global_step += 1
        self.call("on_step_end")

    def log_row(self) -> None:
        self.state.num_input_tokens_seen += 100
        self.call("on_log", logs={"loss": 1.0, "learning_rate": 1e-4})

    def evaluate(self, gib: float) -> None:
        self.model.eval()
        self.model.activations = gib
        self.model(torch.zeros(1))  # an eval forward: not the "forward" phase
        self.cuda.free(gib)
        self.model.train()
        self.call("on_log", logs={"eval_loss": 1.0})  # transformers logs the eval metrics before on_evaluate
        self.call("on_evaluate", metrics={})

    def save(self, gib: float) -> None:
        self.cuda.alloc(gib)
        self.cuda.free(gib)
        self.call("on_save")


@pytest.fixture()
def gpu(tmp_path, runs_home):
    cuda = FakeCuda()
    cuda.alloc(8.0)  # weights and optimizer state, resident through training
    return Harness(tmp_path, cuda)


@pytest.mark.parametrize("largest, expected, top", [
    (dict(backward=6.0), "backward", 18.0),
    (dict(forward=11.0, backward=0.0), "forward", 19.0),
    (dict(optimizer=12.0), "optimizer", 20.0),
    ("eval", "eval", 23.0),
    ("save", "save", 22.0),
])
def test_the_peak_is_named_with_the_phase_it_happened_in(gpu, largest, expected, top):
    gpu.step()  # forward 12, backward 18, optimizer 10 (GiB, with the 8 resident)
    gpu.log_row()
    if largest == "eval":
        gpu.evaluate(15.0)
    elif largest == "save":
        gpu.save(14.0)
    else:
        gpu.step(**largest)
    peak = gpu.callback.peak()
    assert (peak.phase, peak.allocated_gib) == (expected, pytest.approx(top, abs=1e-3))
    assert peak.reserved_gib >= peak.allocated_gib and peak.gpu_name == GPU


def test_phases_are_read_per_micro_batch_and_each_keeps_its_own_peak(gpu):
    gpu.step(forward=3.0, backward=1.0, optimizer=5.0, micro_batches=4)
    by_phase = dict(gpu.callback.peak().by_phase)
    assert by_phase == pytest.approx({"forward": 11.0, "backward": 12.0, "optimizer": 13.0}, abs=1e-3)
    assert gpu.callback.peak().phase == "optimizer"


def test_rows_keep_the_peak_since_the_previous_row_across_phase_resets(gpu):
    gpu.step(backward=6.0)  # 18 GiB in the backward, then the counters are reset twice more before the row
    gpu.step(backward=1.0)
    gpu.log_row()
    gpu.step(backward=0.0, optimizer=1.0)  # 12 GiB (the forward)
    gpu.log_row()
    rows = list(gpu.run.read_new_rows().train)
    assert [r.gpu_mem_gib for r in rows] == pytest.approx([18.0, 12.0], abs=1e-3)
    assert [r.gpu_reserved_gib for r in rows] == pytest.approx([18.0, 18.0], abs=1e-3)  # the cache keeps what it reserved


def test_loading_is_not_the_runs_peak_and_the_cuda_context_is_what_nvml_sees_beyond_the_allocator(tmp_path, runs_home):
    cuda = FakeCuda(context_gib=0.75)
    cuda.alloc(30.0)  # a load-time temporary
    cuda.free(22.0)
    harness = Harness(tmp_path, cuda)
    harness.step()
    harness.log_row()
    peak = harness.callback.peak()
    assert peak.allocated_gib == pytest.approx(18.0, abs=1e-3)
    assert peak.context_gib == pytest.approx(0.75, abs=1e-3)


def test_without_forward_hooks_the_step_is_not_split_into_forward_and_backward(tmp_path, runs_home):
    cuda = FakeCuda()
    harness = Harness(tmp_path, cuda, hooked=False)
    harness.step()
    assert harness.callback.peak().phase == "" and "forward" not in dict(harness.callback.peak().by_phase)


def test_training_end_removes_the_hooks(gpu):
    gpu.step()
    gpu.call("on_train_end")
    before = gpu.callback.peak()
    gpu.model.activations = 50.0
    gpu.model(torch.zeros(1))  # after training (the saved model used again): nothing is read
    assert gpu.callback.peak() == before and not gpu.model._forward_hooks and not gpu.model._forward_pre_hooks


def test_a_cpu_run_has_no_gpu_figures(tmp_path, runs_home):
    from sft_tui.core.runs.rundir import RunDir

    (tmp_path / "run").mkdir()
    run = RunDir(tmp_path / "run")
    callback = RunCallback(run, StatusReporter(run, "train"), threading.Event())
    state = SimpleNamespace(global_step=1, max_steps=2, epoch=0.5, num_input_tokens_seen=10, is_world_process_zero=False)
    callback.on_train_begin(None, state, None, model=torch.nn.Linear(1, 1))
    callback.on_log(None, state, None, logs={"loss": 1.0})
    assert callback.peak() is None and run.read_new_rows().train[0].gpu_mem_gib is None


def test_the_tracker_never_synchronises_it_only_reads_and_resets_counters():
    calls: list[str] = []

    class Recording(FakeCuda):
        def __getattribute__(self, name):
            if not name.startswith("_") and name not in ("alloc", "free", "allocated", "reserved", "peak_allocated", "peak_reserved", "context_gib"):
                calls.append(name)
            return super().__getattribute__(name)

    tracker = PeakTracker(Recording())
    tracker.begin("forward")
    tracker.begin("backward")
    assert set(calls) == {"max_memory_allocated", "max_memory_reserved", "reset_peak_memory_stats"}


def test_a_cuda_summary_carries_the_measured_peak_and_the_estimate_it_was_launched_with(make_run, monkeypatch, capsys, request):
    """The real trainer (TRL on the tiny model, on the CPU) with the CUDA memory calls injected: its summary.json."""
    from sft_tui.trainer import train

    cuda = FakeCuda(context_gib=0.6)

    def activations_saved(module, args, output):  # every module's training forward holds a little more on the fake GPU
        if module.training and torch.is_grad_enabled():
            cuda.alloc(0.001)

    handle = torch.nn.modules.module.register_module_forward_hook(activations_saved)
    request.addfinalizer(handle.remove)
    monkeypatch.setattr(train, "cuda_memory_for", lambda device: cuda)
    run = make_run("training.max_steps=3", "training.gradient_accumulation_steps=2", "training.save_steps=2")
    run.write_placement(Placement(submitted_at=now_iso(), device="cuda", estimate_gib=13.5))
    summary = train.run_training(run, resume=False, stop=threading.Event(), reporter=StatusReporter(run, "train"))
    written = json.loads(run.summary_path.read_text())
    for key in ("measured_peak_allocated_gib", "peak_gpu_reserved_gib", "measured_peak_phase", "measured_context_gib", "gpu_name"):
        assert written[key] == getattr(summary, key)
    assert written["estimated_peak_gib"] == 13.5  # what placement.json says the run was launched with
    assert written["measured_peak_allocated_gib"] > 0 and written["peak_gpu_reserved_gib"] >= written["measured_peak_allocated_gib"]
    # memory only grows, in training forwards: the last forward holds the peak, and it is found there (eval forwards are not)
    assert written["measured_peak_phase"] == "forward" and written["gpu_name"] == GPU
    assert written["measured_context_gib"] == pytest.approx(0.6, abs=1e-3)
    assert TrainSummary.from_json(written) == summary
    assert all(row.gpu_mem_gib is not None and row.gpu_reserved_gib is not None for row in run.read_new_rows().train)
    line = next(line for line in capsys.readouterr().out.splitlines() if "measured peak" in line)
    assert all(f"{phase} " in line for phase in ("forward", "backward", "optimizer", "save"))  # the hooks fired in the real trainer


def test_a_run_without_a_placement_estimate_is_estimated_from_its_config(make_run, tiny_model):
    from sft_tui.core.config.load import config_from_toml_text
    from sft_tui.trainer import train

    run = make_run("training.max_steps=3")
    config = config_from_toml_text(run.read_config_text(), str(run.config_path))
    callback = RunCallback(run, StatusReporter(run, "train"), threading.Event())
    fields = train.memory_fields(callback, run, config, tiny_model)
    assert fields.keys() == {"estimated_peak_gib"} and fields["estimated_peak_gib"] > 0  # a CPU run: no measured fields
    run.write_placement(Placement(submitted_at=now_iso(), device="cpu", estimate_gib=None))
    assert train.memory_fields(callback, run, config, tiny_model) == fields
