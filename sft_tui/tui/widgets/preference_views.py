"""What the monitor shows of a preference run (DPO, ORPO, KTO): its own metrics, charted and in numbers.

TRL logs them under its own names and the trainer keeps them in each row's
objective_metrics: DPO and ORPO "rewards/chosen", "rewards/rejected", "rewards/margins",
"rewards/accuracies" (the share of pairs whose chosen answer scored above the rejected one:
the number people watch); KTO "kl" (its reference baseline), "rewards/chosen" and
"rewards/rejected" for the answers marked good and bad, and "rewards/margins". Pure
functions from a snapshot to ChartViews and lines, so what is shown is tested without a
terminal. An SFT run has none of this and looks as it always did.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import tomllib

from sft_tui.core.runs.schema import EvalRow, TrainRow
from sft_tui.core.runs.watch import RunSnapshot
from sft_tui.tui.widgets.series import downsample, smooth
from sft_tui.tui.widgets.series_chart import ChartView, Series

LOSS_LABELS = {"dpo": "DPO loss", "orpo": "ORPO loss", "kto": "KTO loss"}
PAIRED = ("dpo", "orpo")  # objectives trained on pairs: they log a preference accuracy
SIDE_WIDTH = 26  # characters a numbers line has in the side panel at 80 columns


def objective_of(config_text: str) -> str:
    """`[method] objective` of a run's config.toml, lower case; "sft" when it is missing or the file cannot be read."""
    try:
        method = tomllib.loads(config_text).get("method")
    except tomllib.TOMLDecodeError:
        return "sft"
    objective = method.get("objective") if isinstance(method, dict) else None
    return objective.lower() if isinstance(objective, str) and objective else "sft"


def loss_label(config_text: str) -> str:
    """What the run's loss is: "loss" (SFT), "DPO loss", or "DPO+SFT loss" when method.sft_weight adds an SFT term."""
    objective = objective_of(config_text)
    label = LOSS_LABELS.get(objective, "loss")
    try:
        method = tomllib.loads(config_text).get("method")
    except tomllib.TOMLDecodeError:
        return label
    weight = method.get("sft_weight") if isinstance(method, dict) else None
    return "DPO+SFT loss" if objective == "dpo" and isinstance(weight, (int, float)) and weight > 0 else label


def preference_family(objective: str, snapshot: RunSnapshot) -> str:
    """"paired" (DPO, ORPO), "kto", or "" (SFT). From the config's objective, else from the metrics the rows carry
    (a config that could not be read must not hide what the run logged)."""
    if objective in PAIRED:
        return "paired"
    if objective == "kto":
        return "kto"
    names = {name for row in (*snapshot.train, *snapshot.evals) for name in row.objective_metrics}
    if "rewards/accuracies" in names:
        return "paired"
    return "kto" if "kl" in names else ""


def latest(rows: Sequence[TrainRow | EvalRow], name: str) -> float | None:
    """The newest finite value of one metric (KTO logs a reward only when its batches held answers of that label)."""
    for row in reversed(rows):
        value = row.objective_metrics.get(name)
        if value is not None and math.isfinite(value):
            return value
    return None


def _series(rows: Sequence[TrainRow | EvalRow], name: str, label: str, marker: str, scale: float = 1.0,
            points_only: bool = False, smoothed: bool = False) -> Series:
    kept = [(float(r.step), r.objective_metrics[name] * scale) for r in rows
            if r.objective_metrics.get(name) is not None and math.isfinite(r.objective_metrics[name])]
    ys = [y for _, y in kept]
    if smoothed and len(ys) > 2:  # one logging step's accuracy is a handful of pairs: 0.625, 1.0, 0.75 ... the trend is the news
        ys = smooth(ys)
    xs, ys = downsample([x for x, _ in kept], ys)
    return Series(label, tuple(xs), tuple(ys), marker, points_only)


def preference_views(snapshot: RunSnapshot, objective: str, smoothed: bool = True) -> tuple[ChartView, ...]:
    """The objective's charts, in the order `c` reaches them after the loss; none for an SFT run.

    DPO/ORPO: preference accuracy (train line, eval points, 0-100 %), then chosen and rejected
    rewards with their margin. KTO: the KL baseline (train, eval), then good and bad answers' rewards with the margin.
    Train lines are smoothed as the loss is (`m` on the monitor), eval points never.
    """
    family = preference_family(objective, snapshot)
    if not family:
        return ()
    train, evals = snapshot.train, snapshot.evals
    name = LOSS_LABELS.get(objective, "preference").split()[0]
    empty = "no steps logged yet"
    note = " (smoothed)" if smoothed else ""

    def line(name: str, label: str, marker: str, scale: float = 1.0) -> Series:
        return _series(train, name, label, marker, scale, smoothed=smoothed)
    views = []
    if family == "paired":
        views.append(ChartView("accuracy", f"preference accuracy{note}: chosen > rejected", "step", "%",
                               (line("rewards/accuracies", "train", "braille", 100.0),
                                _series(evals, "rewards/accuracies", "eval", "dot", 100.0, points_only=True)),
                               empty, y_from_zero=True, y_max=100.0))
        good, bad = "chosen", "rejected"
    else:
        views.append(ChartView("kl", f"KL to the reference{note}", "step", "KL",
                               (line("kl", "train", "braille"), _series(evals, "kl", "eval", "dot", points_only=True)),
                               empty, y_from_zero=True))
        good, bad = "good answers", "bad answers"
    views.append(ChartView("rewards", f"{name} rewards{note}: {good.split()[0]}, {bad.split()[0]}, margin", "step", "reward",
                           (line("rewards/chosen", good, "braille"), line("rewards/rejected", bad, "dot"),
                            line("rewards/margins", "margin", "x")),
                           empty))
    return tuple(views)


def fit(*variants: Sequence[str], width: int = SIDE_WIDTH) -> str:
    """The first variant's parts that fit the side panel, joined by two spaces or else by one; the last variant
    (the most compact) when none fits (the panel's ellipsis then cuts it)."""
    for parts in variants:
        for joiner in ("  ", " "):
            line = joiner.join(parts)
            if len(line) <= width:
                return line
    return " ".join(variants[-1])


def signed(value: float, digits: int = 3) -> str:
    """A reward or margin: its sign always shown (a margin going positive is the news), fewer decimals when large."""
    return f"{value:+.{digits}f}" if abs(value) < 10 else f"{value:+.1f}"


def _with_eval(label: str, train: float | None, held: float | None, formats: Sequence[Callable[[float], str]], width: int) -> str:
    """`label train  eval held`, in the first of `formats` that fits."""
    def parts(fmt: Callable[[float], str]) -> list[str]:
        return [f"{label} {fmt(train) if train is not None else '-'}"] + ([f"eval {fmt(held)}"] if held is not None else [])
    return fit(*(parts(fmt) for fmt in formats), width=width)


def preference_lines(snapshot: RunSnapshot, objective: str, width: int = SIDE_WIDTH) -> list[str]:
    """The objective's newest numbers for the side panel (eval beside train once an eval ran); [] for an SFT run.

    DPO/ORPO: accuracy, margin, chosen/rejected rewards. KTO: KL, margin, good/bad answers' rewards.
    """
    family = preference_family(objective, snapshot)
    if not family:
        return []
    train, evals = snapshot.train, snapshot.evals
    lines = []
    if family == "paired":
        lines.append(_with_eval("acc", latest(train, "rewards/accuracies"), latest(evals, "rewards/accuracies"), (lambda v: f"{v:.0%}",), width))
    else:
        lines.append(_with_eval("kl", latest(train, "kl"), latest(evals, "kl"), (lambda v: f"{v:.3f}", lambda v: f"{v:.2f}"), width))
    lines.append(_with_eval("margin", latest(train, "rewards/margins"), latest(evals, "rewards/margins"),
                            (signed, lambda v: signed(v, 2)), width))
    good, bad = ("chosen", "rej") if family == "paired" else ("good", "bad")
    chosen, rejected = latest(train, "rewards/chosen"), latest(train, "rewards/rejected")
    rewards = [[f"{name} {fmt(value) if value is not None else '-'}" for name, value in ((good, chosen), (bad, rejected))]
               for fmt in (signed, lambda v: signed(v, 2))]
    lines.append(fit(*rewards, width=width))
    return lines
