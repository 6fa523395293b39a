"""Compare 2-4 runs: loss curves overlaid, the config fields that differ, and final metrics."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from sft_tui.core.runs import RunDir, read_new_metrics
from sft_tui.core.tomlfile import TOMLDecodeError, tomllib
from sft_tui.tui.poller import downsample, smooth


def flat_config(run: RunDir) -> dict[str, Any]:
    """section.key -> value from a run's config.toml ({} when unreadable)."""
    try:
        data = tomllib.loads(run.config_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, TOMLDecodeError):
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


class CompareScreen(Screen):
    """Two to four runs side by side."""

    BINDINGS = [Binding("escape", "back", "Back"), Binding("q", "app.quit", "Quit")]

    def __init__(self, runs: list[RunDir]) -> None:
        super().__init__()
        self.runs = runs
        self.series: dict[str, tuple[list[float], list[float]]] = {}

    def compose(self) -> ComposeResult:
        yield Static(f"sft-tui · comparing {len(self.runs)} runs (smoothed loss)", id="title")
        yield PlotextPlot(id="compare-chart")
        yield DataTable(id="diff", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        plt = self.query_one(PlotextPlot).plt
        plt.title("loss")
        plt.xlabel("step")
        for run in self.runs:
            rows = [r for r in read_new_metrics(run.metrics_path).rows if isinstance(r.get("loss"), (int, float))]
            xs, ys = [float(r["step"]) for r in rows], smooth([float(r["loss"]) for r in rows]) if rows else []
            xs, ys = downsample(xs, ys)
            self.series[run.id] = (xs, ys)
            if xs:
                plt.plot(xs, ys, label=run.id[-24:], marker="braille")
        table = self.query_one("#diff", DataTable)
        table.add_column("field")
        for run in self.runs:
            table.add_column(run.id[-24:])
        summaries = [run.read_summary() or {} for run in self.runs]
        for label, key in (("final loss", "final_loss"), ("best eval loss", "best_eval_loss"), ("steps", "steps"), ("tokens/s", "tokens_per_s")):
            table.add_row(label, *[_show(s.get(key)) for s in summaries])
        self._eval_rows(table)
        for key, values in config_differences(self.runs):
            table.add_row(key, *[_show(v) for v in values])

    def _eval_rows(self, table: DataTable) -> None:
        """One row per eval metric any compared run has: 'base -> tuned' for each run."""
        from sft_tui.core.eval_report import LABELS, format_metric, metric_order

        reports = [run.read_eval_report() for run in self.runs]
        keys = list(dict.fromkeys(k for r in reports if r for k in metric_order(r)))
        for key in keys:
            cells = []
            for report in reports:
                if not report or key not in report.get("tuned", {}):
                    cells.append("-")
                    continue
                cells.append(f"{format_metric(key, report['base'].get(key))} -> {format_metric(key, report['tuned'].get(key))}")
            table.add_row(f"eval: {LABELS.get(key, key)}", *cells)

    def action_back(self) -> None:
        """Back to the runs."""
        self.app.pop_screen()


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
