"""Comparing runs: the loss curves, final numbers, eval results and differing config fields of 2-4 runs (no Textual, no torch).

`RunComparer` keeps one `RunWatcher` per run, so comparing again while a run trains reads
only the rows appended since the previous read. The cells it returns hold full values;
`fit_widths`, `shorten_middle` and `shorten_apart` are how a narrow screen cuts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from sft_tui.core.config.tomlfile import TOMLDecodeError, tomllib
from sft_tui.core.runs.codec import SchemaError
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import ACTIVE_STATES, TrainRow, TrainSummary
from sft_tui.core.runs.watch import RunSnapshot, RunWatcher

NUMBER_LABELS = ("state", "steps", "final loss", "best eval loss", "tokens/s", "time")
ELLIPSIS = "…"


def flat_config(run: RunDir) -> dict[str, Any]:
    """section.key -> value from a run's config.toml ({} when unreadable)."""
    try:
        data = tomllib.loads(run.read_config_text())
    except (OSError, TOMLDecodeError, UnicodeDecodeError):
        return {}
    out = {}
    for section, table in data.items():
        if isinstance(table, dict):
            out.update({f"{section}.{key}": value for key, value in table.items()})
        else:
            out[section] = table
    return out


def split_config(runs: Sequence[RunDir]) -> tuple[list[tuple[str, list[Any]]], list[str]]:
    """([(field, value per run)] for the fields whose values differ, [fields equal in every run])."""
    configs = [flat_config(r) for r in runs]
    keys = sorted(set().union(*configs))
    differ = [(k, [c.get(k, "-") for c in configs]) for k in keys if len({repr(c.get(k, "-")) for c in configs}) > 1]
    equal = [k for k in keys if len({repr(c.get(k, "-")) for c in configs}) == 1]
    return differ, equal


@dataclass(frozen=True)
class RunNumbers:
    """How one run ended (or stands): from summary.json when it describes the run, else from its newest rows."""

    state: str  # effective: running, completed, crashed, ...
    step: int
    max_steps: int
    final_loss: float | None
    best_eval_loss: float | None
    tokens_per_s: float | None
    wall_s: float | None
    from_summary: bool

    @property
    def active(self) -> bool:
        """Still queued or training: its numbers will move on."""
        return self.state in ACTIVE_STATES

    def cells(self) -> list[str]:
        """One table cell per NUMBER_LABELS entry."""
        steps = f"{self.step}/{self.max_steps}" if self.max_steps else _show(self.step)
        return [self.state, steps, _show(self.final_loss), _show(self.best_eval_loss),
                f"{self.tokens_per_s:,.0f}" if self.tokens_per_s else "-", format_duration(self.wall_s)]


def read_summary_quietly(run: RunDir) -> TrainSummary | None:
    """summary.json, or None when the run has none or it cannot be read (the newest rows stand in)."""
    try:
        return run.read_summary()
    except (SchemaError, OSError):
        return None


def format_duration(seconds: float | None) -> str:
    """Training time in words a table cell can hold: `45s`, `12m 30s`, `2h 05m` ('-' when unknown); never a clock-like 12:30."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def numbers_from_snapshot(snapshot: RunSnapshot, summary: TrainSummary | None) -> RunNumbers:
    """The final numbers of one watched run: its summary unless a resume has made that stale, else its newest rows."""
    status = snapshot.status
    if summary is not None and not summary.stale:
        return RunNumbers(snapshot.state, summary.steps, summary.max_steps, summary.final_loss, summary.best_eval_loss,
                          summary.tokens_per_s, summary.wall_time_s, True)
    last: TrainRow | None = next((r for r in reversed(snapshot.train) if r.loss is not None), None)
    evals = [r.eval_loss for r in snapshot.evals if r.eval_loss is not None]
    step = max(status.step if status else 0, last.step if last else 0)
    return RunNumbers(snapshot.state, step, status.max_steps if status else 0, last.loss if last else None,
                      min(evals) if evals else None, last.tokens_per_s if last else None, last.wall_s if last else None, False)


def final_numbers(run: RunDir) -> list[str]:
    """[final loss, best eval loss, steps, tokens/s] of one run read once, marked " (live)" when they come from its newest rows."""
    numbers = numbers_from_snapshot(RunWatcher(run, log_lines=1).poll(), read_summary_quietly(run))
    live = "" if numbers.from_summary else " (live)"
    cells = [_show(numbers.final_loss), _show(numbers.best_eval_loss), _show(numbers.step) if numbers.step else "-",
             _show(numbers.tokens_per_s)]
    return [c if c == "-" else c + live for c in cells]


@dataclass(frozen=True)
class Comparison:
    """Everything Compare shows, full values (the screen shortens them to its width)."""

    series: tuple[tuple[str, tuple[float, ...], tuple[float, ...]], ...]  # (run id, steps, losses)
    rows: tuple[tuple[str, ...], ...]  # (label, one cell per run): numbers, eval results, then differing config fields
    numbers: tuple[RunNumbers, ...]
    equal_fields: tuple[str, ...]  # config fields with the same value in every run
    config_start: int  # index in rows of the first config field

    @property
    def active(self) -> bool:
        """A compared run is still queued or training: worth reading again."""
        return any(n.active for n in self.numbers)


class RunComparer:
    """Compares the same runs again and again, reading only what each run appended in between."""

    def __init__(self, runs: Sequence[RunDir]):
        self.runs = list(runs)
        self._watchers = [RunWatcher(run, log_lines=1) for run in self.runs]
        self._series: list[tuple[tuple[TrainRow, ...], tuple[str, tuple[float, ...], tuple[float, ...]]] | None] = [None] * len(self.runs)

    def compare(self, now: datetime | None = None) -> Comparison:
        """Read and compare the runs (the first read of a long metrics file takes a while: call it off the UI thread)."""
        from sft_tui.core.evaluate.report import LABELS, format_metric, metric_order

        snapshots = [watcher.poll(now) for watcher in self._watchers]
        series = tuple(self._curve(index, snap) for index, snap in enumerate(snapshots))
        numbers = tuple(numbers_from_snapshot(s, read_summary_quietly(run)) for s, run in zip(snapshots, self.runs))
        rows = [(label, *[n.cells()[index] for n in numbers]) for index, label in enumerate(NUMBER_LABELS)]
        reports = [run.read_eval_report() for run in self.runs]
        for key in dict.fromkeys(k for r in reports if r for k in metric_order(r)):  # one row per eval metric any run has
            cells = [f"{format_metric(key, r['base'].get(key))} -> {format_metric(key, r['tuned'].get(key))}"
                     if r and key in r.get("tuned", {}) else "-" for r in reports]
            rows.append((f"eval: {LABELS.get(key, key)}", *cells))
        differ, equal = split_config(self.runs)
        config_start = len(rows)
        rows += [(key, *[_show(v) for v in values]) for key, values in differ]
        return Comparison(series, tuple(rows), numbers, tuple(equal), config_start)

    def _curve(self, index: int, snapshot: RunSnapshot) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
        """(run id, steps, losses), the same tuple as last time when no row arrived (the chart redraws only on change)."""
        cached = self._series[index]
        if cached is not None and cached[0] is snapshot.train:
            return cached[1]
        train = [r for r in snapshot.train if r.loss is not None]
        curve = (snapshot.run_id, tuple(float(r.step) for r in train), tuple(float(r.loss) for r in train))  # type: ignore[arg-type]
        self._series[index] = (snapshot.train, curve)
        return curve


def compare_runs(runs: list[RunDir]) -> Comparison:
    """Read and compare the runs once (metrics files can be long: call it off the UI thread)."""
    return RunComparer(runs).compare()


def short_run_names(run_ids: Sequence[str]) -> list[str]:
    """The name part of `YYYYMMDD-HHMMSS-name` ids; with its time where two names are the same, the whole id where that is too."""
    parts = [run_id.split("-", 2) for run_id in run_ids]
    names = [p[2] if len(p) == 3 and p[0].isdigit() and p[1].isdigit() else run_id for p, run_id in zip(parts, run_ids)]
    timed = [f"{name} {p[1][:2]}:{p[1][2:4]}" if names.count(name) > 1 and len(p) == 3 else name for name, p in zip(names, parts)]
    return [run_id if timed.count(name) > 1 else name for name, run_id in zip(timed, run_ids)]


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut in the middle; paths keep their first folder and file name (`/data/…/train.jsonl`)."""
    if len(text) <= width:
        return text
    if "/" in text.strip("/"):
        head, _, tail = text.rpartition("/")
        first = head[: head.find("/", 1) + 1] if head.find("/", 1) > 0 else ""
        for candidate in (f"{first}{ELLIPSIS}/{tail}", f"{ELLIPSIS}/{tail}"):
            if len(candidate) <= width:
                return candidate
    return _cut_middle(text, width)


def shorten_field(name: str, width: int) -> str:
    """A config field's name in `width` characters: the key counts more than its section (`…learning_rate`)."""
    if len(name) > width and "." in name:
        key = ELLIPSIS + name.rsplit(".", 1)[1]
        if len(key) <= width:
            return key
    return shorten_middle(name, width)


def shorten_apart(values: Sequence[str], widths: Sequence[int] | int) -> list[str]:
    """Each value in at most its width (one for all, or one per value), cut so that values which differ still look different.

    Two long paths that differ in the middle would both shorten to `/data/…/train.jsonl`:
    then the start and end they share give way, and the part that differs stays
    (`/data/…/2026-11/cleaned/train.jsonl`, `…/2026-10/raw/…`), in the same style for every value.
    """
    room = [widths] * len(values) if isinstance(widths, int) else list(widths)
    short = [shorten_middle(v, w) for v, w in zip(values, room)]
    if len(set(short)) == len(set(values)) or len(values) < 2:
        return short
    start, end = _shared_ends(values)
    head, tail = values[0][:start], values[0][len(values[0]) - end :] if end else ""
    cores = [v[start : len(v) - end] for v in values]
    lead = (ELLIPSIS + "/" if head.endswith("/") else ELLIPSIS) if head else ""
    trail = ("/" + ELLIPSIS if tail.startswith("/") else ELLIPSIS) if tail else ""
    first = head[: head.find("/", 1) + 1] if head.find("/", 1) > 0 else ""
    styles = ([f"{first}{lead}{{}}{tail}"] if first and first != head else []) + [f"{lead}{{}}{tail}", f"{lead}{{}}{trail}"]
    for style in styles:
        if all(len(style.format(core)) <= w for core, w in zip(cores, room)):
            return [style.format(core) for core in cores]
    return [_cut_middle(f"{lead}{_cut_middle(core, max(1, w - len(lead) - len(trail)))}{trail}", w) for core, w in zip(cores, room)]


def _shared_ends(values: Sequence[str]) -> tuple[int, int]:
    """(length of the start, length of the end) every value shares, moved to a '/' so a path keeps whole folder names."""
    shortest = min(len(v) for v in values)
    start = 0
    while start < shortest and len({v[start] for v in values}) == 1:
        start += 1
    end = 0
    while end < shortest - start and len({v[len(v) - 1 - end] for v in values}) == 1:
        end += 1
    sample = values[0]
    cut = sample.rfind("/", 0, start)
    start = cut + 1 if cut >= 0 else start
    cut = sample.find("/", len(sample) - end) if end else -1
    end = len(sample) - cut if cut >= 0 else end
    return start, end


def _cut_middle(text: str, width: int) -> str:
    """The first and last characters of `text` around an ellipsis, `width` in all."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    keep = width - 1
    return text[: (keep + 1) // 2] + ELLIPSIS + (text[len(text) - keep // 2 :] if keep // 2 else "")


def fit_widths(natural: Sequence[int], total: int, least: int = 4) -> list[int]:
    """Column widths that fit in `total`: a column keeps its natural width when it can, the widest give way first."""
    if sum(natural) <= total:
        return list(natural)
    cap = max(least, total // max(1, len(natural)))
    while cap > least and sum(min(n, cap) for n in natural) > total:
        cap -= 1
    while sum(min(n, cap + 1) for n in natural) <= total:  # hand out what the narrow columns left over
        cap += 1
    return [max(least, min(n, cap)) for n in natural]


def _show(value: Any) -> str:
    """A table cell: floats to four significant digits, None as '-'."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
