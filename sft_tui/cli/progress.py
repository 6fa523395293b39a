"""A progress line on stderr for long data work, only when a person is watching a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_reporter() -> Iterator[Callable[[str, int], None] | None]:
    """Yields a `report(stage, rows_done)` callback drawing a rich progress line, or None when stderr is not a TTY."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    tasks: dict[str, int] = {}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        def report(stage: str, done: int) -> None:
            if stage not in tasks:
                for other in tasks.values():
                    bar.update(other, visible=False)
                tasks[stage] = bar.add_task(stage, total=None)
            bar.update(tasks[stage], completed=done)

        yield report
