"""train.log reads like a person wrote it: one line per logged step and per eval, no raw metric dicts, no progress bars."""

from __future__ import annotations

import re

from sft_tui.core.runs.jobs import launch
from sft_tui.core.runs.logtext import is_progress_noise, metric_dict
from tests.trainer.conftest import FINISH_S, state, wait_for

STEP_LINE = re.compile(r"^step +(\d+)/6  loss \d+\.\d{3}  lr (0|\d\.\de[-+]\d\d)  grad \d+\.\d\d  [\d,]+ tok/s( {2}ETA \d+:\d\d)?$")
EVAL_LINE = re.compile(r"^eval @(\d+)  loss \d+\.\d{3}$")


def test_a_launched_run_logs_readable_step_and_eval_lines(make_run):
    run = make_run("training.max_steps=6", "training.logging_steps=2", "training.eval_steps=3")
    launch(run)  # through the supervisor, like the TUI and the CLI: train.log is what they show
    wait_for(lambda: state(run) not in ("queued", "running"), FINISH_S, "the run to finish")
    log = run.log_path.read_text()
    assert state(run) == "completed", log[-3000:]
    lines = log.splitlines()
    steps = [int(m.group(1)) for m in map(STEP_LINE.match, lines) if m]
    evals = [int(m.group(1)) for m in map(EVAL_LINE.match, lines) if m]
    assert steps == [1, 2, 4, 6] and evals == [3, 6], log  # logging_first_step, then every 2; eval every 3
    assert "{'loss'" not in log and "'eval_loss'" not in log and "'train_runtime'" not in log
    assert not [line for line in lines if metric_dict(line) or (line.strip() and is_progress_noise(line)) or "\r" in line]
    assert any(line.startswith("[sft-tui] completed at step 6") for line in lines)  # our own lines are kept as they were
    assert "pip install kernels" not in log and "is_gradient_checkpointing" not in log  # known-harmless library noise (noise.py)
