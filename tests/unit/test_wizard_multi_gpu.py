"""The wizard on several GPUs: a run one GPU cannot hold is sharded (FSDP), one it holds trains a copy per GPU (DDP).

Issue 18: "a 70B LoRA that fits on 4x80 GB with FSDP is 'fine-tune on 4 GPUs', not 'use a
smaller model'". The per-GPU peaks come from the estimator (`TrainSettings(gpus, strategy)`),
so every number asserted here is the estimator's, computed beside the wizard.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from sft_tui.core.config.load import load_run_config
from sft_tui.core.decide.starter import gpus_now, shares_line, wizard_files
from sft_tui.core.decide.wizard import (
    detected_box,
    gpus_to_use,
    load_spec,
    recommend,
    render_recommendation,
    validate_answers,
)
from sft_tui.core.errors import UserError
from sft_tui.core.estimate.memory import TrainSettings, estimate_memory
from sft_tui.core.models.modelspec import resolve_model
from sft_tui.core.runs.placement import GpuRoom

SPEC = load_spec()
TASK = dict(goal="task", labeled_examples=1000)
FULL_OK = dict(goal="task", labeled_examples=50000, keep_general_abilities=False)  # full fine-tuning is considered


def per_gpu(model: str, method: str, gpus: int, strategy: str, optimizer: str = "adamw_torch", seq_len: int = 2048) -> float:
    """The estimator's per-GPU peak for the wizard's settings (micro-batch 1, checkpointing on)."""
    settings = TrainSettings(method=method, seq_len=seq_len, batch_size=1, gradient_checkpointing=True, optimizer=optimizer,
                             gpus=gpus, strategy=strategy)
    return estimate_memory(resolve_model(model), settings).peak_gib


def rec_for(**answers):
    return recommend(validate_answers(TASK | answers, SPEC))


def test_70b_lora_on_one_80gb_gpu_is_qlora_on_that_gpu():
    rec = rec_for(model="llama3.1-70b", gpu_gib=80.0)
    assert (rec.method, rec.model, rec.gpus, rec.strategy) == ("qlora", "llama3.1-70b", 1, "")
    assert "GPUs" not in rec.outcome() and rec.to_json()["distributed"] is None


def test_70b_lora_on_four_80gb_gpus_is_lora_with_fsdp_and_says_the_per_gpu_peak():
    rec = rec_for(model="llama3.1-70b", gpu_gib=80.0, gpu_count=4)
    assert (rec.method, rec.model, rec.gpus, rec.strategy) == ("lora", "llama3.1-70b", 4, "fsdp")
    assert rec.outcome() == "finetune with lora on llama3.1-70b, FSDP on 4 GPUs"
    peak = per_gpu("llama3.1-70b", "lora", 4, "fsdp")
    assert peak <= 80.0
    why = " | ".join(rec.reasons)
    assert "gpu_count = 4: lora does not fit one GPU" in why and f"fits with FSDP on 4 GPUs: {peak:.1f} GiB per GPU" in why
    assert "comes before QLoRA on one GPU" in why  # why not the lossier method on one GPU
    notes = [s.note for s in rec.method_steps]
    assert notes[-1] == f"lora on llama3.1-70b, FSDP on 4 GPUs: {peak:.1f} GiB per GPU of 80 GiB"
    assert any("NVLink" in c for c in rec.cautions)
    assert "sft-tui estimate llama3.1-70b --method lora --gpus 4 --strategy fsdp" in " | ".join(rec.next_steps)
    assert rec.to_json()["distributed"] == {"gpus": 4, "strategy": "fsdp"} and rec.estimate["peak_gib"] == pytest.approx(peak, abs=1e-3)
    text = render_recommendation(rec)
    assert "fits  lora on llama3.1-70b, FSDP on 4 GPUs" in text and "no    lora on llama3.1-70b: " in text


def test_8b_full_fine_tuning_on_24gb_cards_is_sharded_where_the_gpus_hold_it():
    one = recommend(validate_answers(FULL_OK | dict(model="llama3.1-8b", gpu_gib=24.0), SPEC))
    assert (one.method, one.gpus) == ("lora", 1)  # today's answer on one card: full does not fit
    for gpus in (2, 4, 8):
        rec = recommend(validate_answers(FULL_OK | dict(model="llama3.1-8b", gpu_gib=24.0, gpu_count=gpus), SPEC))
        peak = per_gpu("llama3.1-8b", "full", gpus, "fsdp")  # under FSDP the 8-bit optimizer gives way to AdamW
        if peak <= 24.0:
            assert (rec.method, rec.gpus, rec.strategy) == ("full", gpus, "fsdp"), rec.reasons
            assert f"{peak:.1f} GiB per GPU" in " | ".join(rec.reasons)
        else:  # full does not fit even sharded: LoRA, which one card holds, as a copy per card
            assert (rec.method, rec.strategy) == ("lora", "ddp"), rec.reasons
    assert recommend(validate_answers(FULL_OK | dict(model="llama3.1-8b", gpu_gib=24.0, gpu_count=8), SPEC)).method == "full"


def test_a_run_one_gpu_holds_trains_a_copy_per_gpu_with_ddp():
    rec = rec_for(model="llama3.1-8b", gpu_gib=80.0, gpu_count=2)
    assert (rec.method, rec.gpus, rec.strategy) == ("lora", 2, "ddp")
    assert rec.outcome() == "finetune with lora on llama3.1-8b, DDP on 2 GPUs"
    peak = per_gpu("llama3.1-8b", "lora", 2, "ddp")
    why = " | ".join(rec.reasons)
    assert "lora fits one GPU" in why and f"{peak:.1f} GiB per GPU with DDP" in why and "about 2x the examples per second" in why
    assert not any("NVLink" in c for c in rec.cautions) and any("DDP's global batch" in c for c in rec.cautions)


def test_fits_one_one_leaves_the_other_gpus_free():
    spec = replace(SPEC, distributed=replace(SPEC.distributed, fits_one="one"))
    rec = recommend(validate_answers(TASK | dict(model="llama3.1-8b", gpu_gib=80.0, gpu_count=2), spec), spec)
    assert (rec.method, rec.gpus, rec.strategy) == ("lora", 1, "")
    assert "the other GPUs stay free" in " | ".join(rec.reasons)


def test_not_even_qlora_sharded_falls_back_to_a_smaller_model_on_one_gpu():
    rec = rec_for(model="llama3.1-70b", gpu_gib=12.0, gpu_count=2)
    assert rec.gpus == 1 and rec.model != "llama3.1-70b"
    assert "not even QLoRA fits on one GPU or with FSDP on 2" in " | ".join(rec.reasons)


def test_without_a_model_the_gpus_are_not_placed():
    rec = rec_for(gpu_gib=80.0, gpu_count=4)
    assert (rec.method, rec.gpus) == ("lora", 1) and "nor how it spreads over 4 GPUs" in " | ".join(rec.reasons)


def test_the_gpu_count_is_answered_or_this_boxs_when_the_gpu_is_too():
    assert gpus_to_use({"gpu_count": 4, "gpu_gib": None}, detected_gpu_count=2) == 4
    assert gpus_to_use({"gpu_count": None, "gpu_gib": None}, detected_gpu_count=4) == 4
    assert gpus_to_use({"gpu_count": None, "gpu_gib": 80.0}, detected_gpu_count=4) == 1  # maybe another machine's GPU
    assert gpus_to_use({"gpu_count": None, "gpu_gib": None}, detected_gpu_count=0) == 1
    rec = recommend(validate_answers(TASK | dict(model="llama3.1-70b"), SPEC), SPEC, detected_gpu_gib=80.0, detected_gpu_count=4)
    assert (rec.gpus, rec.strategy, rec.gpu_count) == (4, "fsdp", 4)
    assert detected_box([80.0, 80.0, 15.0]) == (80.0, 2)  # GPU0's size: a T4 beside two A100s does not count
    assert detected_box([]) == (None, 0)


def test_a_gpu_count_answer_is_validated():
    assert validate_answers({"gpu_count": 8}, SPEC)["gpu_count"] == 8
    for bad in (0, 2.5, "four"):
        with pytest.raises(UserError, match="gpu_count"):
            validate_answers({"gpu_count": bad}, SPEC)


def test_the_distributed_table_is_checked_when_loaded(tmp_path):
    from sft_tui.core.models.presets import wizard_rules_path

    path = tmp_path / "wizard.toml"
    path.write_text(wizard_rules_path().read_text().replace('fits_one = "ddp"', 'fits_one = "all"'))
    with pytest.raises(UserError, match="fits_one"):
        load_spec(path)
    assert SPEC.distributed.fits_one == "ddp" and "{gpus}" in SPEC.distributed.fsdp_reason


def test_the_starter_config_trains_on_the_gpus_and_loads(tmp_path):
    answers = validate_answers(TASK | dict(model="llama3.1-70b", gpu_gib=80.0, gpu_count=4, data="train.jsonl"), SPEC)
    rec = recommend(answers, SPEC)
    files = wizard_files(answers, rec, SPEC, config_dir=tmp_path, cwd=tmp_path)
    text = files.config.text
    section = re.search(r"^\[distributed\]\n(.*?)(?=^\[|\Z)", text, flags=re.MULTILINE | re.DOTALL).group(1)
    assert re.search(r"^gpus = 4 +# wizard: 4 x 80 GiB GPUs", section, flags=re.MULTILINE)
    assert re.search(r'^strategy = "fsdp" +# wizard: sharded: one GPU cannot hold it', section, flags=re.MULTILINE)
    assert "# sized for 4 x 80 GiB GPUs with FSDP: micro-batch" in text and "GiB per GPU peak (estimate)" in text
    (tmp_path / "train.jsonl").write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    (tmp_path / "run.toml").write_text(text)
    config = load_run_config(tmp_path / "run.toml").config
    assert (config.distributed.gpus, config.distributed.strategy, config.method.name) == ("4", "fsdp", "lora")
    # the recipe's effective batch is kept over the 4 GPUs: micro x accumulation x GPUs
    t = config.training
    assert t.micro_batch_size * t.gradient_accumulation_steps * 4 >= 16
    assert f"global batch {t.micro_batch_size * t.gradient_accumulation_steps * 4} = " in files.record
    assert "FSDP on 4 GPUs of 80 GiB each" in files.record and "distributed.strategy = \"fsdp\"" in files.record


def test_full_fine_tuning_with_fsdp_writes_the_optimizer_that_runs_there(tmp_path):
    answers = validate_answers(FULL_OK | dict(model="llama3.1-8b", gpu_gib=24.0, gpu_count=8, data="train.jsonl"), SPEC)
    rec = recommend(answers, SPEC)
    assert (rec.method, rec.strategy) == ("full", "fsdp")
    config = wizard_files(answers, rec, SPEC, config_dir=tmp_path, cwd=tmp_path).config
    assert config.value("training.optimizer") == "adamw_torch"  # bitsandbytes' 8-bit AdamW cannot step FSDP's shards
    assert config.value("distributed.gpus") == 8
    # the config written is the one estimated: the same settings the recommendation fitted (accumulating keeps the
    # sharded fp32 gradients between micro-batches, which 24 GiB cannot hold here: so accumulation 1, and it says so)
    (tmp_path / "train.jsonl").write_text("")
    written = (tmp_path / "run.toml")
    written.write_text(config.text)
    from sft_tui.core.estimate.memory import settings_from_run_config

    loaded = load_run_config(written).config
    assert estimate_memory(resolve_model("llama3.1-8b"), settings_from_run_config(loaded)).peak_gib <= 24.0
    assert "NOT fit" not in config.text and config.value("training.gradient_accumulation_steps") == 1


def test_a_ddp_config_divides_the_accumulation_over_the_gpus(tmp_path):
    answers = validate_answers(TASK | dict(model="qwen2.5-1.5b", gpu_gib=80.0, gpu_count=2, seq_len=512), SPEC)
    rec = recommend(answers, SPEC)
    assert (rec.method, rec.strategy) == ("lora", "ddp")
    config = wizard_files(answers, rec, SPEC, config_dir=tmp_path, cwd=tmp_path).config
    one = wizard_files(answers | {"gpu_count": 1}, recommend(answers | {"gpu_count": 1}, SPEC), SPEC, config_dir=tmp_path, cwd=tmp_path).config
    assert config.value("distributed.strategy") == "ddp" and one.value("distributed.gpus") is None
    assert config.value("training.micro_batch_size") == one.value("training.micro_batch_size")
    assert config.value("training.gradient_accumulation_steps") * 2 == one.value("training.gradient_accumulation_steps")


def room(index: int, free: float, total: float = 80.0) -> GpuRoom:
    return GpuRoom(index, "NVIDIA H100", total, total - free, total - free, 0.0)


def test_a_multi_gpu_run_starts_now_only_when_that_many_gpus_have_room():
    rooms = [room(0, 80.0), room(1, 20.0), room(2, 79.0), room(3, 60.0)]
    shares = gpus_now(4, 50.0, rooms)
    assert shares.with_room == (0, 2, 3) and not shares.fits_now and shares.fits_when_empty
    assert gpus_now(3, 50.0, rooms).fits_now and gpus_now(4, 90.0, rooms).fits_when_empty is False
    assert gpus_now(4, 50.0, []) is None
    answers = validate_answers(TASK | dict(model="llama3.1-70b"), SPEC)
    rec = recommend(answers, SPEC, detected_gpu_gib=80.0, detected_gpu_count=4)
    files = wizard_files(answers, rec, SPEC, rooms=rooms)
    assert files.room is None and files.shares is not None
    line = files.room_line()
    assert line.startswith("on this box now: ") and "on each of 4) would wait in the queue for room (sft-tui train run.toml --queue)" in line
    assert files.placement_json()["gpus"] == 4 and "## This box when decided" in files.record
    assert "on one GPU" not in line  # FSDP: one GPU cannot hold it


def test_a_ddp_run_that_waits_says_one_gpu_would_start_now():
    shared = [room(0, 10.0, 24.0), room(1, 24.0, 24.0)]
    line = shares_line(gpus_now(2, 20.0, shared, "ddp"))
    assert line == ("on this box now: 1 of 2 GPUs have 20.0 GiB free: the run (about 20.0 GiB on each of 2) would wait in the queue "
                    "for room (sft-tui train run.toml --queue); on one GPU (gpu_count = 1) it would start now on GPU1")
    assert "needs 2 GPUs that hold it and this box has 1" in shares_line(gpus_now(2, 20.0, [room(0, 24.0, 24.0), room(1, 8.0, 8.0)]))


def test_the_cli_takes_the_gpu_count_from_the_answers(cli, tmp_path):
    answers = tmp_path / "answers.toml"
    answers.write_text('goal = "task"\nlabeled_examples = 1000\nmodel = "llama3.1-70b"\ngpu_gib = 80\ngpu_count = 4\n')
    result = cli("wizard", "--answers", str(answers), "--json", "--config-out", str(tmp_path / "run.toml"))
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["distributed"] == {"gpus": 4, "strategy": "fsdp"} and data["method"] == "lora"
    assert 'strategy = "fsdp"' in (tmp_path / "run.toml").read_text()
    answers.write_text(answers.read_text().replace("gpu_count = 4", "gpu_count = 0"))
    bad = cli("wizard", "--answers", str(answers))
    assert bad.code == 2 and "gpu_count must be between 1 and 64, got 0" in bad.err and "Traceback" not in bad.err
