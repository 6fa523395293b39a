"""Mistakes and machine states a user can cause, each ending in one line that says what, where and what to do (exit 2, no traceback).

Non-UTF-8 data, a truncated weights file, a read-only or full folder under the CLI. The
real read-only / full-disk runs are in tests/trainer/test_faults.py; these cover every
command path without torch.
"""

from __future__ import annotations

import errno
import json
import struct
from pathlib import Path

import pytest

from sft_tui.core.data.formats import load_examples
from sft_tui.core.data.readers import iter_rows
from sft_tui.core.errors import UserError
from sft_tui.core.models.files import check_weight_files

GOOD = json.dumps({"instruction": "a", "output": "b"}).encode()


def test_a_non_utf8_jsonl_row_is_one_bad_row_with_its_byte_and_column(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_bytes(GOOD + b"\n" + b'{"instruction": "caf\xe9", "output": "b"}\n' + GOOD + b"\n")
    rows = list(iter_rows(data))
    assert [type(r).__name__ for _, r in rows] == ["dict", "RowError", "dict"]
    assert rows[1][1].reason == "not UTF-8 (byte 0xe9 at column 21)" and rows[1][0] == f"{data}:2"


def test_non_utf8_in_csv_and_json_files_is_located_too(tmp_path):
    table = tmp_path / "d.csv"
    table.write_bytes(b"instruction,output\na,b\nc,\xff\xfe\n")
    rows = list(iter_rows(table))
    assert rows[1][1].reason == "not UTF-8 (byte 0xff in column 'output')" and rows[1][0] == f"{table}:3"
    array = tmp_path / "d.json"
    array.write_bytes(b'[\n' + GOOD + b',\n {"instruction": "\xff"}\n]')
    with pytest.raises(UserError) as caught:
        list(iter_rows(array))
    assert caught.value.line().startswith(f"{array}:3: not UTF-8 (byte 0xff at column 19)")  # the line starts with a space


def test_a_binary_file_given_as_data_is_refused_in_one_line(tmp_path, cli, runs_home):
    binary = tmp_path / "picture.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a PNG saved under the wrong name
    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nname = "smollm2-135m"\n[data]\ntrain = "{binary}"\n')
    result = cli("train", str(config))
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.splitlines()[-1].startswith(f"error: {binary}:1: not UTF-8 (byte 0x89 at column 1)")


def test_train_stops_at_a_non_utf8_row_and_data_inspect_lists_it(tmp_path, cli, runs_home):
    data = tmp_path / "d.jsonl"
    data.write_bytes(GOOD + b"\n" + b'{"instruction": "\xff", "output": "b"}\n' + GOOD + b"\n")
    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nname = "smollm2-135m"\n[data]\ntrain = "{data}"\n')
    result = cli("train", str(config))
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.splitlines()[-1].startswith(f"error: {data}:2: not UTF-8 (byte 0xff at column 18)")
    inspected = cli("data", "inspect", str(data), "--json")
    assert inspected.code == 0
    report = json.loads(inspected.out)
    assert report["invalid"] == 1 and report["invalid_rows"] == [f"{data}:2: not UTF-8 (byte 0xff at column 18)"]
    with pytest.raises(UserError, match="not UTF-8"):
        load_examples(data)


def _safetensors(path: Path, data_bytes: int, cut: int = 0) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [data_bytes // 4], "data_offsets": [0, data_bytes]}}).encode()
    blob = struct.pack("<Q", len(header)) + header + b"\0" * data_bytes
    path.write_bytes(blob[: len(blob) - cut])
    return path


def test_every_weights_header_is_opened_and_a_truncated_file_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    _safetensors(folder / "model-00001-of-00002.safetensors", 4096)
    _safetensors(folder / "model-00002-of-00002.safetensors", 4096)
    assert check_weight_files(folder) == 2
    cut = _safetensors(folder / "model-00002-of-00002.safetensors", 4096, cut=1000)
    with pytest.raises(UserError) as caught:
        check_weight_files(folder)
    assert caught.value.where == str(cut) and "truncated weights file: " in caught.value.what and "download" in caught.value.fix
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00003-of-00003.safetensors"}}))
    with pytest.raises(UserError, match="weight shard"):
        check_weight_files(folder)


def test_train_refuses_a_truncated_safetensors_before_the_run(tmp_path, cli, runs_home):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(dict(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                        num_key_value_heads=2, intermediate_size=128, vocab_size=500)))
    (folder / "tokenizer.json").write_text("{}")
    _safetensors(folder / "model.safetensors", 4096, cut=10)
    data = tmp_path / "d.jsonl"
    data.write_bytes(GOOD + b"\n")
    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nname = "{folder}"\n[data]\ntrain = "{data}"\n')
    result = cli("train", str(config))
    assert result.code == 2 and "Traceback" not in result.err  # progress lines, then the one error line
    assert result.err.splitlines()[-1].startswith(f"error: {folder / 'model.safetensors'}: truncated weights file")
    from sft_tui.core.runs.store import RunStore

    assert RunStore().run_dirs() == []


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only file system"), (errno.ENOSPC, "no space left on the device"),
                                         (errno.EACCES, "permission denied")])
def test_disk_and_permission_errors_anywhere_in_a_command_end_in_one_line(cli, runs_home, monkeypatch, code, words):
    from sft_tui.core.runs import store

    where = str(runs_home / "runs" / "x")

    def fail(*_args, **_kwargs):
        raise OSError(code, "from the kernel", where)

    monkeypatch.setattr(store.RunStore, "list_runs", fail)
    result = cli("runs")
    assert result.code == 2 and result.err.count("\n") == 1 and "Traceback" not in result.err
    assert result.err.startswith(f"error: {where}: {words}")


def test_a_read_only_home_is_refused_before_anything_else(cli, tmp_path, monkeypatch):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into 0555 folders; tests/trainer/test_faults.py covers a read-only mount")
    home = tmp_path / "home"
    (home / "runs").mkdir(parents=True)
    home.joinpath("runs").chmod(0o555)
    monkeypatch.setenv("SFT_TUI_HOME", str(home))
    config = tmp_path / "run.toml"
    config.write_text('[model]\nname = "smollm2-135m"\n[data]\ntrain = "d.jsonl"\n')
    result = cli("train", str(config))
    assert result.code == 2 and result.err.startswith(f"error: {home}: cannot write where runs live: permission denied")
