"""Comparing runs: the numbers, eval results and config fields of 2-4 runs, read in one go (no Textual, no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sft_tui.core.config.tomlfile import TOMLDecodeError, tomllib
from sft_tui.core.runs.codec import SchemaError
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.schema import TrainSummary


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


def config_differences(runs: list[RunDir]) -> list[tuple[str, list[Any]]]:
    """(field, value per run) for every field whose values are not all equal."""
    configs = [flat_config(r) for r in runs]
    keys = sorted(set().union(*configs))
    return [(k, [c.get(k, "-") for c in configs]) for k in keys if len({repr(c.get(k, "-")) for c in configs}) > 1]


def final_numbers(run: RunDir) -> list[str]:
    """[final loss, best eval loss, steps, tokens/s] of one run, as table cells.

    summary.json when it describes the run; while a run trains, or after a resume has
    made its summary stale, the newest metrics rows instead (marked "live").
    """
    try:
        summary: TrainSummary | None = run.read_summary()
    except (SchemaError, OSError):
        summary = None
    if summary is not None and not summary.stale:
        return [_show(summary.final_loss), _show(summary.best_eval_loss), _show(summary.steps), _show(summary.tokens_per_s)]
    chunk = run.read_new_rows()
    train, evals = chunk.train, [r.eval_loss for r in chunk.evals if r.eval_loss is not None]
    last = train[-1] if train else None
    live = " (live)"
    return [_show(last.loss) + live if last else "-", _show(min(evals)) + live if evals else "-",
            _show(last.step) + live if last else "-", _show(last.tokens_per_s) + live if last and last.tokens_per_s else "-"]


@dataclass(frozen=True)
class Comparison:
    """Everything Compare shows: each run's loss curve and the table's rows."""

    series: tuple[tuple[str, tuple[float, ...], tuple[float, ...]], ...]  # (run id, steps, losses)
    rows: tuple[tuple[str, ...], ...]  # (label, one cell per run)


def compare_runs(runs: list[RunDir]) -> Comparison:
    """Read and compare the runs (metrics files can be long: call it off the UI thread)."""
    from sft_tui.core.evaluate.report import LABELS, format_metric, metric_order

    series = []
    for run in runs:
        train = [r for r in run.read_new_rows().train if r.loss is not None]
        series.append((run.id, tuple(float(r.step) for r in train), tuple(r.loss for r in train)))
    numbers = [final_numbers(run) for run in runs]
    rows = [(label, *[cells[index] for cells in numbers]) for index, label in enumerate(("final loss", "best eval loss", "steps", "tokens/s"))]
    reports = [run.read_eval_report() for run in runs]
    for key in dict.fromkeys(k for r in reports if r for k in metric_order(r)):  # one row per eval metric any run has
        cells = [f"{format_metric(key, r['base'].get(key))} -> {format_metric(key, r['tuned'].get(key))}"
                 if r and key in r.get("tuned", {}) else "-" for r in reports]
        rows.append((f"eval: {LABELS.get(key, key)}", *cells))
    rows += [(key, *[_show(v) for v in values]) for key, values in config_differences(runs)]
    return Comparison(tuple(series), tuple(rows))


def _show(value: Any) -> str:
    """A table cell: floats to four significant digits, None as '-'."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
