"""eval/report.json -> the short terminal table, eval/report.md and the rows Compare shows.

The report's shape (written by sft_tui.trainer.evaluate):
  {"run", "created_at", "data", "examples", "device", "decoding": {...}, "checks": [...],
   "base_model": what the base column is, "base": {metric: value}, "tuned": {metric: value},
   "preference": {...} (preference rows only), "samples": [{"where", "prompt", "reference",
   "rejected" (pairs only), "base", "tuned", "base_stopped", "tuned_stopped"}]}
Metrics: response_loss, response_ppl, general_loss, general_ppl, each check's pass share (the
tool-call checks among them), stopped_share, refusal_share, mean_answer_tokens; on held-out
pairs preference_accuracy and preference_margin, on labelled answers desirable_loss and
undesirable_loss (core.evaluate.preference says what each means). "preference" holds the
one-number results that compare the two models: {"kind": "pairs", "rows", "moved_toward_chosen"}
or {"kind": "labelled", "rows", "separation", "desirable_rose", "undesirable_rose", "desirable", "undesirable"}.
"""

from __future__ import annotations

from typing import Any

LOWER_IS_BETTER = {"response_loss", "response_ppl", "general_loss", "general_ppl", "refusal_share", "desirable_loss"}
LABELS = {
    "response_loss": "response loss (held-out answers)", "response_ppl": "response perplexity",
    "general_loss": "general-text loss (forgetting)", "general_ppl": "general-text perplexity",
    "exact_match": "exact match", "json_valid": "valid JSON", "json_keys": "JSON keys and types match", "regex": "matches eval.regex",
    "stopped_share": "stopped at end token", "refusal_share": "refusal-like answers", "mean_answer_tokens": "mean answer tokens",
    "preference_accuracy": "prefers the chosen answer", "preference_margin": "log-likelihood margin, chosen - rejected",
    "desirable_loss": "loss on desirable answers", "undesirable_loss": "loss on undesirable answers (higher is better)",
    "tool_call_json": "tool call is valid JSON", "tool_call_declared": "calls a declared tool",
    "tool_call_name": "calls the reference's tool", "tool_call_arguments": "... with the reference's arguments",
}
SHARES = {"exact_match", "json_valid", "json_keys", "regex", "stopped_share", "refusal_share", "preference_accuracy",
          "tool_call_json", "tool_call_declared", "tool_call_name", "tool_call_arguments"}
PREFERENCE_METRICS = ("preference_accuracy", "preference_margin", "desirable_loss", "undesirable_loss")


def metric_order(report: dict[str, Any]) -> list[str]:
    """Metrics in reading order: losses, the run's checks, then the always-on measures."""
    keys = ["response_loss", "response_ppl", *PREFERENCE_METRICS, *report.get("checks", []), "stopped_share", "refusal_share", "mean_answer_tokens",
            "general_loss", "general_ppl"]
    return [k for k in keys if k in report.get("tuned", {})]


def format_metric(key: str, value: float | None) -> str:
    """Shares as percentages, losses with three decimals."""
    if value is None:
        return "-"
    if key in SHARES:
        return f"{value:.0%}"
    if key == "preference_margin":
        return f"{value:+.2f}"
    return f"{value:,.1f}" if key.endswith("ppl") or key == "mean_answer_tokens" else f"{value:.3f}"


def verdict(key: str, base: float | None, tuned: float | None) -> str:
    """'better', 'worse' or 'same' for the tuned model on one metric ('' when not comparable)."""
    if base is None or tuned is None or key == "mean_answer_tokens":
        return ""
    if abs(tuned - base) < 1e-9:
        return "same"
    return "better" if (tuned < base) == (key in LOWER_IS_BETTER) else "worse"


def metric_rows(report: dict[str, Any]) -> list[list[str]]:
    """[metric, base, tuned, verdict] rows."""
    return [[LABELS.get(k, k), format_metric(k, report["base"].get(k)), format_metric(k, report["tuned"].get(k)),
             verdict(k, report["base"].get(k), report["tuned"].get(k))] for k in metric_order(report)]


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def preference_lines(report: dict[str, Any]) -> list[str]:
    """The sentences that compare the two models on held-out preference rows (none for other runs)."""
    found = report.get("preference") or {}
    if found.get("kind") == "pairs":
        return [(f"the tuned model moved {_share(found.get('moved_toward_chosen'))} of {found.get('rows', '?')} held-out pairs toward "
                 "the chosen answer, relative to the base (DPO's reward accuracy)")]
    if found.get("kind") == "labelled":
        return [(f"a desirable answer gained more likelihood than an undesirable one in {_share(found.get('separation'))} of "
                 "the combinations (KTO's implicit reward ranks them right; 50% = no separation)"),
                (f"the tuned model finds {_share(found.get('desirable_rose'))} of {found.get('desirable', '?')} desirable and "
                 f"{_share(found.get('undesirable_rose'))} of {found.get('undesirable', '?')} undesirable answers more likely than the base")]
    return []


def _cell(text: str, limit: int = 300) -> str:
    text = text if len(text) <= limit else text[:limit] + " ..."
    return text.replace("|", "\\|").replace("\n", "<br>")


def render_markdown(report: dict[str, Any], samples: int = 10) -> str:
    """eval/report.md: the settings, the metric table and answers side by side."""
    decoding = report.get("decoding", {})
    lines = [f"# Evaluation of {report['run']}", "",
             f"{report['examples']} held-out examples from {report['data']}; {report.get('device', '?')}; "
             f"greedy decoding, at most {decoding.get('max_new_tokens', '?')} new tokens; {report['created_at']}.", "",
             "| metric | base | tuned | |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in metric_rows(report)]
    if report.get("base_model"):
        lines += ["", f"Base column: {report['base_model']}."]
    if report.get("preference"):
        lines += [""] + [f"{line[0].upper()}{line[1:]}." for line in preference_lines(report)]
        lines += ["", ("Preference rows are scored by the summed log-likelihood of each answer given its prompt (what DPO and KTO "
                       "optimise); it favours short answers, in both columns alike.")]
    if report.get("general_note"):
        lines += ["", report["general_note"]]
    lines += ["", f"## Answers side by side (first {min(samples, len(report.get('samples', [])))})", ""]
    for sample in report.get("samples", [])[:samples]:
        lines += [f"**{sample['where']}**", "", "| | |", "| --- | --- |", f"| prompt | {_cell(sample['prompt'])} |",
                  f"| reference | {_cell(sample['reference'])} |",
                  *([f"| rejected | {_cell(sample['rejected'])} |"] if "rejected" in sample else []),
                  f"| base{'' if sample['base_stopped'] else ' (did not stop)'} | {_cell(sample['base'])} |",
                  f"| tuned{'' if sample['tuned_stopped'] else ' (did not stop)'} | {_cell(sample['tuned'])} |", ""]
    return "\n".join(lines) + "\n"


def headline(report: dict[str, Any]) -> str:
    """One line for a toast or a job's result: the answer loss, preference accuracy and each task check, base -> tuned."""
    base, tuned = report.get("base", {}), report.get("tuned", {})
    parts = [f"response loss {format_metric('response_loss', base.get('response_loss'))} -> {format_metric('response_loss', tuned.get('response_loss'))}"]
    for key in ("preference_accuracy", *report.get("checks", [])):
        if key in tuned:
            parts.append(f"{LABELS.get(key, key)} {format_metric(key, base.get(key))} -> {format_metric(key, tuned.get(key))}")
    line = f"{'; '.join(parts)} (base -> tuned, {report.get('examples', '?')} examples)"
    if (report.get("preference") or {}).get("kind") == "labelled":
        line += f"; desirable answers gained more than undesirable ones in {_share(report['preference'].get('separation'))} (50% = no separation)"
    return line
