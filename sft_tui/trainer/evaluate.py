"""`sft-tui eval RUN`: base against tuned on the same held-out examples, and on generic text.

For every example: the loss on the reference answer given the prompt (the run's chat
template, only answer tokens counted), and a greedy answer from each model, generated in
left-padded batches. The task checks (core.eval_checks) score the answers. The same loss
on a generic text sample shows what the run cost in general ability. Writes
eval/report.json and eval/report.md in the run dir and refreshes its model card.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from sft_tui.core.data.formats import Example, load_examples
from sft_tui.core.errors import UserError
from sft_tui.core.evaluate.checks import Answer, choose_checks, score_answers
from sft_tui.core.evaluate.model_card import write_model_card
from sft_tui.core.evaluate.report import render_markdown
from sft_tui.core.models.presets import assets_dir
from sft_tui.core.runs.rundir import RunDir
from sft_tui.trainer.inference import LoadedRun, end_token_ids, load_run, prompt_text

GEN_BATCH = 8


def _split(example: Example) -> tuple[list[dict] | str, str]:
    """(prompt messages or prompt string, reference answer)."""
    if example.turns:
        return [{"role": t.role, "content": t.content} for t in example.turns[:-1]], example.turns[-1].content
    if example.completion is not None:
        return example.prompt, example.completion
    raise UserError("plain-text rows have no prompt to answer", example.where, "evaluate on alpaca, messages, ShareGPT or prompt/completion rows")


def _prompt_ids(loaded: LoadedRun, prompt) -> list[int]:
    tokenizer = loaded.tokenizer
    if isinstance(prompt, str):
        return tokenizer(prompt)["input_ids"]
    return tokenizer(prompt_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]


def _answer_ids(loaded: LoadedRun, prompt, reference: str) -> tuple[list[int], int]:
    """Token ids of prompt + answer as training saw them, and where the answer starts."""
    tokenizer = loaded.tokenizer
    prompt_ids = _prompt_ids(loaded, prompt)
    if isinstance(prompt, str):
        full = tokenizer(prompt + reference)["input_ids"]
    else:
        text = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": reference}], tokenize=False)
        full = tokenizer(text, add_special_tokens=False)["input_ids"]
    start = len(prompt_ids) if full[: len(prompt_ids)] == prompt_ids else len(full) - len(tokenizer(reference, add_special_tokens=False)["input_ids"])
    return full, max(1, start)


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


def evaluate_run(run: RunDir, data: Path | None = None, n: int | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Evaluate base and tuned; write eval/report.json, eval/report.md and the model card; return the report.

    progress(phase, done, total) counts work units: per model, one for each loss pass and
    one per generated answer.
    """
    from sft_tui.trainer.dataset import split_examples

    report_progress = progress or (lambda _phase, _done, _total: None)
    report_progress("loading the models", 0, 0)
    started = time.time()
    loaded = load_run(run)
    config = loaded.config
    if data is not None:
        examples, source = list(load_examples(data, "auto").examples), str(data)
    else:
        examples, source = split_examples(config)[2], "the run's eval split" + (f" ({config.data.eval})" if config.data.eval else "")
        if not examples:
            raise UserError("the run has no eval split (data.eval_fraction = 0 and no data.eval)", "--data", "pass --data held_out.jsonl")
    examples = examples[: n or config.eval.examples]
    pairs = [_split(e) for e in examples]
    references = [reference for _, reference in pairs]
    checks = choose_checks(config.eval.checks, references, config.eval.regex)
    tokenizer = loaded.tokenizer
    longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references)
    max_new = config.eval.max_new_tokens or min(512, max(16, 2 * longest))
    max_length = config.training.max_seq_length
    scored = [_answer_ids(loaded, prompt, reference) for prompt, reference in pairs]
    prompts = [_prompt_ids(loaded, prompt) for prompt, _ in pairs]
    general, general_source = _general_texts(config.eval.general_text)
    general_ids = [(tokenizer(text)["input_ids"], 1) for text in general]
    report: dict = {"run": run.id, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "data": source,
                    "examples": len(examples), "device": loaded.note, "checks": list(checks), "general_text": general_source,
                    "decoding": {"greedy": True, "max_new_tokens": max_new}}
    answers = {}
    total = 2 * (2 + len(prompts))
    for offset, which in enumerate(("base", "tuned")):
        done = offset * (2 + len(prompts))
        with loaded.use(which) as model:
            report_progress(f"{which}: loss on {len(scored)} answers", done, total)
            response = _loss(model, loaded.device, scored, max_length)
            report_progress(f"{which}: loss on {len(general_ids)} generic texts", done + 1, total)
            general_loss = _loss(model, loaded.device, general_ids, max_length)
            phase = f"{which}: generating {len(prompts)} answers (greedy, up to {max_new} tokens)"
            report_progress(phase, done + 2, total)
            answers[which] = _generate(loaded, model, prompts, max_new,
                                       lambda count, done=done, phase=phase: report_progress(phase, done + 2 + count, total))
        metrics = {"response_loss": _round(response), "response_ppl": _ppl(response),
                   "general_loss": _round(general_loss), "general_ppl": _ppl(general_loss)}
        metrics.update(score_answers(answers[which], references, checks, config.eval.regex))
        report[which] = metrics
    report["samples"] = [
        {"where": e.where, "prompt": _prompt_display(prompt), "reference": reference, "base": b.text, "tuned": t.text,
         "base_stopped": b.stopped, "tuned_stopped": t.stopped}
        for e, (prompt, reference), b, t in zip(examples, pairs, answers["base"], answers["tuned"], strict=True)]
    report["wall_time_s"] = round(time.time() - started, 1)
    run.write_eval_report(report, render_markdown(report))
    write_model_card(run)
    report_progress("done", total, total)
    return report


def _prompt_display(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m["content"] if m["role"] == "user" else f"[{m['role']}] {m['content']}" for m in prompt)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _ppl(loss: float | None) -> float | None:
    return None if loss is None else round(math.exp(min(loss, 50.0)), 2)
