"""`sft-tui eval` on preference runs, on the CPU with the tiny model: the likelihood scoring itself, a real DPO run
scored tuned against base on its held-out pairs, a run that trained on from an SFT adapter compared with that adapter,
labelled rows, and tool-calling rows."""

from __future__ import annotations

import json

import pytest

from sft_tui.core.data.formats import Example, ToolCall, Turn, load_examples
from tests.trainer.conftest import DEMO, run_trainer

PREFS = (f"data.train={DEMO / 'prefs_train.jsonl'}", f"data.eval={DEMO / 'prefs_eval.jsonl'}")


def _pairs(count: int) -> list[Example]:
    return list(load_examples(DEMO / "prefs_eval.jsonl").examples)[:count]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model, local_files_only=True).eval(), AutoTokenizer.from_pretrained(tiny_model)


def test_an_answers_likelihood_is_minus_the_models_own_loss_on_its_tokens(tiny):
    import torch

    from sft_tui.trainer.preference_eval import score_rows, tokenise_rows

    model, tokenizer = tiny
    rows = tokenise_rows(tokenizer, _pairs(3))
    assert rows.kind == "pairs" and len(rows.sequences) == 3
    scored = score_rows(model, "cpu", rows, 512)
    for (chosen, rejected), pair in zip(rows.sequences, scored, strict=True):
        assert chosen[1] == rejected[1]  # both answers start right after the same prompt
        for (ids, start), likelihood in ((chosen, pair.chosen), (rejected, pair.rejected)):
            labels = torch.tensor([[-100] * start + ids[start:]])
            with torch.inference_mode():
                mean_loss = float(model(input_ids=torch.tensor([ids]), labels=labels).loss)
            assert likelihood.tokens == len(ids) - start
            assert likelihood.logp == pytest.approx(-mean_loss * likelihood.tokens, rel=1e-4)
    assert tokenizer.decode(rows.sequences[0][0][0][rows.sequences[0][0][1]:]).endswith("<|im_end|>\n")  # stopping counts too
    truncated = score_rows(model, "cpu", rows, rows.sequences[0][0][1])  # max_length at the prompt's end: no answer left
    assert truncated[0] is None


def test_a_model_nudged_toward_the_chosen_answers_prefers_them_more_than_its_base(tiny):
    import copy

    import torch

    from sft_tui.core.evaluate.preference import moved_toward_chosen, pair_scores
    from sft_tui.trainer.preference_eval import score_rows, tokenise_rows

    base, tokenizer = tiny
    rows = tokenise_rows(tokenizer, _pairs(8))
    nudged = copy.deepcopy(base).train()
    optimizer = torch.optim.SGD(nudged.parameters(), lr=0.05)
    for _ in range(3):  # a little supervised learning on the chosen answers only
        for (ids, start), _rejected in rows.sequences:
            loss = nudged(input_ids=torch.tensor([ids]), labels=torch.tensor([[-100] * start + ids[start:]])).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    nudged.eval()
    before, after = score_rows(base, "cpu", rows, 512), score_rows(nudged, "cpu", rows, 512)
    assert pair_scores(after)["preference_margin"] > pair_scores(before)["preference_margin"]
    assert pair_scores(after)["preference_accuracy"] >= pair_scores(before)["preference_accuracy"]
    assert moved_toward_chosen(before, after) >= 0.75
    assert moved_toward_chosen(before, before) == 0.0  # the base against itself moved nothing


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory, tiny_model):
    """A completed DPO run on the demo pairs (their own eval file holds the held-out pairs)."""
    from sft_tui.core.config.load import dump_run_config, load_run_config
    from sft_tui.core.runs.store import RunStore

    home = tmp_path_factory.mktemp("evalpref") / "home"
    resolved = load_run_config(DEMO / "demo.toml", [f"model.name={tiny_model}", *PREFS, "method.objective=dpo", "training.lr=1e-3",
                                                    "training.max_steps=40", "training.eval_steps=1000", "training.save_steps=1000"])
    run = RunStore(home).create_run(dump_run_config(resolved.config), "tiny", "lora", name="dpo")
    done = run_trainer(run)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run


def test_eval_of_a_dpo_run_reports_preference_accuracy_tuned_against_base(dpo_run):
    from sft_tui.trainer.evaluate import evaluate_run

    report = evaluate_run(dpo_run, n=20)
    base, tuned, found = report["base"], report["tuned"], report["preference"]
    print(json.dumps({"base": base, "tuned": tuned, "preference": found}))
    assert report["data"].startswith("the run's eval split") and report["examples"] == 20
    assert found["kind"] == "pairs" and found["rows"] == 20
    assert tuned["preference_accuracy"] > base["preference_accuracy"] and tuned["preference_margin"] > base["preference_margin"]
    assert found["moved_toward_chosen"] >= 0.8
    for side in (base, tuned):  # the answer loss and the forgetting check still come with it
        assert side["response_loss"] is not None and side["general_loss"] is not None and "exact_match" in side
    assert report["base_model"].endswith("without the run's adapter") and report["base_adapter"] == ""
    markdown = dpo_run.eval_markdown_path.read_text()
    assert "| prefers the chosen answer |" in markdown and "held-out pairs toward the chosen answer" in markdown
    card = dpo_run.model_card_path.read_text()
    assert "TRL DPOTrainer" in card and "| prefers the chosen answer |" in card and "| objective | dpo, beta 0.1 |" in card


def test_the_cli_prints_the_preference_line_under_the_table(dpo_run, cli, monkeypatch):
    monkeypatch.setenv("SFT_TUI_HOME", str(dpo_run.path.parent.parent))
    result = cli("eval", dpo_run.id, "--n", "4")
    assert result.code == 0, result.err
    assert "prefers the chosen answer" in result.out and "of 4 held-out pairs toward the chosen answer" in result.out
    assert "base:" not in result.out  # the plain base: nothing to explain


def test_labelled_rows_report_how_good_and_bad_answers_moved(dpo_run, tmp_path):
    """KTO's kind of held-out data (answers marked good or bad) on the same run: the desirable ones must have gained more."""
    from sft_tui.trainer.evaluate import evaluate_run

    rows = []
    for line in (DEMO / "prefs_eval.jsonl").read_text().splitlines()[:12]:
        pair = json.loads(line)
        rows += [{"prompt": pair["prompt"], "completion": pair["chosen"], "label": True},
                 {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}]
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = evaluate_run(dpo_run, data=path, n=24)
    found = report["preference"]
    assert found["kind"] == "labelled" and (found["desirable"], found["undesirable"]) == (12, 12)
    assert report["examples"] == 12  # answers are generated for the desirable rows only: a bad answer is no reference
    assert found["separation"] >= 0.7
    assert report["tuned"]["desirable_loss"] < report["base"]["desirable_loss"]
    assert report["tuned"]["undesirable_loss"] - report["tuned"]["desirable_loss"] > report["base"]["undesirable_loss"] - report["base"]["desirable_loss"]


def test_dpo_from_an_sft_run_starts_from_and_is_compared_with_that_adapter(make_run, cli):
    """SFT then DPO, as a user types it: the run id becomes the adapter folder in the run's config, the reference is
    that adapter (the first step's loss is ln 2), the output holds no reference copy, and eval's base is the SFT run."""
    from sft_tui.core.runs.store import RunStore
    from sft_tui.trainer.evaluate import evaluate_run

    sft = make_run("training.max_steps=30", "training.lr=1e-3")
    assert run_trainer(sft).returncode == 0
    result = cli("train", str(DEMO / "demo_dpo.toml"), "--set", f"model.name={sft.read_summary().base_model}", "--set", f"model.adapter={sft.id}",
                 "--set", "method.sft_weight=0", "--set", "training.max_steps=6", "--set", "training.logging_steps=1", "--follow")
    assert result.code == 0, result.err
    dpo = next(r for r in RunStore().run_dirs() if r.id != sft.id)
    assert f'adapter = "{sft.adapter_dir}"' in dpo.read_config_text()
    log = (dpo.path / "train.log").read_text()
    assert f"from the adapter {sft.adapter_dir}" in log and "the SFT adapter it started from, frozen" in log
    first = dpo.read_new_rows().train[0]  # policy == reference at the first step only if the reference is the SFT adapter
    assert abs(first.loss - 0.6931) < 0.01 and first.objective_metrics["rewards/margins"] == 0.0
    assert not (dpo.adapter_dir / "ref").exists() and (dpo.adapter_dir / "adapter_model.safetensors").is_file()
    pairs = DEMO / "prefs_eval.jsonl"
    on_sft, on_dpo = evaluate_run(sft, data=pairs, n=6), evaluate_run(dpo, data=pairs, n=6)
    assert on_dpo["base_adapter"] == str(sft.adapter_dir) and on_dpo["base_model"] == f"the adapter this run started from (run {sft.id})"
    for key in ("response_loss", "preference_margin", "general_loss"):  # the DPO run's base column is the SFT run's tuned one
        assert on_dpo["base"][key] == pytest.approx(on_sft["tuned"][key], abs=2e-3), key
    assert on_dpo["base"]["response_loss"] != pytest.approx(on_sft["base"]["response_loss"], abs=1e-3)
    assert f"Base column: the adapter this run started from (run {sft.id})." in dpo.eval_markdown_path.read_text()


def test_tool_calling_examples_get_the_tool_call_checks(dpo_run, monkeypatch):
    from sft_tui.trainer import evaluate

    tools = json.dumps([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
    calls = [Example(f"tools.jsonl:{i}", (Turn("user", f"Weather in {city}?"), Turn("assistant", "", (ToolCall("get_weather", json.dumps({"city": city})),))),
                     tools=tools) for i, city in enumerate(("Oslo", "Lima", "Pune"), start=1)]
    plain = Example("tools.jsonl:4", (Turn("user", "Hi"), Turn("assistant", "Hello!")), tools=tools)
    monkeypatch.setattr(evaluate, "_held_out", lambda config, data: ([*calls, plain], "tools.jsonl"))
    report = evaluate.evaluate_run(dpo_run, n=4)
    assert report["checks"][-4:] == ["tool_call_json", "tool_call_declared", "tool_call_name", "tool_call_arguments"]
    assert report["tool_calls"] == 3 and "preference" not in report
    for side in ("base", "tuned"):  # the tiny model was never taught to call tools
        assert report[side]["tool_call_json"] == 0.0 and report[side]["tool_call_arguments"] == 0.0
    assert report["samples"][0]["reference"] == '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    assert "| tool call is valid JSON | 0% | 0% | same |" in dpo_run.eval_markdown_path.read_text()


def test_a_kto_run_is_scored_on_the_labelled_rows_its_training_held_out(make_run):
    """KTO on pairs: the held-out pairs, unpaired (each chosen answer desirable, each rejected one not), never a training row."""
    from sft_tui.trainer.evaluate import evaluate_run
    from sft_tui.trainer.objectives import split_preference_examples
    from sft_tui.trainer.preference_eval import held_out_preference_rows

    run = make_run(f"data.train={DEMO / 'prefs_train.jsonl'}", "data.eval=", "data.eval_fraction=0.05", "method.objective=kto",
                   "training.max_steps=4", "training.eval_steps=1000", "training.save_steps=1000")
    done = run_trainer(run)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    from sft_tui.trainer.inference import run_config

    config = run_config(run)
    held = held_out_preference_rows(config)
    trained_on = {(e.turns, e.label) for e in split_preference_examples(config)[1]}
    assert len(held) == 32 and not trained_on & {(e.turns, e.label) for e in held}
    report = evaluate_run(run, n=32)
    found = report["preference"]
    assert found["kind"] == "labelled" and (found["desirable"], found["undesirable"]) == (16, 16) and report["examples"] == 16
    assert 0.0 <= found["separation"] <= 1.0 and report["base"]["undesirable_loss"] is not None
    assert "A desirable answer gained more likelihood than an undesirable one in" in run.eval_markdown_path.read_text()


def test_a_tool_calling_run_is_asked_each_call_inside_its_held_out_conversations(make_run, tmp_path, monkeypatch):
    """glaive-style conversations (question, call, tool result, answer): each call is a question, asked with the tools declared.

    The tiny model cannot learn to call tools in a test's time, so the answers are scripted: the tuned model makes the
    reference call, the base answers in words. What is tested is that each question reaches the model as training
    rendered it and that its answer is scored against its own reference.
    """
    import re

    from sft_tui.trainer import evaluate
    from sft_tui.trainer.dataset import split_examples
    from sft_tui.trainer.inference import run_config
    from tests.unit.test_tool_data import sharegpt_tool_file

    run = make_run(f"data.train={sharegpt_tool_file(tmp_path, n=40, calling=20)}", "data.eval=", "data.eval_fraction=0.25",
                   "training.max_steps=2", "training.max_seq_length=256")
    done = run_trainer(run)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    held = split_examples(run_config(run))[2]
    calling = [e for e in held if any(t.tool_calls for t in e.turns)]
    asked, models = [], []

    def scripted(loaded, model, prompts, max_new_tokens, batch_done=lambda _n: None):
        models.append(len(models))
        texts = [loaded.tokenizer.decode(p) for p in prompts]
        asked.append(texts)
        answers = []
        for text in texts:
            city = re.search(r"weather in (city \d+)\?<\|im_end\|>\n<\|im_start\|>assistant\n$", text)
            call = f'<tool_call>{{"name": "get_weather", "arguments": {{"city": "{city.group(1)}"}}}}</tool_call>' if city else "Fine."
            answers.append(evaluate.Answer(call if len(models) == 2 else "It is sunny.", 5, True))
        return answers

    monkeypatch.setattr(evaluate, "_generate", scripted)
    report = evaluate.evaluate_run(run, n=len(held))
    assert report["tool_calls"] == len(calling) > 0 and report["examples"] == len(held)
    assert report["checks"][-4:] == ["tool_call_json", "tool_call_declared", "tool_call_name", "tool_call_arguments"]
    assert len(asked[0]) == len(held) + len(calling)  # each conversation's own answer, then each call inside one
    question = asked[0][len(held)]
    assert '"name": "get_weather"' in question and "get_time" in question  # the declared tools reach the prompt
    assert question.endswith(f"<|im_start|>user\n{calling[0].turns[0].content}<|im_end|>\n<|im_start|>assistant\n")
    assert report["base"]["tool_call_json"] == 0.0 and report["base"]["tool_call_declared"] == 0.0
    assert {k: report["tuned"][k] for k in report["checks"][-4:]} == dict.fromkeys(report["checks"][-4:], 1.0)
