"""The command line: every contract command exists; user mistakes end in one line and exit 2."""

from __future__ import annotations

import json
from dataclasses import replace
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from sft_tui import __version__
from sft_tui.core.runs.schema import JobStatus, TrainRow
from sft_tui.core.runs.store import RunStore

CONTRACT = ["demo", "wizard", "estimate", "data", "train", "runs", "watch", "stop", "resume", "eval", "merge", "chat"]
DATA_COMMANDS = [
    ["data", "inspect", "x.jsonl"],
    ["data", "dedup", "x.jsonl", "-o", "y.jsonl"], ["data", "select", "x.jsonl", "-o", "y.jsonl", "--n", "5"],
    ["data", "convert", "x.jsonl", "-o", "y.jsonl"], ["data", "split", "x.jsonl", "-o", "out"],
]


def test_version(cli):
    result = cli("--version")
    assert result.code == 0 and result.out.strip() == f"sft-tui {__version__}"


def test_help_lists_every_contract_command(cli):
    result = cli("--help")
    assert result.code == 0
    for command in CONTRACT:
        assert f" {command} " in result.out, command


@pytest.mark.parametrize("command", CONTRACT + ["models", "config", "gpu"])
def test_every_command_has_help(cli, command):
    assert cli(command, "--help").code == 0


@pytest.mark.parametrize("args", DATA_COMMANDS, ids=lambda a: " ".join(a))
def test_data_commands_name_a_missing_file_in_one_line(cli, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and "x.jsonl: dataset file not found" in result.err
    assert not (tmp_path / "y.jsonl").exists() and not (tmp_path / "out").exists()


def test_bare_sft_tui_without_a_terminal_says_so(cli):
    result = cli()  # pytest's captured output is not a terminal
    assert result.code == 2 and "needs an interactive terminal" in result.err


@pytest.mark.parametrize("command", ["watch", "stop", "resume", "eval", "chat"])
def test_run_commands_report_an_unknown_run(cli, runs_home, command):
    result = cli(command, "nope")
    assert result.code == 2 and result.err.startswith("error: no runs in")


def test_runs_json_on_an_empty_home_is_an_empty_list(cli, runs_home):
    result = cli("runs", "--json")
    assert result.code == 0 and json.loads(result.out) == []
    assert "no runs in" in cli("runs").out


def test_runs_lists_store_made_runs_and_flags_crashes(cli, runs_home):
    store = RunStore()
    now = datetime.now(timezone.utc)
    crashed = store.create_run('[model]\nname = "llama3.1-8b"\n[method]\nname = "qlora"\n', "llama3.1-8b", "qlora", now=now - timedelta(minutes=9))
    old = (now - timedelta(minutes=5)).isoformat()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed.write_status(JobStatus("running", dead.pid, old, old, step=12, max_steps=300))
    done = store.create_run('[model]\nname = "smollm2-135m"\n[method]\nname = "lora"\n', "smollm2-135m", "lora", now=now)
    done.write_status(JobStatus("completed", 1, old, now.isoformat(), step=300, max_steps=300))
    done.append_metric(TrainRow(step=300, loss=0.4321))
    listed = json.loads(cli("runs", "--json").out)
    assert [r["id"] for r in listed] == [done.id, crashed.id]
    assert (listed[0]["state"], listed[0]["model"], listed[0]["method"], listed[0]["last_loss"]) == ("completed", "smollm2-135m", "lora", 0.4321)
    assert (listed[1]["state"], listed[1]["step"], listed[1]["max_steps"]) == ("crashed", 12, 300)
    for key in ("id", "state", "model", "method", "step", "max_steps", "last_loss", "started_at", "updated_at", "owner", "jobs"):
        assert key in listed[0]
    table = cli("runs").out
    assert "crashed" in table and "300/300" in table and "0.4321" in table
    watched = cli("watch", crashed.id[:15])  # a finished run: one closing line, then back to the shell
    assert watched.code == 1 and f"run {crashed.id}: crashed" in watched.out  # scripts see that it did not complete


def test_models_list_and_show(cli):
    listed = json.loads(cli("models", "list", "--json").out)
    assert len(listed) >= 20 and all(m["params"]["total"] > 0 for m in listed)
    shown = cli("models", "show", "llama3.1-8b")
    assert shown.code == 0 and "8,030,261,248" in shown.out
    as_json = json.loads(cli("models", "show", "llama3.1-8b", "--json").out)
    assert as_json["num_kv_heads"] == 8 and as_json["params"]["total"] == 8_030_261_248


def _one_line_error(result, *needles):
    assert result.code == 2, result
    assert result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith("error: ")
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in result.err


def test_new_user_mistakes_end_in_one_line(cli, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text('[model]\nname = "smollm2-135m"\n[data\ntrain = "x"\n')
    _one_line_error(cli("config", "check", str(broken)), f"{broken}:3: invalid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[model]\nname = "smollm2-135m"\n[data]\ntrain = "x"\n[training]\nbatchsize = 4\n')
    _one_line_error(cli("config", "check", str(unknown)), f"{unknown}:6", "training.batchsize")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[model]\nname = "smollm2-135m"\n[data]\ntrain = "x"\n[training]\nepochs = "two"\n')
    _one_line_error(cli("train", str(wrong)), "training.epochs must be a number")
    _one_line_error(cli("config", "check", str(tmp_path / "missing.toml")), "file not found")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}')
    _one_line_error(cli("models", "show", str(folder)), 'missing field "intermediate_size"')
    _one_line_error(cli("models", "show", "not-a-model"), "unknown model")
    _one_line_error(cli("config", "check", str(unknown), "--set", "training"), "has no '='")


def test_config_init_writes_a_valid_file_and_never_overwrites(cli, tmp_path):
    path = tmp_path / "run.toml"
    assert cli("config", "init", str(path), "--recipe", "qlora", "--model", "qwen2.5-0.5b").code == 0
    assert cli("config", "check", str(path)).code == 0
    path.write_text("# my own notes\n")
    _one_line_error(cli("config", "init", str(path)), "not overwriting")
    assert path.read_text() == "# my own notes\n"
    _one_line_error(cli("config", "init", str(tmp_path / "b.toml"), "--model", "nope-7b"), "unknown model")
    assert not (tmp_path / "b.toml").exists()


def test_config_show_prints_origins(cli, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('recipe = "lora"\n[model]\nname = "smollm2-135m"\n[data]\ntrain = "x.jsonl"\n')
    out = cli("config", "show", str(path), "--set", "training.lr=1e-4").out
    assert "lr = 0.0001" in out and "# --set" in out and "lora.toml" in out


def test_gpu_json(cli):
    data = json.loads(cli("gpu", "--json").out)
    assert set(data) == {"gpu", "host", "room"}
    assert data["gpu"]["available"] or data["gpu"]["reason"].startswith("no NVIDIA GPU found")


def test_gpu_shows_the_room_each_gpu_has_for_a_new_run(cli, monkeypatch):
    from tests.unit.test_queue import TwoGpuBox, queued_run
    from sft_tui.core.runs.schema import now_iso
    from sft_tui.core.runs.store import RunStore
    from sft_tui.core.runs.sysmon import SystemSampler

    monkeypatch.setattr("sft_tui.core.runs.sysmon.SystemSampler", lambda *a, **k: SystemSampler(TwoGpuBox()))
    run = queued_run(RunStore(), "placed", 12, "ana", order=1)  # alive (this process), given GPU1 with a 12 GiB estimate
    run.write_placement(replace(run.read_placement(), admitted_at=now_iso(), gpus=(1,)))
    out = cli("gpu").out
    assert "room GiB" in out and f"GPU1: sft-tui runs {run.id} (12.0 GiB)" in out
    data = json.loads(cli("gpu", "--json").out)
    assert [(r["index"], r["free_gib"], r["runs"]) for r in data["room"]] == [(0, 14.0, []), (1, 12.0, [run.id])]


def test_errors_from_a_real_process_have_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nname = \n")
    proc = subprocess.run([sys.executable, "-m", "sft_tui.cli.main", "config", "check", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {bad}:2: invalid TOML") and proc.stderr.count("\n") == 1
    proc = subprocess.run([sys.executable, "-m", "sft_tui.cli.main", "config", "check"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr  # Typer's own usage errors


def test_tables_leave_out_the_least_needed_columns_to_fit_a_narrow_terminal():
    from sft_tui.cli.output import fit_columns

    headers = ["id", "state", "model", "started"]
    rows = [["20261124-031242-demo", "running", "tiny-demo-model", "2026-11-24 03:12"]]
    assert fit_columns(headers, rows, ("started", "model"), 80) == (headers, rows)  # fits: nothing dropped
    assert fit_columns(headers, rows, ("started", "model"), 50) == (["id", "state", "model"], [rows[0][:3]])
    assert fit_columns(headers, rows, ("started", "model"), 20) == (["id", "state"], [rows[0][:2]])  # as far as allowed
