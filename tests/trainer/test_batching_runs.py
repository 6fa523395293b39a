"""Real runs on the tiny model: the batching the trainer picks is the one it uses, logs and counts steps for."""

from __future__ import annotations

import json
import math
import threading

import pytest

from tests.trainer.conftest import DEMO


def _rows(path, count: int, long_every: int = 0) -> None:
    """`count` demo rows; every `long_every`-th gets a long answer, so random batches pad heavily."""
    rows = [json.loads(line) for line in (DEMO / "train.jsonl").read_text().splitlines()[:count]]
    for i, row in enumerate(rows):
        if long_every and i % long_every == 0:
            row["output"] = " ".join([row["output"]] * 6)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _train(make_run, tmp_path, monkeypatch, *overrides: str):
    """Train in this process; returns (run, summary, the TRL trainer's args)."""
    import sft_tui.trainer.train as train_module
    from sft_tui.core.runs.reporter import StatusReporter

    seen = {}
    original = train_module.build_trainer

    def capture(*args, **kwargs):
        trainer = original(*args, **kwargs)
        seen["args"] = trainer.args
        seen["padding_free"] = trainer.padding_free  # TRL derives it from bfd packing
        seen["sampler"] = trainer._get_train_sampler()
        return trainer

    monkeypatch.setattr(train_module, "build_trainer", capture)
    run = make_run(f"data.train={tmp_path / 'rows.jsonl'}", "data.eval=", "data.eval_fraction=0", *overrides)
    reporter = StatusReporter(run, "train")
    reporter.begin()
    summary = train_module.run_training(run, resume=False, stop=threading.Event(), reporter=reporter)
    reporter.finish("completed")
    return run, summary, seen


def test_packing_on_packs_rows_and_counts_the_packed_steps(make_run, tmp_path, monkeypatch, capsys):
    _rows(tmp_path / "rows.jsonl", 48)
    run, summary, seen = _train(make_run, tmp_path, monkeypatch, "data.packing=on", "training.epochs=1")
    out = capsys.readouterr().out
    assert "[sft-tui] batching: padding-free packing (data.packing = on; on the CPU it measured 0.64x random padded batches)" in out
    packed = [line for line in out.splitlines() if "[sft-tui] packing: 48 training rows packed into" in line]
    assert packed, out
    rows = int(packed[0].split("packed into ")[1].split()[0])
    assert rows < 48  # 48 short rows fit in fewer rows of 128 tokens
    assert summary.steps == summary.max_steps == math.ceil(rows / 8)
    assert (seen["args"].packing, seen["args"].packing_strategy, seen["padding_free"]) == (True, "bfd", True)
    assert run.read_status().max_steps == summary.steps


def test_auto_groups_by_length_where_random_batches_pad_heavily(make_run, tmp_path, monkeypatch, capsys):
    _rows(tmp_path / "rows.jsonl", 64, long_every=3)
    _, summary, seen = _train(make_run, tmp_path, monkeypatch, "training.max_steps=2")
    args = seen["args"]
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "[sft-tui] batching:" in line)
    assert "length-grouped padded batches (auto: sdpa on CPU" in line and "(random order:" in line
    assert args.train_sampling_strategy == "group_by_length" and not args.packing
    assert type(seen["sampler"]).__name__ == "EpochSeededLengthGroupedSampler"  # resume-safe order, see samplers.py
    assert summary.steps == 2


def test_auto_keeps_the_demo_in_random_order(make_run, tmp_path, monkeypatch, capsys):
    _rows(tmp_path / "rows.jsonl", 64)
    _, _, seen = _train(make_run, tmp_path, monkeypatch, "training.max_steps=1")
    assert "not worth grouping" in capsys.readouterr().out
    assert seen["args"].train_sampling_strategy == "random"


@pytest.mark.parametrize("setting", ["liger=on"])
def test_liger_forced_on_a_cpu_run_is_refused_before_loading(make_run, tmp_path, monkeypatch, setting):
    from sft_tui.core.errors import UserError

    _rows(tmp_path / "rows.jsonl", 8)
    with pytest.raises(UserError, match="CUDA only"):
        _train(make_run, tmp_path, monkeypatch, f"training.{setting}", "training.max_steps=1")


def test_grouped_order_depends_on_seed_and_epoch_only_so_a_resume_replays_it():
    import torch

    from sft_tui.core.data.batching import padding_share
    from sft_tui.trainer.samplers import EpochSeededLengthGroupedSampler

    lengths = [(i * 37) % 500 + 1 for i in range(640)]
    first = EpochSeededLengthGroupedSampler(8, lengths, seed=42)
    first.set_epoch(2)
    order = list(first)
    torch.rand(1000)  # the global random state moves on, as training would move it
    resumed = EpochSeededLengthGroupedSampler(8, lengths, seed=42)  # a fresh process resuming in epoch 2
    resumed.set_epoch(2)
    assert list(resumed) == order and sorted(order) == list(range(640))
    resumed.set_epoch(3)
    assert list(resumed) != order
    batches = [[lengths[i] for i in order[k:k + 8]] for k in range(0, 640, 8)]
    grouped_padding = 1 - sum(map(sum, batches)) / sum(max(b) * len(b) for b in batches)
    assert grouped_padding < 0.05 < padding_share(lengths, 8, "padded", 512)
