"""Preference measures for `sft-tui eval`: pure functions over answer log-likelihoods, no model.

Every measure reads the summed log-probability of an answer's tokens given its prompt
(the run's chat template, the answer's end-of-turn token included): the quantity DPO and
KTO themselves optimise, so what eval reports is what the run was pushed on.

Pairs (DPO, ORPO, or any held-out prompt/chosen/rejected rows):
  preference_accuracy  share of pairs where the model gives the chosen answer the higher
                       likelihood, for the base and for the tuned model;
  preference_margin    mean log p(chosen) - log p(rejected), in nats;
  moved_toward_chosen  share of pairs whose margin grew from base to tuned: DPO's reward
                       accuracy on held-out pairs (beta only scales the reward, so it drops out).
Summed log-probabilities favour short answers, for both models alike: the base column is
the yardstick, not 50%.

Labelled answers (KTO; held-out rows carry no pairs): each answer is compared with itself
under the base, which cancels its length and its prompt's difficulty.
  desirable_loss / undesirable_loss  mean loss per token on each kind (lower = more likely);
  separation  share of (desirable, undesirable) combinations where the desirable answer's
              log-likelihood rose more than the undesirable one's (KTO's implicit reward
              ranks them right; 50% = no separation, a coin);
  desirable_rose / undesirable_rose  share of each kind the tuned model finds more likely than the base.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnswerLikelihood:
    """One answer under one model: the summed log-probability of its tokens and how many there were."""

    logp: float
    tokens: int


@dataclass(frozen=True)
class PairLikelihoods:
    """A held-out pair under one model."""

    chosen: AnswerLikelihood
    rejected: AnswerLikelihood


def pair_scores(pairs: list[PairLikelihoods]) -> dict[str, float | None]:
    """preference_accuracy and preference_margin of one model over the pairs (None for no pairs)."""
    if not pairs:
        return {"preference_accuracy": None, "preference_margin": None}
    margins = [p.chosen.logp - p.rejected.logp for p in pairs]
    return {"preference_accuracy": round(sum(m > 0 for m in margins) / len(margins), 4),
            "preference_margin": round(sum(margins) / len(margins), 4)}


def moved_toward_chosen(base: list[PairLikelihoods], tuned: list[PairLikelihoods]) -> float | None:
    """Share of pairs whose chosen-minus-rejected margin is larger under the tuned model than under the base."""
    if not base:
        return None
    moved = [(t.chosen.logp - t.rejected.logp) > (b.chosen.logp - b.rejected.logp) for b, t in zip(base, tuned, strict=True)]
    return round(sum(moved) / len(moved), 4)


def _loss(answers: list[AnswerLikelihood]) -> float | None:
    tokens = sum(a.tokens for a in answers)
    return round(-sum(a.logp for a in answers) / tokens, 4) if tokens else None


def labelled_scores(answers: list[AnswerLikelihood], labels: list[bool]) -> dict[str, float | None]:
    """desirable_loss and undesirable_loss of one model (token-weighted mean loss of each kind)."""
    return {"desirable_loss": _loss([a for a, good in zip(answers, labels, strict=True) if good]),
            "undesirable_loss": _loss([a for a, good in zip(answers, labels, strict=True) if not good])}


def labelled_change(base: list[AnswerLikelihood], tuned: list[AnswerLikelihood], labels: list[bool]) -> dict[str, float | None]:
    """separation, desirable_rose and undesirable_rose: how the tuned model moved each answer away from the base.

    separation is the Mann-Whitney statistic of the log-likelihood gains (ties count half):
    the chance that a random desirable answer gained more than a random undesirable one.
    """
    gains = [t.logp - b.logp for b, t in zip(base, tuned, strict=True)]
    good = [g for g, label in zip(gains, labels, strict=True) if label]
    bad = [g for g, label in zip(gains, labels, strict=True) if not label]

    def rose(values: list[float]) -> float | None:
        return round(sum(v > 0 for v in values) / len(values), 4) if values else None

    separation = None
    if good and bad:
        wins = sum(1.0 if g > b else 0.5 if g == b else 0.0 for g in good for b in bad)
        separation = round(wins / (len(good) * len(bad)), 4)
    return {"separation": separation, "desirable_rose": rose(good), "undesirable_rose": rose(bad),
            "desirable": len(good), "undesirable": len(bad)}


def summarise(kind: str, base: list, tuned: list, labels: list[bool] | None = None) -> tuple[dict, dict, dict]:
    """(base metrics, tuned metrics, the report's "preference" entry) for rows scored under both models.

    base/tuned: per row a PairLikelihoods ('pairs') or an AnswerLikelihood ('labelled'), None for a
    row truncation left no answer tokens in; such rows are left out of both columns.
    """
    labels = labels or [True] * len(base)
    kept = [(b, t, label) for b, t, label in zip(base, tuned, labels, strict=True) if b is not None and t is not None]
    base_rows, tuned_rows, kept_labels = [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept]
    if kind == "pairs":
        return (pair_scores(base_rows), pair_scores(tuned_rows),
                {"kind": "pairs", "rows": len(kept), "moved_toward_chosen": moved_toward_chosen(base_rows, tuned_rows)})
    return (labelled_scores(base_rows, kept_labels), labelled_scores(tuned_rows, kept_labels),
            {"kind": "labelled", "rows": len(kept), **labelled_change(base_rows, tuned_rows, kept_labels)})
