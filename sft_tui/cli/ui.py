"""Opening the terminal UI from a command (home, a run's monitor, or a chat)."""

from __future__ import annotations

import sys

from sft_tui.core.errors import UserError


def run_tui(open_run: str | None = None, chat_run: str | None = None) -> None:
    """Open the terminal UI; a non-terminal gets one clear line instead."""
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise UserError("the terminal UI needs an interactive terminal", fix="use `sft-tui runs` or `sft-tui watch RUN --plain` in scripts")
    from sft_tui.tui.app import make_app

    make_app(open_run=open_run, chat_run=chat_run).run()
