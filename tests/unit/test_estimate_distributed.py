"""The estimator on several GPUs: per-GPU peaks for DDP and FSDP full shard, the time over N GPUs, the CLI's flags.

Everything here is arithmetic on the model's config (no torch), except the last test,
which checks the DDP bucket term against torch's own reducer on the CPU (gloo, one process).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sft_tui.core.config.load import load_run_config
from sft_tui.core.errors import UserError
from sft_tui.core.estimate import sharding
from sft_tui.core.estimate.fit import (
    GpuTarget,
    build_estimate,
    estimate_time,
    largest_batch,
)
from sft_tui.core.estimate.memory import (
    TrainSettings,
    estimate_memory,
    settings_from_run_config,
)
from sft_tui.core.models.gpus import gpu_by_name
from sft_tui.core.models.modelspec import spec_from_hf_config, spec_from_preset
from sft_tui.core.units import GIB

# Peaks in bytes before multi-GPU estimates existed (the estimator at the commit before issue 18's):
# one GPU must stay exactly these, whatever strategy is named.
ONE_GPU_PEAKS = [
    ("llama3.1-8b", dict(method="full"), 129128425062.4, "optimizer step"),
    ("llama3.1-70b", dict(method="lora"), 149358616576.0, "backward start"),
    ("llama3.1-70b", dict(method="qlora", optimizer="paged_adamw_8bit"), 51284729856.0, "backward start"),
    ("qwen2.5-7b", dict(method="lora", objective="dpo", batch_size=2), 21221859123.2, "backward start"),
    ("mixtral-8x7b", dict(method="lora", lora_dropout=0.0), 106487890201.6, "backward start"),
]


def terms_by_name(model: str, **settings) -> dict[str, float]:
    """The peak phase's terms, by their report name, in bytes."""
    memory = estimate_memory(spec_from_preset(model), TrainSettings(**settings))
    out: dict[str, float] = {}
    for term in memory.terms:
        out[term.name] = out.get(term.name, 0.0) + term.bytes
    return out


@pytest.mark.parametrize("model, settings, peak, phase", ONE_GPU_PEAKS, ids=[f"{m}-{s['method']}" for m, s, _, _ in ONE_GPU_PEAKS])
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_one_gpu_is_the_estimate_it_always_was(model, settings, peak, phase, strategy):
    spec = spec_from_preset(model)
    memory = estimate_memory(spec, TrainSettings(**settings, gpus=1, strategy=strategy))
    assert memory.peak_bytes == pytest.approx(peak, rel=1e-12) and memory.phase == phase
    assert memory.terms == estimate_memory(spec, TrainSettings(**settings)).terms
    assert not any("per GPU" in a for a in memory.assumptions)


@pytest.mark.parametrize("model, method", [("llama3.1-8b", "full"), ("llama3.1-70b", "lora"), ("llama3.1-70b", "qlora")])
def test_fsdp_per_gpu_peak_falls_with_the_gpus_and_the_shards_are_exactly_one_nth(model, method):
    one = terms_by_name(model, method=method, optimizer="adamw_torch")
    peaks = []
    for n in (2, 4, 8):
        terms = terms_by_name(model, method=method, optimizer="adamw_torch", gpus=n, strategy="fsdp")
        peaks.append(sum(terms.values()))
        if method == "lora":  # QLoRA's quantisation constants stay whole: its own test below
            assert terms[f"sharded weights / {n}"] * n == pytest.approx(one["weights"], rel=1e-12)
        if method != "full":
            assert terms[f"sharded adapters / {n}"] * n == pytest.approx(one["trainable"], rel=1e-12)
        assert terms["optimizer"] * n == pytest.approx(one["optimizer"], rel=1e-12)
    assert peaks == sorted(peaks, reverse=True) and peaks[0] < sum(one.values())


def test_full_fine_tuning_shards_the_master_weights_gradients_and_state_at_the_optimizer_step():
    one = estimate_memory(spec_from_preset("llama3.1-8b"), TrainSettings(method="full"))
    four = estimate_memory(spec_from_preset("llama3.1-8b"), TrainSettings(method="full", gpus=4, strategy="fsdp"))
    assert (one.phase, four.phase) == ("optimizer step", "optimizer step")
    for key in ("weights", "gradients", "optimizer"):
        assert four.breakdown_gib()[key] * 4 == pytest.approx(one.breakdown_gib()[key], rel=1e-12), key
    assert four.breakdown_gib()["overhead"] == pytest.approx(one.breakdown_gib()["overhead"] + sharding.NCCL_BUFFERS_GIB)


def test_qlora_fsdp_shards_the_4bit_weights_but_keeps_the_quantisation_constants_whole():
    one = terms_by_name("llama3.1-70b", method="qlora", optimizer="adamw_torch")["weights"]
    spec = spec_from_preset("llama3.1-70b")
    linears = sum(s.parameters for s in spec.linear_shapes()) * spec.num_layers
    constants = linears / 64 * (1 + 4 / 256)  # double quantisation: one 8-bit absmax per 64 values, an fp32 one per 256 of those
    four = terms_by_name("llama3.1-70b", method="qlora", optimizer="adamw_torch", gpus=4, strategy="fsdp")["sharded weights / 4"]
    assert four == pytest.approx((one - constants) / 4 + constants, rel=1e-9)


def test_fsdp_adds_the_gathered_layers_and_the_reduce_scatter_in_backward():
    spec = spec_from_preset("llama3.1-70b")
    memory = estimate_memory(spec, TrainSettings(method="lora", gpus=4, strategy="fsdp"))
    terms = {t.name: t.bytes for t in memory.terms}
    counts = spec.count_parameters()
    lora_layer = memory.trainable_params // spec.num_layers
    # two bf16 decoder layers with their adapters (the one computing, the next prefetched) + the tail: final norm + lm_head
    assert terms["gathered layers (FSDP)"] == 2 * 2 * (counts.per_layer + lora_layer) + 2 * (counts.lm_head + counts.final_norm)
    assert 0 < terms["gradient reduce-scatter (FSDP)"] < 0.1 * GIB  # only the adapters have gradients to reduce
    assert memory.phase == "backward start"


def test_ddp_keeps_a_whole_replica_plus_buckets_the_size_of_the_trainable_gradients():
    for model, method in (("llama3.1-8b", "lora"), ("llama3.1-8b", "full"), ("qwen2.5-7b", "qlora")):
        spec = spec_from_preset(model)
        one = estimate_memory(spec, TrainSettings(method=method))
        two = estimate_memory(spec, TrainSettings(method=method, gpus=2, strategy="ddp"))
        buckets = {t.name: t.bytes for t in two.terms}["DDP gradient buckets"]
        assert buckets == 4 * one.trainable_params  # fp32 gradients: full fine-tuning's master weights, peft's fp32 adapters
        assert two.peak_bytes >= one.peak_bytes
        assert two.peak_bytes == pytest.approx(one.peak_bytes + buckets + sharding.NCCL_BUFFERS_GIB * GIB, rel=1e-9)
    lora = estimate_memory(spec_from_preset("llama3.1-8b"), TrainSettings(method="lora", gpus=8, strategy="ddp"))
    assert {t.name: t.bytes for t in lora.terms}["DDP gradient buckets"] < 0.2 * GIB  # frozen weights have no buckets


def test_70b_lora_needs_fsdp_over_several_80gb_gpus():
    """Llama 3.1 70B LoRA (bf16 base, seq 2048, micro-batch 1, checkpointing): ~139 GiB on one GPU.

    DDP copies the whole model to each GPU, so it never fits an 80 GB card; FSDP fits from
    2 GPUs on (about 78 GiB each, tight) and comfortably on 4 (about 44 GiB).
    """
    spec, budget = spec_from_preset("llama3.1-70b"), gpu_by_name("a100-80gb").memory_gib
    base = TrainSettings(method="lora")
    assert estimate_memory(spec, base).peak_gib > budget
    assert estimate_memory(spec, replace(base, gpus=4, strategy="ddp")).peak_gib > budget
    assert estimate_memory(spec, replace(base, gpus=4, strategy="fsdp")).peak_gib < 0.6 * budget
    assert largest_batch(spec, replace(base, gpus=4, strategy="fsdp"), budget) > 1  # the limits search per GPU too


def test_under_fsdp_an_8bit_optimizer_is_counted_as_the_adamw_the_trainer_runs():
    spec = spec_from_preset("llama3.1-8b")
    eight = estimate_memory(spec, TrainSettings(method="full", optimizer="adamw_8bit", gpus=4, strategy="fsdp"))
    adamw = estimate_memory(spec, TrainSettings(method="full", optimizer="adamw_torch", gpus=4, strategy="fsdp"))
    assert eight.peak_bytes == adamw.peak_bytes
    assert any("adamw_8bit runs as adamw_torch under FSDP" in a for a in eight.assumptions)
    ddp = estimate_memory(spec, TrainSettings(method="full", optimizer="adamw_8bit", gpus=4, strategy="ddp"))
    assert ddp.breakdown_gib()["optimizer"] < adamw.breakdown_gib()["optimizer"] * 4 / 2  # DDP steps 8-bit AdamW as asked


def test_bad_gpus_and_strategy_are_refused():
    with pytest.raises(UserError, match="gpus must be at least 1, got 0"):
        TrainSettings(gpus=0).validate()
    with pytest.raises(UserError, match="strategy must be one of ddp, fsdp; got 'zero3'"):
        TrainSettings(strategy="zero3").validate()


def test_time_counts_n_micro_batches_at_once_at_the_assumed_efficiency():
    spec, gpu = spec_from_preset("llama3.1-8b"), gpu_by_name("h100")
    one = estimate_time(spec, TrainSettings(), gpu, tokens=1e8)
    for strategy in ("ddp", "fsdp"):
        four = estimate_time(spec, TrainSettings(gpus=4, strategy=strategy), gpu, tokens=1e8)
        efficiency = sharding.SCALING_EFFICIENCY[strategy]
        assert four.tokens_per_s == pytest.approx(one.tokens_per_s * 4 * efficiency)
        assert four.eta_s == pytest.approx(one.eta_s / (4 * efficiency))
        assert (four.gpus, four.scaling) == (4, efficiency) and "assumed" in four.spread_note()


def test_suggestions_offer_fsdp_when_ddp_replicas_do_not_fit():
    spec = spec_from_preset("llama3.1-8b")
    estimate = build_estimate(spec, TrainSettings(method="full", gpus=4, strategy="ddp"), GpuTarget("A100", 80.0, gpu_by_name("a100-80gb")))
    first = estimate.suggestions[0]
    assert estimate.fits is False and "FSDP: shard over the 4 GPUs" in first.change and first.fits
    assert first.settings.strategy == "fsdp" and first.settings.gpus == 4


RUN = '''recipe = "{recipe}"
[model]
name = "llama3.1-70b"
[data]
train = "x.jsonl"
[distributed]
gpus = {gpus}
strategy = "{strategy}"
'''


def test_a_run_config_gives_the_gpus_and_the_strategy(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(recipe="lora", gpus='"all"', strategy="fsdp"))
    config = load_run_config(path).config
    assert (settings_from_run_config(config).gpus, settings_from_run_config(config).strategy) == (1, "fsdp")  # "all", none known
    assert settings_from_run_config(config, visible_gpus=8).gpus == 8
    path.write_text(RUN.format(recipe="lora", gpus="[0, 2, 3]", strategy="ddp"))
    assert settings_from_run_config(load_run_config(path).config, visible_gpus=8).gpus == 3
    path.write_text('recipe = "lora"\n[model]\nname = "qwen2.5-0.5b"\n[data]\ntrain = "x.jsonl"\n[distributed]\nprocesses = 2\n')
    assert settings_from_run_config(load_run_config(path).config).gpus == 1  # CPU processes: nothing for the GPU estimate


def test_cli_per_gpu_report_json_and_config(cli, tmp_path):
    result = cli("estimate", "llama3.1-70b", "--gpus", "4", "--strategy", "fsdp", "--gpu", "a100-80gb")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[2] == "per GPU (4 GPUs, FSDP full shard): every figure below is one GPU's"
    assert "gathered layers (FSDP)" in result.out and "sharded weights / 4" in result.out
    assert "80.0 GiB each x 4" in result.out and "on 4 GPUs at an assumed 85% scaling" in result.out
    data = json.loads(cli("estimate", "llama3.1-70b", "--gpus", "4", "--strategy", "fsdp", "--gpu", "a100-80gb", "--json").out)
    assert (data["gpus"], data["strategy"], data["fits"]) == (4, "fsdp", True)
    assert data["distributed"] == {"gpus": 4, "strategy": "fsdp", "per_gpu": True, "scaling_efficiency": 0.85}
    assert abs(sum(data["breakdown_gib"].values()) - data["peak_gib"]) < 0.01  # the contract's keys still sum to the peak
    assert any(t["name"] == "gathered layers (FSDP)" for t in data["terms"])
    one = json.loads(cli("estimate", "llama3.1-70b", "--json").out)
    assert (one["gpus"], one["strategy"], one["distributed"]) == (1, "", None)
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(recipe="qlora", gpus=2, strategy="fsdp"))
    data = json.loads(cli("estimate", "--config", str(path), "--json").out)
    assert (data["gpus"], data["strategy"]) == (2, "fsdp")
    assert any("paged_adamw_8bit runs as adamw_torch under FSDP" in a for a in data["assumptions"])


def _one_line(result, needle):
    assert result.code == 2, result
    assert result.err.count("\n") == 1 and result.err.startswith("error: ") and needle in result.err
    assert result.out == ""


def test_cli_bad_gpus_and_strategy_end_in_one_line(cli):
    _one_line(cli("estimate", "llama3.1-70b", "--gpus", "0"), "gpus must be at least 1, got 0")
    _one_line(cli("estimate", "llama3.1-70b", "--gpus", "2", "--strategy", "zero"), "strategy must be one of ddp, fsdp; got 'zero'")


def test_ddp_buckets_match_torchs_reducer():
    """torch's DDP reducer (gloo, one process on the CPU) sizes its buckets as the estimator's term: trainable params x 4 B."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    import torch.distributed as dist

    config = dict(model_type="llama", hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                  vocab_size=256, num_hidden_layers=2, tie_word_embeddings=False)
    spec = spec_from_hf_config(config, "tiny")
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        for method in ("full", "lora"):
            model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config), dtype=torch.float32)
            if method == "lora":
                model = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules="all-linear", lora_dropout=0.0))
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            buckets = sum(int(b) for b in ddp._get_ddp_logging_data()["bucket_sizes"].split(", "))
            memory = estimate_memory(spec, TrainSettings(method=method, lora_r=8, gpus=2, strategy="ddp", precision="fp32"))
            assert {t.name: t.bytes for t in memory.terms}["DDP gradient buckets"] == buckets, method
    finally:
        dist.destroy_process_group()
