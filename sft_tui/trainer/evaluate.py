"""`sft-tui eval RUN`: base against tuned on the same held-out examples, and on generic text.

For every example: the loss on the reference answer given the prompt (the run's chat
template, only answer tokens counted), and a greedy answer from each model, generated in
left-padded batches. The task checks (core.evaluate.checks) score the answers; examples
whose reference calls tools get the tool-call checks (core.evaluate.tool_checks). Held-out
preference rows (pairs, or answers labelled good/bad) are scored by the likelihood each
model gives each answer (trainer.preference_eval). The same loss on a generic text sample
shows what the run cost in general ability. Writes eval/report.json and eval/report.md in
the run dir and refreshes its model card.

The base column is the model without the run's adapter, or, for a run that trained on from
an adapter ([model] adapter, e.g. DPO after SFT), that starting adapter: the comparison is
always with where the run began, and the report says which.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch

from sft_tui.core.data.formats import Example, load_examples
from sft_tui.core.errors import UserError
from sft_tui.core.evaluate import preference
from sft_tui.core.evaluate.checks import Answer, choose_checks, score_answers
from sft_tui.core.evaluate.model_card import write_model_card
from sft_tui.core.evaluate.report import render_markdown
from sft_tui.core.evaluate.tool_checks import (
    TOOL_CHECKS,
    call_prefixes,
    calls_as_text,
    check_tool_call,
    declared_tools,
    reference_calls,
    score_tool_calls,
)
from sft_tui.core.models.presets import assets_dir
from sft_tui.core.runs.rundir import RunDir
from sft_tui.trainer.eval_tokens import (
    EvalPrompt,
    answer_ids,
    conversation,
    eval_prompt,
    prompt_ids,
)
from sft_tui.trainer.inference import LoadedRun, end_token_ids, load_run
from sft_tui.trainer.preference_eval import (
    held_out_preference_rows,
    score_rows,
    tokenise_rows,
)

GEN_BATCH = 8
START_ADAPTER = "start"  # the peft adapter name the run's starting adapter is loaded under


def _reference(example: Example) -> tuple[dict | str, str]:
    """(the answer as training saw it: an assistant message or completion text, the reference as text a person reads)."""
    if example.turns:
        last = example.turns[-1]
        text = calls_as_text(last.content, reference_calls(last.tool_calls)) if last.tool_calls else last.content
        return conversation(example)[-1], text
    return example.completion or "", example.completion or ""


@torch.inference_mode()
def _loss(model, device: str, sequences: list[tuple[list[int], int]], max_length: int) -> float | None:
    """Mean loss over the scored tokens of each (ids, first scored position) pair."""
    total, count = 0.0, 0
    for ids, start in sequences:
        ids = ids[:max_length]
        if start >= len(ids):
            continue
        tensor = torch.tensor([ids], device=device)
        logits = model(input_ids=tensor).logits[0, :-1].float()
        targets = tensor[0, 1:]
        losses = torch.nn.functional.cross_entropy(logits[start - 1:], targets[start - 1:], reduction="sum")
        total += float(losses)
        count += len(ids) - start
    return total / count if count else None


@torch.inference_mode()
def _generate(loaded: LoadedRun, model, prompts: list[list[int]], max_new_tokens: int,
              batch_done: Callable[[int], None] = lambda _n: None) -> list[Answer]:
    tokenizer = loaded.tokenizer
    ends = end_token_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ends[0]
    answers = []
    for start in range(0, len(prompts), GEN_BATCH):
        batch = prompts[start:start + GEN_BATCH]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=loaded.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=loaded.device)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=ends, pad_token_id=pad)
        for row in out[:, width:].tolist():
            stop = next((i for i, token in enumerate(row) if token in ends), None)
            kept = row if stop is None else row[:stop]
            answers.append(Answer(tokenizer.decode(kept, skip_special_tokens=True).strip(), len(kept), stop is not None))
        batch_done(len(answers))
    return answers


def _general_texts(path: str) -> tuple[list[str], str]:
    source = Path(path) if path else assets_dir() / "general" / "general_text.jsonl"
    texts = [e.text or "" for e in load_examples(source, "text").examples]
    return texts, str(source)


def _held_out(config, data: Path | None) -> tuple[list[Example], str]:
    """The rows to evaluate on and where they come from: --data, or the split the run's training held out."""
    if data is not None:
        loaded = load_examples(data, "auto")
        if loaded.kind == "unpaired-labelled":  # load_examples leaves the undesirable rows out; they are half the measure
            from sft_tui.core.data.preference import load_for_objective

            return list(load_for_objective(data, "auto", "kto").examples), str(data)
        return list(loaded.examples), str(data)
    where = "the run's eval split" + (f" ({config.data.eval})" if config.data.eval else "")
    if config.method.objective == "sft":
        from sft_tui.trainer.dataset import split_examples

        examples = split_examples(config)[2]
    else:
        examples = held_out_preference_rows(config)
    if not examples:
        raise UserError("the run has no eval split (data.eval_fraction = 0 and no data.eval)", "--data", "pass --data held_out.jsonl")
    return examples, where


def _attach_start_adapter(loaded: LoadedRun) -> tuple[str, str]:
    """(what the base column is, the starting adapter's folder or ''): loads [model] adapter beside the run's own."""
    name = loaded.config.model.name
    start = loaded.config.model.adapter
    if not start:
        return (f"`{name}` without the run's adapter" if loaded.base_model is None else f"`{name}`"), ""
    if not (Path(start) / "adapter_config.json").is_file():
        return f"`{name}` without adapters (the adapter the run started from, {start}, is no longer there)", ""
    loaded.tuned.load_adapter(start, adapter_name=START_ADAPTER, is_trainable=False)
    folder = Path(start)
    if folder.name == "adapter" and RunDir(folder.parent).config_path.is_file():  # another run's output: name the run
        return f"the adapter this run started from (run {folder.parent.name})", start
    return f"the adapter this run started from ({start})", start


def _call_questions(examples: list[Example]) -> tuple[list[Example], list[int], list[Example]]:
    """(every tool-call question, where its generated answer will be, the extra prompts to generate from).

    An example whose reference answer is a call is its own question; a call inside a
    conversation (usually followed by the tool's result and a text answer) becomes an extra
    prompt, the conversation cut just after that call. Extra answers come after the examples' own.
    """
    own = [i for i, e in enumerate(examples) if e.turns and e.turns[-1].tool_calls]
    extra = [prefix for e in examples for prefix in call_prefixes(e)]
    return [examples[i] for i in own] + extra, own + list(range(len(examples), len(examples) + len(extra))), extra


@contextmanager
def _use(loaded: LoadedRun, which: str, start_adapter: str):
    """The model for 'base' or 'tuned'; the base is the starting adapter when the run had one."""
    if which == "base" and start_adapter:
        loaded.tuned.set_adapter(START_ADAPTER)
        try:
            yield loaded.tuned
        finally:
            loaded.tuned.set_adapter("default")
    else:
        with loaded.use(which) as model:
            yield model


def evaluate_run(run: RunDir, data: Path | None = None, n: int | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Evaluate base and tuned; write eval/report.json, eval/report.md and the model card; return the report.

    progress(phase, done, total) counts work units: per model, one for each loss pass, one
    for the preference rows (when there are any) and one per generated answer.
    """
    report_progress = progress or (lambda _phase, _done, _total: None)
    report_progress("loading the models", 0, 0)
    started = time.time()
    loaded = load_run(run)
    config = loaded.config
    tokenizer = loaded.tokenizer
    rows, source = _held_out(config, data)
    rows = rows[: n or config.eval.examples]
    preference_rows = tokenise_rows(tokenizer, rows)
    examples = [e for e in rows if e.label is not False]  # an undesirable answer is no reference to match
    if not examples:
        raise UserError("the held-out rows hold no desirable answer to compare answers with", "--data", "pass --data with some good answers")
    prompts = [eval_prompt(e) for e in examples]
    answers_as_trained, references = zip(*[_reference(e) for e in examples])
    checks = list(choose_checks(config.eval.checks, list(references), config.eval.regex))
    calls, call_at, extra = _call_questions(examples)
    if calls:
        checks += TOOL_CHECKS
    generate_from = prompts + [eval_prompt(e) for e in extra]
    longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in [*references, *(_reference(e)[1] for e in extra)])
    max_new = config.eval.max_new_tokens or min(512, max(16, 2 * longest))
    max_length = config.training.max_seq_length
    scored = [answer_ids(tokenizer, p, a) for p, a in zip(prompts, answers_as_trained, strict=True)]
    prompt_tokens = [prompt_ids(tokenizer, p) for p in generate_from]
    general, general_source = _general_texts(config.eval.general_text)
    general_ids = [(tokenizer(text)["input_ids"], 1) for text in general]
    base_model, start_adapter = _attach_start_adapter(loaded)
    report: dict = {"run": run.id, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "data": source,
                    "examples": len(examples), "device": loaded.note, "checks": checks, "general_text": general_source,
                    "decoding": {"greedy": True, "max_new_tokens": max_new}, "base_model": base_model, "base_adapter": start_adapter}
    answers, likelihoods = {}, {}
    per_model = 2 + (preference_rows is not None) + len(prompt_tokens)
    total = 2 * per_model
    for offset, which in enumerate(("base", "tuned")):
        done = offset * per_model
        with _use(loaded, which, start_adapter) as model:
            report_progress(f"{which}: loss on {len(scored)} answers", done, total)
            response = _loss(model, loaded.device, scored, max_length)
            report_progress(f"{which}: loss on {len(general_ids)} generic texts", done + 1, total)
            general_loss = _loss(model, loaded.device, general_ids, max_length)
            if preference_rows is not None:
                done += 1
                report_progress(f"{which}: likelihood of {len(preference_rows.examples)} held-out preference rows", done + 1, total)
                likelihoods[which] = score_rows(model, loaded.device, preference_rows, max_length)
            phase = f"{which}: generating {len(prompt_tokens)} answers (greedy, up to {max_new} tokens)"  # the call questions' too
            report_progress(phase, done + 2, total)
            answers[which] = _generate(loaded, model, prompt_tokens, max_new,
                                       lambda count, done=done, phase=phase: report_progress(phase, done + 2 + count, total))
        metrics = {"response_loss": _round(response), "response_ppl": _ppl(response),
                   "general_loss": _round(general_loss), "general_ppl": _ppl(general_loss)}
        text_checks = tuple(c for c in checks if c not in TOOL_CHECKS)
        metrics.update(score_answers(answers[which][:len(examples)], list(references), text_checks, config.eval.regex))
        if calls:
            metrics.update(score_tool_calls([check_tool_call(answers[which][at].text, reference_calls(e.turns[-1].tool_calls), declared_tools(e.tools))
                                             for at, e in zip(call_at, calls, strict=True)]))
        report[which] = metrics
    if preference_rows is not None:
        labels = [bool(e.label) for e in preference_rows.examples] if preference_rows.kind == "labelled" else None
        base_scores, tuned_scores, summary = preference.summarise(preference_rows.kind, likelihoods["base"], likelihoods["tuned"], labels)
        report["base"].update(base_scores)
        report["tuned"].update(tuned_scores)
        report["preference"] = summary
    if calls:
        report["tool_calls"] = len(calls)
    report["samples"] = [
        {"where": e.where, "prompt": _prompt_display(prompt), "reference": reference, "base": b.text, "tuned": t.text,
         "base_stopped": b.stopped, "tuned_stopped": t.stopped, **({"rejected": e.rejected} if e.rejected is not None else {})}
        for e, prompt, reference, b, t in zip(examples, prompts, references, answers["base"][:len(examples)], answers["tuned"][:len(examples)],
                                              strict=True)]
    report["wall_time_s"] = round(time.time() - started, 1)
    run.write_eval_report(report, render_markdown(report))
    write_model_card(run)
    report_progress("done", total, total)
    return report


def _prompt_display(prompt: EvalPrompt) -> str:
    if isinstance(prompt.messages, str):
        return prompt.messages
    lines = []
    for m in prompt.messages:
        text = m["content"] if m["role"] == "user" else f"[{m['role']}] {m['content']}"
        calls = [f"{c['function']['name']}({json.dumps(c['function']['arguments'], ensure_ascii=False)})" for c in m.get("tool_calls", [])]
        lines.append(" ".join([text.strip(), *calls]).strip() if calls else text)
    return "\n".join(lines)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _ppl(loss: float | None) -> float | None:
    return None if loss is None else round(math.exp(min(loss, 50.0)), 2)
