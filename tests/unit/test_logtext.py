"""Log text: progress-bar noise recognised, raw metric dicts made readable, a growing log followed from its end."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

from sft_tui.core.runs.logtext import (
    LogFollower,
    clean_line,
    format_eval_line,
    format_step_line,
    is_progress_noise,
    metric_dict,
    readable_line,
    readable_lines,
    readable_tail,
)
from sft_tui.core.runs.schema import JobStatus, now_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.watch import RunWatcher

# what transformers 5's PrinterCallback printed (its floats pre-formatted as strings), from a real demo run's train.log
TRAIN_DICT = ("{'loss': '2.559', 'grad_norm': '1.028', 'learning_rate': '0.001', 'entropy': '1.382', 'mean_token_accuracy': '0.5093', "
              "'num_tokens': '3680', 'epoch': '0.15', 'num_input_tokens_seen': 3680, 'train_runtime': '0.3134', 'train_tokens_per_second': '1.174e+04'}")
EVAL_DICT = "{'eval_loss': '1.269', 'eval_runtime': '0.0586', 'eval_samples_per_second': '682.2', 'epoch': '0.8', 'num_input_tokens_seen': 19680}"
END_DICT = "{'train_runtime': '16.16', 'train_samples_per_second': '237.6', 'train_loss': '1.15', 'epoch': '8', 'num_input_tokens_seen': 197320}"


@pytest.mark.parametrize("line", [
    " 45%|####      | 9/20 [00:01<00:02, 4.10it/s]",
    "Map: 100%|██████████| 480/480 [00:00<00:00, 5123.45 examples/s]",
    "  0%|          | 0/480 [00:00<?, ?it/s]",
    "Generating train split: 480 examples [00:00, 1234.56 examples/s]",  # tqdm without a total: no bar, only the rate block
    "Loading checkpoint shards: 100%|##########| 2/2 [01:02<00:00, 31.20s/it]",
    "", "   ",
])
def test_progress_bars_and_blank_lines_are_noise(line):
    assert is_progress_noise(line) and readable_line(line) is None


@pytest.mark.parametrize("line", [
    "step 120/300  loss 1.234  lr 1.9e-04  grad 0.81  4,100 tok/s  ETA 3:05",
    "[sft-tui] data: alpaca, 480 training rows, 10% held out",  # a percentage without a bar is not a bar
    "  warnings.warn(f\"`{old}` is deprecated\")",
    "Traceback (most recent call last):",
])
def test_lines_a_person_wrote_are_kept_as_they_are(line):
    assert not is_progress_noise(line) and readable_line(line) == line


def test_carriage_return_redraws_collapse_to_what_the_terminal_showed_last():
    redrawn = " 10%|#         | 1/10 [00:01<00:09, 1.0it/s]\r 20%|##        | 2/10 [00:02<00:08, 1.0it/s]"
    assert clean_line(redrawn) == " 20%|##        | 2/10 [00:02<00:08, 1.0it/s]" and readable_line(redrawn) is None
    assert clean_line("50%|#####| 5/10 [00:05<00:05]\r[sft-tui] saved\r") == "[sft-tui] saved"  # the bar overwritten by a real line
    assert readable_line("50%|#####| 5/10 [00:05<00:05, 1.0it/s]\r[sft-tui] saved\r") == "[sft-tui] saved"


def test_ansi_escapes_are_stripped():
    assert clean_line("\x1b[1;32m[sft-tui]\x1b[0m ready \x1b]8;;http://x\x07link\x1b]8;;\x07") == "[sft-tui] ready link"
    assert readable_line("\x1b[2K\x1b[1G 30%|###  | 3/10 [00:03<00:07, 1.0it/s]") is None


def test_a_raw_train_dict_becomes_the_line_the_trainer_prints_now():
    assert readable_line(TRAIN_DICT) == "epoch 0.15  loss 2.559  lr 1.0e-03  grad 1.03  11,740 tok/s"
    assert readable_line("{'loss': 1.5, 'learning_rate': 0.0, 'step': 7}") == "step 7  loss 1.500  lr 0"  # numbers, not strings; a step when there is one


def test_eval_and_end_of_training_dicts_become_readable():
    assert readable_line(EVAL_DICT) == "eval @epoch 0.8  loss 1.269"
    assert readable_line(END_DICT) == "training ended after 16.2 s, mean loss 1.150"
    assert readable_line('{"eval_loss": 1.1, "step": 120}') == format_eval_line(120, 1.1) == "eval @120  loss 1.100"


@pytest.mark.parametrize("line", [
    "{not a dict}", "{'a': 1}", '{"model": "qwen", "lr": 2e-4}', "{'loss': __import__('os').getcwd()}", "{'loss': 1", "{}",
])
def test_lines_in_braces_that_are_not_metric_dicts_are_kept(line):
    assert metric_dict(line) is None and readable_line(line) == line


def test_the_step_line_reads_like_the_brief_and_its_columns_line_up():
    assert format_step_line(120, 300, 1.2345, 1.9e-4, 0.812, 4100.3, 185) == "step 120/300  loss 1.234  lr 1.9e-04  grad 0.81  4,100 tok/s  ETA 3:05"
    assert format_step_line(5, 300, 2.0, 0.0).startswith("step   5/300  loss 2.000  lr 0")
    assert format_step_line(5, None, None) == "step 5  loss -"


def test_readable_lines_drops_noise_and_keeps_order():
    assert readable_lines(["[sft-tui] a", " 5%|#  | 1/20 [00:00<00:01, 9.9it/s]", EVAL_DICT, ""]) == ["[sft-tui] a", "eval @epoch 0.8  loss 1.269"]


# --- following a file ---

def test_the_first_read_gives_only_the_end_of_a_long_log(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)))
    chunk = LogFollower(log, max_lines=100, max_bytes=4096).read()
    assert chunk.restarted and chunk.lines[-1] == "line 9999" and len(chunk.lines) <= 100
    assert all(line.startswith("line ") and line[5:].isdigit() for line in chunk.lines)  # no line cut off at the window's start


def test_appended_lines_arrive_once_and_an_unfinished_line_waits(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("one\n")
    follower = LogFollower(log)
    assert follower.read().lines == ("one",)
    with log.open("a") as handle:
        handle.write("two\nthr")
    chunk = follower.read()
    assert (chunk.lines, chunk.pending, chunk.restarted) == (("two",), "thr", False)
    with log.open("a") as handle:
        handle.write("ee\n")
    assert (follower.read().lines, follower.read().lines) == (("three",), ())


def test_a_truncated_or_replaced_log_starts_over(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("old 1\nold 2\n")
    follower = LogFollower(log)
    follower.read()
    log.write_text("new\n")
    chunk = follower.read()
    assert chunk.restarted and chunk.lines == ("new",)


def test_a_missing_log_says_so_and_is_read_once_it_appears(tmp_path):
    log = tmp_path / "job.log"
    follower = LogFollower(log)
    assert follower.read().missing == "job.log does not exist yet"
    log.write_text("started\n")
    chunk = follower.read()
    assert chunk.missing == "" and chunk.lines == ("started",)


def test_bad_bytes_are_replaced_and_a_character_split_across_reads_survives(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"bad \xff\xfe byte\n" + "caf\u00e9".encode()[:4])  # 'é' is two bytes: only the first is written yet
    follower = LogFollower(log)
    chunk = follower.read()
    assert chunk.lines == ("bad \ufffd\ufffd byte",)
    with log.open("ab") as handle:
        handle.write("caf\u00e9".encode()[4:] + b"\n")
    assert follower.read().lines == ("caf\u00e9",)


def test_readable_tail_gives_the_last_readable_lines(tmp_path):
    log = tmp_path / "train.log"
    bars = "".join(f" {p}%|#   | {p}/100 [00:01<00:02, 4.1it/s]\r" for p in range(0, 100, 10)) + "\n"
    log.write_text("[sft-tui] start\n" + TRAIN_DICT + "\n" + bars * 30 + EVAL_DICT + "\n\n")
    assert readable_tail(log, 12) == ("[sft-tui] start", "epoch 0.15  loss 2.559  lr 1.0e-03  grad 1.03  11,740 tok/s",
                                      "eval @epoch 0.8  loss 1.269")
    assert readable_tail(log, 1) == ("eval @epoch 0.8  loss 1.269",)
    assert readable_tail(tmp_path / "missing.log") == ()


def test_the_monitors_log_tail_is_readable(runs_home):
    run = RunStore().create_run('[model]\nname = "m"\n', "m", "lora")
    run.write_status(JobStatus("running", os.getpid(), now_iso(), now_iso(), step=12, max_steps=50))
    run.log_path.write_text("[sft-tui] run m\n 45%|####      | 9/20 [00:01<00:02, 4.10it/s]\n" + TRAIN_DICT + "\n")
    tail = RunWatcher(run).poll(datetime.now(timezone.utc)).log_tail
    assert tail == ("[sft-tui] run m", "epoch 0.15  loss 2.559  lr 1.0e-03  grad 1.03  11,740 tok/s")
