"""The decision wizard: the issue's four examples, 17 more scenarios, every rule exercised, the CLI."""

from __future__ import annotations

import json

import pytest

from sft_tui.core.errors import UserError
from sft_tui.core.decide.wizard import load_spec, recommend, validate_answers

SPEC = load_spec()

# (name, answers, approach, method, model, text that must appear in reasons or cautions)
SCENARIOS = [
    ("wiki support bot, weekly changes, citations, no data",
     dict(goal="knowledge", knowledge_changes="dynamic", needs_citations=True, labeled_examples=0), "rag", None, None, "only retrieval can show"),
    ("strict JSON extraction, 800 examples, prompting 40%, Llama 3.1 8B on 16 GB",
     dict(goal="task", labeled_examples=800, prompting_accuracy=0.4, model="llama3.1-8b", gpu_gib=16.0), "finetune", "qlora", "llama3.1-8b", "lora did not"),
    ("few-shot prompting meets the bar, 20 examples",
     dict(goal="task", prompting_meets_bar=True, labeled_examples=20), "icl", None, None, "prompting already meets the bar"),
    ("brand voice plus a daily catalogue, 1,500 dialogues, Mistral 7B on 48 GB",
     dict(goal="both", knowledge_changes="dynamic", labeled_examples=1500, model="mistral-7b-v0.3", gpu_gib=48.0), "rag+finetune", "lora", "mistral-7b-v0.3", "lora fits"),
    ("tone of voice, 2,000 examples, no model chosen",
     dict(goal="style", labeled_examples=2000), "finetune", "lora", None, "the fit was not checked"),
    ("classification, 30 examples, prompting 30%",
     dict(goal="task", labeled_examples=30, prompting_accuracy=0.3), "icl", None, None, "fewer than 50 labelled examples"),
    ("policy Q&A over fixed documents, low tolerance for made-up answers",
     dict(goal="knowledge", knowledge_changes="static", hallucination_tolerance="low"), "rag", None, None, "continued pre-training"),
    ("50k examples, forgetting acceptable, SmolLM2 360M on 80 GB",
     dict(goal="task", labeled_examples=50000, keep_general_abilities=False, model="smollm2-360m", gpu_gib=80.0), "finetune", "full", "smollm2-360m", "full fits"),
    ("50k examples, forgetting acceptable, Llama 3.1 8B on 24 GB: full does not fit",
     dict(goal="task", labeled_examples=50000, keep_general_abilities=False, model="llama3.1-8b", gpu_gib=24.0, seq_len=1024), "finetune", "lora", "llama3.1-8b", "full did not"),
    ("Llama 3.1 70B on a 24 GB card",
     dict(goal="task", labeled_examples=1000, model="llama3.1-70b", gpu_gib=24.0), "finetune", "qlora", "gemma3-27b", "not even QLoRA fits"),
    ("prompting works but prompts are long and costly",
     dict(goal="style", prompting_meets_bar=True, inference_cost_sensitive=True, labeled_examples=500), "icl", None, None, "every in-context example costs tokens"),
    ("cost-sensitive extraction, prompting short of the bar, 500 examples",
     dict(goal="task", inference_cost_sensitive=True, labeled_examples=500), "finetune", "lora", None, "smaller model"),
    ("facts wanted, 800 examples of answers",
     dict(goal="knowledge", labeled_examples=800), "rag", None, None, "teach the format of answers, not the facts"),
    ("style and facts with citations, no examples yet",
     dict(goal="both", knowledge_changes="static", needs_citations=True, labeled_examples=0), "rag", None, None, "labeled_examples = 0: not fine-tuning"),
    ("narrow task, 200 examples, prompting at 80% but short of the bar",
     dict(goal="task", labeled_examples=200, prompting_accuracy=0.8), "finetune", "lora", None, "hold out at least 10%"),
    ("broad assistant, 5,000 examples",
     dict(goal="style", task_diversity="broad", labeled_examples=5000), "finetune", "lora", None, "broad task needs far more"),
    ("retrieval team asked to fine-tune",
     dict(goal="task", labeled_examples=600, team_expertise="retrieval"), "finetune", "lora", None, "start with one small LoRA run"),
    ("fine-tuning team asked to build RAG",
     dict(goal="knowledge", knowledge_changes="dynamic", team_expertise="finetuning"), "rag", None, None, "budget time for chunking"),
    ("nothing answered: the defaults",
     dict(), "icl", None, None, "collect 100-500 good examples"),
    ("Gemma 2 9B, long examples, 12 GB: eager attention's seq x seq probabilities keep even QLoRA at 13.4 GiB at 4k tokens",
     dict(goal="task", labeled_examples=3000, model="gemma2-9b", gpu_gib=12.0, seq_len=4096), "finetune", "qlora", "gemma-7b", "not even QLoRA fits"),
    ("team with both skills, style, 1,000 examples, Qwen2.5 7B on 80 GB",
     dict(goal="style", labeled_examples=1000, team_expertise="both", model="qwen2.5-7b", gpu_gib=80.0), "finetune", "lora", "qwen2.5-7b", "lora fits"),
    ("support replies: 2,000 examples plus pairs of better/worse answers: SFT, then DPO",
     dict(goal="style", labeled_examples=2000, data_kind="examples+pairs"), "finetune", "lora", None, "the order InstructGPT, Zephyr and Tulu use"),
    ("chat product: 500 examples plus thumbs up/down: SFT, then KTO",
     dict(goal="task", labeled_examples=500, data_kind="examples+thumbs"), "finetune", "lora", None, "KTO needs some thumbs-down answers"),
    ("only pairs, 3,000 of them: SFT on the better answers, then DPO, or ORPO in one stage",
     dict(goal="style", labeled_examples=3000, data_kind="pairs"), "finetune", "lora", None, "ORPO (Hong et al. 2024)"),
    ("only thumbs up/down, 1,200 thumbs-up answers: SFT on them, then KTO",
     dict(goal="task", labeled_examples=1200, data_kind="thumbs"), "finetune", "lora", None, "KTO straight away works"),
    ("pairs, but prompting meets the bar",
     dict(goal="style", labeled_examples=3000, data_kind="pairs", prompting_meets_bar=True), "icl", None, None, "prompting already meets the bar"),
]


@pytest.mark.parametrize("name, answers, approach, method, model, text", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario(name, answers, approach, method, model, text):
    rec = recommend(validate_answers(answers, SPEC))
    assert (rec.approach, rec.method) == (approach, method), rec.reasons
    if model:
        assert rec.model == model
    everything = " | ".join(rec.reasons + rec.cautions + rec.next_steps)
    assert text in everything
    assert rec.reasons and rec.next_steps


def test_at_least_twenty_scenarios_including_the_issue_examples():
    assert len(SCENARIOS) >= 19


@pytest.mark.parametrize("name, answers, approach, method, model, text", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_every_reason_names_the_answers_that_drove_it(name, answers, approach, method, model, text):
    rec = recommend(validate_answers(answers, SPEC))
    for reason in rec.reasons:
        head = reason.split(":")[0]
        assert " = " in head or reason.startswith(("so:", "nothing calls")), reason


def test_every_rule_fires_in_some_scenario():
    fired = set()
    for _, answers, *_ in SCENARIOS:
        fired |= set(recommend(validate_answers(answers, SPEC)).fired)
    assert {r.id for r in SPEC.rules} == fired


def test_the_method_is_checked_against_memory_with_the_estimate_behind_it():
    rec = recommend(validate_answers(dict(goal="task", labeled_examples=800, model="llama3.1-8b", gpu_gib=16.0), SPEC))
    assert [(s.method, s.fits) for s in rec.method_steps] == [("lora", False), ("qlora", True)]
    assert rec.estimate["method"] == "qlora" and rec.estimate["fits"] is True and rec.estimate["gpu_gib"] == 16.0


def test_a_detected_gpu_is_used_when_no_size_is_given():
    rec = recommend(validate_answers(dict(goal="task", labeled_examples=800, model="llama3.1-8b"), SPEC), detected_gpu_gib=80.0)
    assert rec.method == "lora" and rec.estimate["gpu_gib"] == 80.0


def test_the_rules_file_is_documented():
    for q in SPEC.questions:
        assert q.text and q.help and q.why
    assert all(r.reason for r in SPEC.rules if r.need or r.block)


@pytest.mark.parametrize("raw, message", [
    ({"goal": "tasks"}, "goal must be one of knowledge, style, task, both; got 'tasks' (did you mean 'task'?)"),
    ({"goals": "task"}, "unknown answer 'goals' (did you mean 'goal'?)"),
    ({"labeled_examples": "many"}, "labeled_examples must be a whole number"),
    ({"labeled_examples": -5}, "labeled_examples must be at least 0"),
    ({"prompting_accuracy": 1.5}, "prompting_accuracy must be between 0 and 1"),
    ({"needs_citations": "yes"}, "needs_citations must be true or false"),
])
def test_bad_answers_are_refused_with_the_key_and_the_allowed_values(raw, message):
    with pytest.raises(UserError) as err:
        validate_answers(raw, SPEC)
    assert message in err.value.line()


def test_cli_json_record_and_starter_config(cli, tmp_path):
    answers = tmp_path / "answers.toml"
    answers.write_text('goal = "both"\nknowledge_changes = "dynamic"\nlabeled_examples = 1500\nmodel = "mistral-7b-v0.3"\ngpu_gib = 48\n'
                       'seq_len = 512\ndata = "train.jsonl"\n')
    record, config = tmp_path / "decision.md", tmp_path / "run.toml"
    result = cli("wizard", "--answers", str(answers), "--json", "--record", str(record), "--config-out", str(config))
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert set(data) >= {"approach", "method", "reasons", "cautions", "next_steps", "estimate"}
    assert (data["approach"], data["method"]) == ("rag+finetune", "lora") and data["estimate"]["peak_gib"] > 0
    text = record.read_text()
    assert text.startswith("# Adaptation decision: rag+finetune with lora on mistral-7b-v0.3") and "## Why" in text and "## Memory estimate" in text
    assert cli("config", "check", str(config)).code == 0
    assert 'recipe = "lora"' in config.read_text() and "max_seq_length = 512" in config.read_text()
    assert "training.max_seq_length = 512" in text and "| train.jsonl |" in text  # the record lists what the config sets
    again = cli("wizard", "--answers", str(answers), "--record", str(record))
    assert again.code == 2 and "not overwriting" in again.err and record.read_text() == text
    assert cli("wizard", "--answers", str(answers), "--record", str(record), "--force").code == 0


def test_cli_writes_no_config_when_fine_tuning_is_not_recommended(cli, tmp_path):
    answers = tmp_path / "a.toml"
    answers.write_text('goal = "knowledge"\nknowledge_changes = "dynamic"\n')
    result = cli("wizard", "--answers", str(answers), "--config-out", str(tmp_path / "run.toml"))
    assert result.code == 0 and "recommendation: rag" in result.out and not (tmp_path / "run.toml").exists()


def test_cli_bad_answers_file_is_one_line(cli, tmp_path):
    answers = tmp_path / "a.toml"
    answers.write_text('goal = "task"\nteam_expertise = "ml"\n')
    result = cli("wizard", "--answers", str(answers))
    assert result.code == 2 and result.err.count("\n") == 1 and result.err.startswith(f"error: {answers}:2: team_expertise must be one of")
    answers.write_text('goal = "task"\nmodel = "gpt-9"\nlabeled_examples = 500\ngpu_gib = 24\n')
    result = cli("wizard", "--answers", str(answers))
    assert result.code == 2 and "unknown model 'gpt-9'" in result.err
