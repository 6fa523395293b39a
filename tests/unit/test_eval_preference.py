"""Preference measures of `sft-tui eval` and how the report shows them. Pure functions, no model."""

from __future__ import annotations

from sft_tui.core.evaluate.preference import (
    AnswerLikelihood as A,
)
from sft_tui.core.evaluate.preference import (
    PairLikelihoods as P,
)
from sft_tui.core.evaluate.preference import (
    labelled_change,
    labelled_scores,
    moved_toward_chosen,
    pair_scores,
    summarise,
)
from sft_tui.core.evaluate.report import (
    headline,
    metric_rows,
    preference_lines,
    render_markdown,
)


def test_pairs_count_where_the_chosen_answer_is_more_likely_and_how_far_each_model_moved():
    base = [P(A(-10, 5), A(-8, 5)), P(A(-4, 2), A(-6, 3)), P(A(-9, 4), A(-9, 4))]
    tuned = [P(A(-7, 5), A(-9, 5)), P(A(-5, 2), A(-6, 3)), P(A(-9, 4), A(-9, 4))]
    assert pair_scores(base) == {"preference_accuracy": 0.3333, "preference_margin": 0.0}  # a tie is not a preference
    assert pair_scores(tuned) == {"preference_accuracy": 0.6667, "preference_margin": 1.0}
    assert moved_toward_chosen(base, tuned) == 0.3333  # pair 2 is still right but moved the wrong way; pair 3 did not move
    assert pair_scores([]) == {"preference_accuracy": None, "preference_margin": None} and moved_toward_chosen([], []) is None


def test_labelled_answers_are_each_compared_with_themselves_under_the_base():
    labels = [True, True, False, False]
    base = [A(-10, 10), A(-20, 10), A(-5, 5), A(-30, 10)]
    tuned = [A(-8, 10), A(-21, 10), A(-9, 5), A(-30, 10)]  # gains +2, -1 | -4, 0
    assert labelled_scores(base, labels) == {"desirable_loss": 1.5, "undesirable_loss": 2.3333}
    assert labelled_scores(tuned, labels) == {"desirable_loss": 1.45, "undesirable_loss": 2.6}
    change = labelled_change(base, tuned, labels)
    # desirable gains {2, -1} against undesirable {-4, 0}: 2>-4, 2>0, -1>-4, -1<0 -> 3 of 4
    assert change == {"separation": 0.75, "desirable_rose": 0.5, "undesirable_rose": 0.0, "desirable": 2, "undesirable": 2}
    same = labelled_change(base, base, labels)
    assert same["separation"] == 0.5 and same["desirable_rose"] == 0.0  # no change at all: a coin, not a win
    assert labelled_change(base[:2], tuned[:2], labels[:2])["separation"] is None  # no undesirable answer to rank against


def test_rows_truncated_away_under_either_model_leave_both_columns():
    base = [P(A(-1, 1), A(-2, 1)), None]
    tuned = [P(A(-1, 1), A(-3, 1)), P(A(-1, 1), A(-9, 1))]
    b, t, summary = summarise("pairs", base, tuned)
    assert b["preference_accuracy"] == 1.0 and t["preference_margin"] == 2.0
    assert summary == {"kind": "pairs", "rows": 1, "moved_toward_chosen": 1.0}
    b, t, summary = summarise("labelled", [A(-4, 2), A(-4, 2)], [A(-2, 2), A(-6, 2)], [True, False])
    assert (b["desirable_loss"], t["desirable_loss"], t["undesirable_loss"]) == (2.0, 1.0, 3.0) and summary["separation"] == 1.0


def _report(**extra) -> dict:
    return {"run": "r", "created_at": "t", "data": "the run's eval split", "examples": 3, "checks": ["exact_match"],
            "base": {"response_loss": 2.0, "exact_match": 0.0}, "tuned": {"response_loss": 1.5, "exact_match": 0.3333}, "samples": [],
            **extra}


def test_the_report_puts_preference_accuracy_next_to_the_answer_loss_and_says_what_moved():
    report = _report(base_model="the adapter this run started from (/runs/sft/adapter)", base_adapter="/runs/sft/adapter",
                     preference={"kind": "pairs", "rows": 3, "moved_toward_chosen": 0.6667})
    report["samples"] = [{"where": "p.jsonl:1", "prompt": "q", "reference": "good", "rejected": "bad", "base": "b", "tuned": "t",
                          "base_stopped": True, "tuned_stopped": True}]
    report["base"].update(preference_accuracy=0.3333, preference_margin=-1.5)
    report["tuned"].update(preference_accuracy=1.0, preference_margin=2.25)
    rows = metric_rows(report)
    assert rows[1] == ["prefers the chosen answer", "33%", "100%", "better"]
    assert rows[2] == ["log-likelihood margin, chosen - rejected", "-1.50", "+2.25", "better"]
    assert preference_lines(report) == [("the tuned model moved 67% of 3 held-out pairs toward the chosen answer, relative to the base "
                                         "(DPO's reward accuracy)")]
    markdown = render_markdown(report)
    assert "Base column: the adapter this run started from (/runs/sft/adapter)." in markdown
    assert "The tuned model moved 67% of 3 held-out pairs" in markdown and "summed log-likelihood" in markdown
    assert "| reference | good |\n| rejected | bad |\n| base | b |" in markdown
    assert "prefers the chosen answer 33% -> 100%" in headline(report)


def test_labelled_rows_read_lower_loss_on_good_answers_and_higher_on_bad_ones_as_better():
    report = _report(preference={"kind": "labelled", "rows": 4, "separation": 0.75, "desirable_rose": 0.5, "undesirable_rose": 0.0,
                                 "desirable": 2, "undesirable": 2})
    report["base"].update(desirable_loss=1.5, undesirable_loss=2.3333)
    report["tuned"].update(desirable_loss=1.45, undesirable_loss=2.6)
    rows = {row[0]: row[1:] for row in metric_rows(report)}
    assert rows["loss on desirable answers"] == ["1.500", "1.450", "better"]
    assert rows["loss on undesirable answers (higher is better)"] == ["2.333", "2.600", "better"]
    lines = preference_lines(report)
    assert "in 75% of the combinations" in lines[0] and "50% = no separation" in lines[0]
    assert lines[1] == "the tuned model finds 50% of 2 desirable and 0% of 2 undesirable answers more likely than the base"
    assert headline(report).endswith("(base -> tuned, 3 examples); desirable answers gained more than undesirable ones in 75% (50% = no separation)")


def test_a_report_without_preference_rows_reads_as_before():
    report = _report()
    assert [r[0] for r in metric_rows(report)] == ["response loss (held-out answers)", "exact match"]
    assert preference_lines(report) == [] and "Base column" not in render_markdown(report)
    report["samples"] = [{"where": "e.jsonl:1", "prompt": "q", "reference": "r", "base": "b", "tuned": "t", "base_stopped": True,
                          "tuned_stopped": True}]
    assert "| rejected |" not in render_markdown(report)
