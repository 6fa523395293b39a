"""A non-editable install carries presets/ and assets/; README and .ci/run agree."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```\s*<!-- /{marker} -->", text, re.S)
    assert match, f"README.md has no {marker} block"
    lines = [line for line in match.group(1).splitlines() if line.strip()]
    assert len(lines) == 1, f"the {marker} must be one command a user can copy"
    return lines[0]


def test_ci_runs_exactly_the_readme_test_command():
    command = _readme_block("test-command")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_readme_demo_command_installs_and_runs_sft_tui():
    command = _readme_block("demo-command")
    assert "pip install" in command and "sft-tui" in command.split("&&")[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling", reason="hatchling comes with the test extras")
    out = tmp_path_factory.mktemp("wheel")
    # copy the sources so the build never writes into the checkout
    src = out / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "sft-runs", "__pycache__", "*.egg-info", "build", "dist"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
                   check=True, capture_output=True)
    return next(out.glob("sft_tui-*.whl"))


def test_wheel_ships_presets_and_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_models = {n for n in names if n.startswith("sft_tui/presets/models/")}
    assert len(shipped_models) == len(list((ROOT / "presets" / "models").glob("*.toml")))
    assert {"sft_tui/presets/recipes/lora.toml", "sft_tui/presets/recipes/qlora.toml", "sft_tui/presets/recipes/full.toml"} <= names
    assert "sft_tui/assets/examples/run.toml" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_installed_wheel_finds_presets_away_from_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = (
        "import sft_tui; from sft_tui.core.models import presets, modelspec\n"
        "print(sft_tui.__file__); print(presets.presets_dir()); print(presets.assets_dir())\n"
        "print(len(presets.list_model_presets()), modelspec.resolve_model('llama3.1-8b').count_parameters().total)\n"
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    # PYTHONPATH puts the installed copy ahead of the editable checkout on sys.path
    proc = subprocess.run([sys.executable, "-c", probe], cwd=workdir, capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    module_file, presets_dir, assets_dir, counts = proc.stdout.strip().splitlines()
    for path in (module_file, presets_dir, assets_dir):
        assert path.startswith(str(target)), path
    assert counts == f"{len(list((ROOT / 'presets' / 'models').glob('*.toml')))} 8030261248"
