"""The wizard's data question: examples -> SFT; pairs -> SFT then DPO; thumbs up/down -> SFT then KTO, into the files it writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sft_tui.core.config.load import load_run_config
from sft_tui.core.decide.starter import wizard_files
from sft_tui.core.decide.wizard import (
    load_spec,
    parse_answer,
    recommend,
    validate_answers,
)
from sft_tui.core.errors import UserError

SPEC = load_spec()
FINETUNE = dict(goal="task", labeled_examples=800)
SIZED = dict(model="qwen2.5-1.5b", gpu_gib=24.0, seq_len=512)


def files_for(answers: dict, folder: Path, config_name: str = "run.toml"):
    valid = validate_answers(answers, SPEC)
    rec = recommend(valid, SPEC)
    return rec, wizard_files(valid, rec, SPEC, config_dir=folder, cwd=folder, config_name=config_name)


def stage2_overrides(text: str) -> list[str]:
    """The --set values of the stage-2 command in a written config's header."""
    return re.findall(r"^#\s+--set (\S+)", text, flags=re.MULTILINE)


@pytest.mark.parametrize("kind, plan, trigger", [
    ("examples", ["sft"], "supervised fine-tuning (SFT) learns by imitating"),
    ("examples+pairs", ["sft", "dpo"], "InstructGPT, Zephyr and Tulu"),
    ("examples+thumbs", ["sft", "kto"], "Ethayarajh et al. 2024"),
    ("pairs", ["sft", "dpo"], "SFT on each pair's better answer first"),
    ("thumbs", ["sft", "kto"], "SFT on the thumbs-up answers first"),
])
def test_the_data_the_team_has_picks_the_plan_with_a_reason(kind, plan, trigger):
    rec = recommend(validate_answers(FINETUNE | dict(data_kind=kind), SPEC))
    assert [s.objective for s in rec.stages] == plan and rec.objective == plan[-1]
    reason = next(r for r in rec.reasons if r.startswith(f"data_kind = {kind}: "))
    assert trigger in reason
    assert rec.to_json()["objective"] == plan[-1] and [s["objective"] for s in rec.to_json()["stages"]] == plan
    if len(plan) > 1:
        assert rec.stages[1].start_from == "previous" and rec.outcome().endswith(f": SFT, then {plan[-1].upper()}")


def test_examples_are_the_default_and_leave_the_outcome_and_config_as_they_were(tmp_path):
    assert SPEC.question("data_kind").default == "examples"
    rec, files = files_for(FINETUNE | SIZED, tmp_path)
    assert rec.outcome() == "finetune with lora on qwen2.5-1.5b"
    assert "\nobjective = " not in files.config.text and "Stage" not in files.config.text
    assert "## Training plan" not in files.record and files.config.later_stages == ()


def test_without_fine_tuning_there_is_no_plan_and_no_preference_caution():
    rec = recommend(validate_answers(dict(goal="style", labeled_examples=3000, data_kind="pairs", prompting_meets_bar=True), SPEC))
    assert rec.approach == "icl" and rec.objective is None and rec.stages == ()
    assert not any("ORPO" in c or "pairs" in c for c in rec.cautions)
    assert not {"pairs-only-sft-on-better-then-dpo", "pairs-only-alternatives"} & set(rec.fired)


def test_only_pairs_says_the_alternatives_orpo_and_dpo_from_an_instruct_model():
    rec = recommend(validate_answers(FINETUNE | dict(data_kind="pairs"), SPEC))
    caution = next(c for c in rec.cautions if c.startswith("with only pairs"))
    assert "instruct (chat) model, DPO straight away" in caution and 'method.objective = "orpo"' in caution
    assert "data inspect" in " ".join(rec.cautions)  # identical pairs and the longer-answer bias


def test_a_plan_is_checked_against_memory_at_its_heaviest_stage():
    # SFT with LoRA on an 8B model fits 18 GiB (17.4 estimated); DPO (both answers of a pair, and a reference forward: 18.5) does not
    sft = recommend(validate_answers(FINETUNE | dict(model="llama3.1-8b", gpu_gib=18.0), SPEC))
    dpo = recommend(validate_answers(FINETUNE | dict(model="llama3.1-8b", gpu_gib=18.0, data_kind="examples+pairs"), SPEC))
    assert sft.method == "lora" and dpo.method == "qlora"
    assert [(s.method, s.fits) for s in dpo.method_steps] == [("lora", False), ("qlora", True)]
    assert "(DPO stage)" in dpo.method_steps[0].note and "its DPO stage" in " ".join(dpo.reasons)


def test_two_stage_config_is_stage_1_and_its_header_runs_stage_2_through_the_loader(tmp_path):
    _, files = files_for(FINETUNE | SIZED | dict(data_kind="examples+pairs", data="examples.jsonl"), tmp_path)
    text = files.config.text
    path = tmp_path / "run.toml"
    path.write_text(text)
    stage1 = load_run_config(path).config
    assert (stage1.method.objective, stage1.model.adapter, stage1.data.train) == ("sft", "", str(tmp_path / "examples.jsonl"))
    assert "# Stage 1 of 2: SFT on the examples" in text and "#   sft-tui train run.toml \\" in text
    assert '# adapter = "RUN"' in text  # where a reader of [model] looks for it

    overrides = stage2_overrides(text)
    assert overrides[:4] == ["method.objective=dpo", "model.adapter=RUN", "training.lr=5e-6", "data.train=PAIRS_FILE"]
    assert files.config.later_stages == ("sft-tui train run.toml " + " ".join(f"--set {o}" for o in overrides),)
    stage2 = load_run_config(path, [o.replace("PAIRS_FILE", str(tmp_path / "pairs.jsonl")) for o in overrides]).config
    assert (stage2.method.objective, stage2.model.adapter, stage2.training.lr) == ("dpo", "RUN", 5e-6)
    assert stage2.data.train == str(tmp_path / "pairs.jsonl") and stage2.method.name == stage1.method.name
    effective = stage1.training.micro_batch_size * stage1.training.gradient_accumulation_steps
    assert stage2.training.micro_batch_size * stage2.training.gradient_accumulation_steps >= effective

    assert "## Training plan\n\n1. SFT on the examples, from the model\n2. DPO on the pairs, from stage 1's adapter" in files.record
    assert f"Stage 2, once stage 1 has finished: `{files.config.later_stages[0]}`" in files.record
    assert "RUN is stage 1's run id" in files.record and "next: sft-tui train run.toml; stage 2" in files.config.next_step("run.toml")


def test_stage_2_gets_its_own_micro_batch_when_dpo_needs_more_memory(tmp_path):
    from sft_tui.core.estimate.memory import estimate_memory, settings_from_run_config
    from sft_tui.core.models.modelspec import resolve_model

    # micro-batch 4 at 1,024 tokens: SFT 8.2 GiB, DPO 9.6 GiB; a 9 GiB GPU makes stage 2 halve it
    _, files = files_for(FINETUNE | dict(model="qwen2.5-3b", gpu_gib=9.0, seq_len=1024, data="pairs.jsonl", data_kind="pairs"), tmp_path)
    path = tmp_path / "run.toml"
    path.write_text(files.config.text)
    overrides = stage2_overrides(files.config.text)
    stage1 = load_run_config(path).config
    stage2 = load_run_config(path, overrides).config
    assert stage2.training.micro_batch_size < stage1.training.micro_batch_size, overrides
    assert not any(o.startswith("data.train=") for o in overrides)  # only pairs: both stages read the same file
    settings = settings_from_run_config(stage2)
    assert estimate_memory(resolve_model("qwen2.5-3b"), settings).peak_gib <= 9.0  # the stage-2 command fits the GPU answered
    assert "# stage 2: sized for a 9 GiB GPU" in files.config.text


def test_thumbs_plan_stage_2_is_kto_on_the_same_file(tmp_path):
    _, files = files_for(FINETUNE | dict(data_kind="thumbs", model="qwen2.5-0.5b", data="ratings.jsonl"), tmp_path)
    overrides = stage2_overrides(files.config.text)
    assert overrides == ["method.objective=kto", "model.adapter=RUN", "training.lr=5e-6"]
    path = tmp_path / "run.toml"
    path.write_text(files.config.text)
    assert load_run_config(path, overrides).config.method.objective == "kto"


def test_full_fine_tuning_stage_2_starts_from_the_model_folder_not_an_adapter(tmp_path):
    rec, files = files_for(dict(goal="task", labeled_examples=50000, keep_general_abilities=False, model="smollm2-360m",
                                gpu_gib=80.0, data="p.jsonl", data_kind="pairs"), tmp_path)
    assert rec.method == "full"
    overrides = stage2_overrides(files.config.text)
    assert "model.name=RUN_MODEL" in overrides and "training.lr=5e-7" in overrides and not any("adapter" in o for o in overrides)
    assert any("frozen copy" in c for c in rec.cautions) and "from stage 1's model" in files.record
    path = tmp_path / "run.toml"
    path.write_text(files.config.text)
    assert load_run_config(path, overrides).config.method.objective == "dpo"


def test_the_data_question_takes_a_choice_or_its_number_and_refuses_a_typo():
    question = SPEC.question("data_kind")
    assert parse_answer(question, "4") == "pairs" and parse_answer(question, "thumbs") == "thumbs"
    assert parse_answer(question, "9") == "9"  # out of range: left for validation to refuse
    with pytest.raises(UserError) as err:
        validate_answers({"data_kind": "pair"}, SPEC)
    assert "data_kind must be one of examples, examples+pairs, examples+thumbs, pairs, thumbs; got 'pair' (did you mean 'pairs'?)" in err.value.line()


def test_a_plan_rule_with_an_unknown_objective_is_refused_naming_the_rule(tmp_path):
    text = (Path(__file__).parents[2] / "presets" / "wizard.toml").read_text()
    bad = tmp_path / "wizard.toml"
    bad.write_text(text.replace('plan = ["sft", "kto"]\ntrains_on = ["the examples"', 'plan = ["sft", "ppo"]\ntrains_on = ["the examples"', 1))
    with pytest.raises(UserError, match="rule examples-and-thumbs-sft-then-kto: plan must list objectives"):
        load_spec(bad)


def test_cli_answers_file_json_and_the_two_files(cli, tmp_path):
    answers = tmp_path / "answers.toml"
    answers.write_text('goal = "style"\nlabeled_examples = 2000\ndata_kind = "examples+thumbs"\nmodel = "qwen2.5-1.5b"\n'
                       'gpu_gib = 24\nseq_len = 512\ndata = "examples.jsonl"\n')
    record, config = tmp_path / "decision.md", tmp_path / "run.toml"
    result = cli("wizard", "--answers", str(answers), "--json", "--record", str(record), "--config-out", str(config))
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["objective"] == "kto" and [s["objective"] for s in data["stages"]] == ["sft", "kto"]
    assert "stage 2 when it has finished: see the header of" in result.err
    assert f"#   sft-tui train {config} \\" in config.read_text()  # the command names the file as it was given
    assert cli("config", "check", str(config)).code == 0
    sets = [a for o in stage2_overrides(config.read_text()) for a in ("--set", o.replace("RATINGS_FILE", "examples.jsonl"))]
    assert cli("config", "check", str(config), *sets).code == 0
    assert record.read_text().startswith("# Adaptation decision: finetune with lora on qwen2.5-1.5b: SFT, then KTO")
    assert "| What data does the team have? | examples+thumbs |" in record.read_text()
    assert "recommendation: finetune with lora on qwen2.5-1.5b: SFT, then KTO" in cli("wizard", "--answers", str(answers)).out
