"""Tool-calling SFT (issue 15): the tools reach the chat template, the loss covers the assistant's calls and answer but
not the tool results or the user, a template that cannot show tools is refused in one line, and a run trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_tui.core.data.formats import DataError
from sft_tui.core.errors import UserError
from tests.trainer.conftest import DEMO, run_trainer
from tests.unit.test_tool_data import WEATHER, sharegpt_tool_file, write_jsonl

NO_TOOLS_TEMPLATE = (  # the ChatML template as it was before tools: it renders every message's text and nothing else
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def config_for(tiny_model: Path, data: Path, *overrides: str):
    from sft_tui.core.config.load import load_run_config

    return load_run_config(DEMO / "demo.toml", [f"model.name={tiny_model}", f"data.train={data}", "data.eval=", "data.eval_fraction=0",
                                                *overrides]).config


def tokenizer_for(tiny_model: Path, config):
    from sft_tui.trainer.model_setup import load_tokenizer

    return load_tokenizer(tiny_model, config)


def test_the_prompt_holds_the_tools_and_the_loss_covers_the_calls_and_answer_but_not_the_results(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from sft_tui.trainer.dataset import build_datasets

    config = config_for(tiny_model, sharegpt_tool_file(tmp_path, n=8, calling=4), "training.max_seq_length=512")
    tokenizer = tokenizer_for(tiny_model, config)
    train, evaluation, report = build_datasets(config, tokenizer)
    assert (report.format, report.train_rows, report.truncated, evaluation) == ("sharegpt", 8, 0, None)
    args = SFTConfig(output_dir=str(tmp_path / "out"), max_length=512, completion_only_loss=True, report_to="none", use_cpu=True)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args, train_dataset=train, processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    rows = {}
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        text = tokenizer.decode([t for t in ids if t != tokenizer.pad_token_id])
        learnt = tokenizer.decode([t for t, label in zip(ids, labels) if label != -100])
        rows[text] = learnt
    called = next((text, learnt) for text, learnt in rows.items() if "city 0?" in text)
    text, learnt = called
    assert WEATHER["description"] in text and '"name": "get_weather"' in text  # the declared tools, rendered
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "city 0"}}</tool_call>' in learnt  # the call is learnt
    assert "It is 0 degrees and clear in city 0." in learnt  # and so is the answer
    assert '"sky": "clear"' in text and "sky" not in learnt  # the tool's result is seen, never learnt
    assert "What is the weather" not in learnt and "Current weather" not in learnt  # nor the user or the tools
    assert learnt.count("<|im_end|>") == 2  # each assistant turn learns to stop


def test_a_template_that_cannot_show_tools_is_refused_in_one_line(tiny_model, tmp_path):
    from sft_tui.trainer.dataset import build_datasets

    config = config_for(tiny_model, sharegpt_tool_file(tmp_path, n=4, calling=2))
    tokenizer = tokenizer_for(tiny_model, config)
    tokenizer.chat_template = NO_TOOLS_TEMPLATE
    with pytest.raises(UserError) as caught:
        build_datasets(config, tokenizer)
    assert caught.value.line() == (f"model.chat_template: the data calls tools but the chat template of {tiny_model} cannot show them: "
                                   "it leaves out the tool definitions; set model.chat_template to a template that renders tools "
                                   "(e.g. the instruct model's), or train on rows without tools")


def test_a_template_that_rewrites_past_turns_trains_one_row_per_assistant_turn(tiny_model, tmp_path):
    from sft_tui.core.data.formats import load_examples
    from sft_tui.trainer.model_setup import CHATML_TEMPLATE
    from sft_tui.trainer.tool_rows import tokenized_rows

    config = config_for(tiny_model, sharegpt_tool_file(tmp_path, n=1, calling=1))
    tokenizer = tokenizer_for(tiny_model, config)
    # like templates that drop past reasoning: an assistant turn before the last renders shorter once the talk goes on
    tokenizer.chat_template = CHATML_TEMPLATE.replace("{% if message['tool_calls'] %}", "{% if message['tool_calls'] and loop.last %}")
    (example,) = load_examples(Path(config.data.train)).examples
    first, second = tokenized_rows(example, tokenizer)
    learnt = [tokenizer.decode([t for t, m in zip(row["input_ids"], row["completion_mask"]) if m]) for row in (first, second)]
    assert learnt[0].startswith("<tool_call>") and "It is 0 degrees" not in learnt[0]
    assert learnt[1] == "It is 0 degrees and clear in city 0.<|im_end|>\n"


def test_a_call_whose_arguments_are_not_json_stops_the_run_at_its_row(tiny_model, tmp_path):
    from sft_tui.trainer.dataset import build_datasets

    rows = [{"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": '{"name": "get_weather", "arguments": "{city"}'},
                               {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}], "tools": json.dumps([WEATHER])}]
    config = config_for(tiny_model, write_jsonl(tmp_path / "bad.jsonl", rows))
    with pytest.raises(DataError) as caught:
        build_datasets(config, tokenizer_for(tiny_model, config))
    assert caught.value.line().startswith(f"{tmp_path / 'bad.jsonl'}:1: a call to 'get_weather' has arguments that are not a JSON object")


def test_a_tool_calling_run_trains_and_saves(make_run, tmp_path):
    run = make_run(f"data.train={sharegpt_tool_file(tmp_path, n=24, calling=12)}", "data.eval=", "data.eval_fraction=0.25",
                   "training.max_steps=3", "training.max_seq_length=256")
    proc = run_trainer(run)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "data: sharegpt, 18 training rows, 6 eval rows" in proc.stdout
    assert "tool-calling rows: " in proc.stdout and "the loss covers every call and answer the assistant makes, not the tool results" in proc.stdout
    summary = run.read_summary()
    assert (summary.state, summary.steps) == ("completed", 3) and summary.final_loss is not None
    assert (run.adapter_dir / "adapter_config.json").is_file()


def test_preflight_refuses_tool_rows_for_a_template_that_never_reads_tools(runs_home, tiny_model, tmp_path, cli):
    from tests.trainer.conftest import DEMO

    plain = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    config = tmp_path / "run.toml"
    config.write_text((DEMO / "demo.toml").read_text())
    data = sharegpt_tool_file(tmp_path, n=12, calling=6)
    result = cli("train", str(config), "--set", f"model.name={tiny_model}", "--set", f"data.train={data}", "--set", "data.eval=",
                 "--set", f"model.chat_template={plain}")
    assert result.code == 2 and "the data calls tools but the chat template of" in result.err and "never reads `tools`" in result.err
    assert len(result.err.strip().splitlines()[-1:]) == 1 and not (runs_home / "runs").exists()


def test_tool_rows_cut_before_their_first_answer_token_fail_as_data_with_the_length_to_use(make_run, tmp_path):
    run = make_run(f"data.train={sharegpt_tool_file(tmp_path, n=12, calling=12)}", "data.eval=", "data.eval_fraction=0",
                   "training.max_steps=2", "training.max_seq_length=16")
    proc = run_trainer(run)
    assert proc.returncode != 0
    status = run.read_status()
    assert status.error.kind == "data" and "before its first answer token" in status.error.message
    assert "raise training.max_seq_length to at least" in status.error.hint
