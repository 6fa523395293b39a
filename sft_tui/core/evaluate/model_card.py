"""The run's README.md model card: base, method, data, settings, results, and the decision behind it.

Written when training ends, refreshed by `sft-tui eval`, and copied next to a merged
model by `sft-tui merge`. Everything in it is read from the run dir: config.toml,
summary.json, eval/report.json and decision.md (the wizard's record, when the run has one).
"""

from __future__ import annotations

from pathlib import Path

from sft_tui.core.config.tomlfile import parse_toml_text
from sft_tui.core.evaluate.report import metric_rows, preference_lines
from sft_tui.core.runs.codec import SchemaError
from sft_tui.core.runs.rundir import RunDir


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def render_model_card(run: RunDir) -> str:
    """The card's Markdown text."""
    config = parse_toml_text(run.read_config_text(), str(run.config_path))
    model, method, data, training = (config.get(k, {}) for k in ("model", "method", "data", "training"))
    try:
        summary = run.read_summary()
    except SchemaError:
        summary = None
    objective = method.get("objective", "sft")
    trainer = {"sft": "SFTTrainer", "dpo": "DPOTrainer", "kto": "KTOTrainer", "orpo": "ORPOTrainer"}.get(objective, "?")
    lines = [f"# {run.id}", "",
             f"A {method.get('name', '?')} fine-tune of `{model.get('name', '?')}`, trained with sft-tui (TRL {trainer}"
             + (", peft" if method.get("name") != "full" else "") + ")"
             + (f", on from the adapter {model['adapter']}" if model.get("adapter") else "") + ".", ""]
    if config.get("output", {}).get("notes"):
        lines += [config["output"]["notes"], ""]
    lines += ["## Training", "", "| setting | value |", "| --- | --- |",
              f"| base model | `{(summary.base_model if summary else '') or model.get('name', '?')}` |",
              f"| method | {method.get('name', '?')}" + (f", rank {method.get('lora_r')}, alpha {method.get('lora_alpha')}, targets "
                                                            f"{', '.join(method.get('target_modules', []))}" if method.get("name") != "full" else "") + " |",
              f"| objective | {objective}" + (f", beta {_fmt(method.get('beta', 0.1))}" + (f", loss {method['loss_type']}" if method.get("loss_type") else "")
                                            if objective != "sft" else "") + " |",
              f"| data | `{data.get('train', '?')}` ({data.get('format', 'auto')}), eval: "
              + (f"`{data['eval']}`" if data.get("eval") else f"{data.get('eval_fraction', 0):.0%} held out") + " |",
              f"| learning rate, schedule | {_fmt(training.get('lr'))}, {training.get('lr_scheduler', '?')} |",
              f"| batch | {training.get('micro_batch_size', '?')} x {training.get('gradient_accumulation_steps', '?')} accumulation |",
              f"| sequence length | {training.get('max_seq_length', '?')} |",
              f"| precision, device | {summary.precision if summary else '?'}, {summary.device if summary else '?'} |", ""]
    if summary:
        stale = " (a resume has started since: these numbers are from before it)" if summary.stale else ""
        lines += ["## Result", "", "| | |", "| --- | --- |",
                  f"| state | {summary.state} at step {summary.steps} of {summary.max_steps}{stale} |",
                  f"| training rows, eval rows | {summary.train_rows}, {summary.eval_rows} |",
                  f"| loss first -> last | {_fmt(summary.first_loss)} -> {_fmt(summary.final_loss)} |",
                  f"| eval loss (last, best) | {_fmt(summary.final_eval_loss)}, {_fmt(summary.best_eval_loss)} |",
                  f"| tokens, wall time | {_fmt(summary.tokens)}, {_fmt(summary.wall_time_s)} s"
                  + (f" over {summary.resumes + 1} sessions" if summary.resumes else "") + " |",
                  "| peak GPU memory reserved | " + (f"{summary.peak_gpu_reserved_gib:.2f} GiB" if summary.peak_gpu_reserved_gib is not None else "- (no GPU)")
                  + (f", estimated {summary.estimated_peak_gib:.2f} GiB" if summary.estimated_peak_gib is not None else "") + " |", ""]
    report = run.read_eval_report()
    if report:
        lines += ["## Evaluation against the base model", "",
                  f"{report['examples']} held-out examples from {report['data']}, greedy decoding; {report['created_at']}. "
                  "Details and answers side by side: `eval/report.md`.", "", "| metric | base | tuned | |", "| --- | ---: | ---: | --- |"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in metric_rows(report)]
        lines.append("")
        if report.get("base_model"):
            lines += [f"Base column: {report['base_model']}.", ""]
        lines += [f"{line[0].upper()}{line[1:]}." for line in preference_lines(report)]
        lines += [""] if preference_lines(report) else []
    else:
        lines += ["## Evaluation", "", f"Not evaluated yet: `sft-tui eval {run.id}`.", ""]
    decision = run.read_decision()
    if decision:
        lines += ["## Why fine-tune (decision record)", "", decision.strip(), ""]
    lines += ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer"]
    if method.get("name") == "full":
        lines += [f'model = AutoModelForCausalLM.from_pretrained("{run.model_dir}")', f'tokenizer = AutoTokenizer.from_pretrained("{run.model_dir}")']
    else:
        lines += ["from peft import PeftModel", f'base = AutoModelForCausalLM.from_pretrained("{(summary.base_model if summary else "") or model.get("name")}")',
                  f'model = PeftModel.from_pretrained(base, "{run.adapter_dir}")', f'tokenizer = AutoTokenizer.from_pretrained("{run.adapter_dir}")']
    lines += ["```", "", f"Or merge it into a standalone model: `sft-tui merge {run.id} -o merged/`.", ""]
    return "\n".join(lines)


def write_model_card(run: RunDir, to: Path | None = None) -> Path:
    """Write the card to the run's README.md (or `to`); returns where."""
    return run.write_model_card(render_model_card(run), to)
