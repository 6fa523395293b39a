"""The run-directory contract: typed records round-trip, read tolerantly, match the README, and only core/runs knows file names."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from sft_tui.core.runs import schema
from sft_tui.core.runs.codec import SchemaError

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ["JobStatus", "JobError", "TrainRow", "EvalRow", "EventRow", "SystemRow", "TrainSummary", "JobRequest", "CheckpointProgress", "Placement"]


def readme_shapes() -> dict[str, dict]:
    """Every `<!-- shape: Name -->` JSON block of the README's "Where runs live" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Where runs live"):text.index("## Using a real model")]
    return {m.group(1): json.loads(m.group(2)) for m in re.finditer(r"<!-- shape: (\w+) -->\n```json\n(.*?)\n```", section, re.S)}


def test_the_readme_shows_every_shape_with_exactly_its_fields():
    shown = readme_shapes()
    assert sorted(shown) == sorted(SHAPES)
    for name, example in shown.items():
        cls = getattr(schema, name)
        assert list(example) == [f.name for f in fields(cls) if f.name != "extra"], name
        record = cls.from_json(example, f"README {name}")  # the example is valid, value by value
        assert record.to_json() == example


@pytest.mark.parametrize("name", SHAPES)
def test_unknown_keys_are_kept_and_written_back(name):
    example = readme_shapes()[name]
    cls = getattr(schema, name)
    newer = {**example, "written_by_a_newer_version": {"x": 1}}
    record = cls.from_json(newer, "f.json")
    assert record.extra == {"written_by_a_newer_version": {"x": 1}} and record.to_json() == newer


@pytest.mark.parametrize("name, field, value, message", [
    ("JobStatus", "updated_at", "yesterday", "f.json: field 'updated_at': not an ISO-8601 time: 'yesterday'"),
    ("JobStatus", "state", "runing", "f.json: field 'state': unknown state 'runing' (one of queued, running, completed, failed, stopped)"),
    ("JobStatus", "pid", True, "f.json: field 'pid': expected a whole number, got True"),
    ("JobStatus", "error", {"kind": "oom"}, "f.json: field 'error': field 'message': missing"),
    ("TrainRow", "loss", "low", "f.json: field 'loss': expected a number, got 'low'"),
    ("TrainSummary", "stale", "no", "f.json: field 'stale': expected true or false, got 'no'"),
    ("JobRequest", "kind", "train", "f.json: field 'kind': unknown job kind 'train'"),
])
def test_a_bad_field_names_the_file_and_the_field(name, field, value, message):
    example = {**readme_shapes()[name], field: value}
    with pytest.raises(SchemaError) as caught:
        getattr(schema, name).from_json(example, "f.json")
    assert str(caught.value) == message


def test_rows_from_before_the_format_had_kinds_are_still_read():
    assert isinstance(schema.row_from_json({"step": 3, "loss": 1.5, "learning_rate": 1e-4}, "m"), schema.TrainRow)
    assert isinstance(schema.row_from_json({"step": 3, "eval_loss": 1.5}, "m"), schema.EvalRow)
    old_status = {"state": "completed", "pid": 1, "started_at": "2026-11-22T03:30:00+00:00", "updated_at": "2026-11-22T03:30:00+00:00",
                  "step": 3, "max_steps": 3, "error": None, "eta_s": None}
    assert schema.JobStatus.from_json(old_status).kind == "train"


# Every name a run directory uses: files, and the folders joined onto a run path.
RUN_FILE_NAMES = {"status.json", "metrics.jsonl", "summary.json", "train.log", "job.log", "request.json", "report.json", "report.md",
                  "decision.md", ".stop_requested", "sft_tui_progress.json", ".disk_reserve", "config.toml", "README.md", "events.log",
                  "accelerate.json", "slurm.sbatch"}
RUN_FOLDER_NAMES = {"checkpoints", "adapter", "model", "eval", "merged", "jobs", "runs"}


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    shown = path.relative_to(ROOT) if ROOT in path.parents else path.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in RUN_FILE_NAMES or any(node.value.endswith("/" + name) for name in RUN_FILE_NAMES):
                found.append(f"{shown}:{node.lineno}: {node.value!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                and node.right.value in RUN_FOLDER_NAMES:
            found.append(f"{shown}:{node.lineno}: / {node.right.value!r}")
    return found


def test_no_module_outside_the_run_dir_package_names_a_run_file():
    runs_package = ROOT / "sft_tui" / "core" / "runs"
    offences = [o for path in sorted((ROOT / "sft_tui").rglob("*.py")) if runs_package not in path.parents for o in _offences(path)]
    assert offences == [], "ask a RunDir for the path instead:\n" + "\n".join(offences)


def test_the_grep_would_catch_a_run_file_opened_by_name(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text('import json\ndef f(run):\n    return json.loads((run.path / "summary.json").read_text()), run.path / "jobs"\n')
    assert len(_offences(sneaky)) == 2
