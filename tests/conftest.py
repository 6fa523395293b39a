"""Shared fixtures: an isolated runs home and an in-process CLI runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


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
