"""Shared fixtures: an isolated runs home and an in-process CLI runner."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# One torch thread per process in tests (and the trainers and jobs they start inherit it).
# Measured on the 2-core CI machine, 300 demo steps: 15 s with torch's 2 threads and 19 s
# with one when idle, but 310 s against 23 s with two busy processes beside them: OpenMP's
# spinning threads collapse on a loaded box, and the suite must pass on one.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def runs_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$SFT_TUI_HOME pointing at an empty temp folder (for every test: none may write runs into the checkout)."""
    home = tmp_path / "home"
    monkeypatch.setenv("SFT_TUI_HOME", str(home))
    return home


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `sft-tui ARGS` in-process through the real entry point; returns code, stdout, stderr."""
    from sft_tui.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
