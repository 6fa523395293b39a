"""After training, on a real tiny run: eval against the base, merge, the chat server, model card, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.trainer.conftest import DEMO, run_trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    """One completed demo run (the demo's config and data, the tests' tiny model) shared by this module."""
    from sft_tui.core.config import dump_run_config, load_run_config
    from sft_tui.core.runs import RunStore

    home = tmp_path_factory.mktemp("after") / "home"
    resolved = load_run_config(DEMO / "demo.toml", [f"model.name={tiny_model}"])
    run = RunStore(home).create_run(dump_run_config(resolved.config), "tiny", "lora", name="after")
    done = run_trainer(run)
    assert done.returncode == 0, done.stdout + done.stderr
    return run


@pytest.fixture()
def home_of(monkeypatch):
    def use(run):
        monkeypatch.setenv("SFT_TUI_HOME", str(run.path.parent.parent))
        return run
    return use


def test_eval_shows_the_tuned_model_beats_its_base_on_the_demo_task(trained):
    from sft_tui.trainer.evaluate import evaluate_run

    report = evaluate_run(trained, n=20)
    base, tuned = report["base"], report["tuned"]
    print(json.dumps({"base": base, "tuned": tuned}))
    assert report["checks"] == ["exact_match", "json_valid", "json_keys"]  # auto: the demo's answers are JSON
    assert tuned["response_loss"] < base["response_loss"]
    assert tuned["json_valid"] > base["json_valid"] and tuned["stopped_share"] > base["stopped_share"]
    assert len(report["samples"]) == 20 and report["samples"][0]["where"].endswith("eval.jsonl:1")
    assert json.loads(trained.eval_report_path.read_text())["tuned"] == tuned
    markdown = (trained.eval_dir / "report.md").read_text()
    assert "| valid JSON |" in markdown and "## Answers side by side" in markdown
    card = trained.model_card_path.read_text()
    assert "## Evaluation against the base model" in card and "| response loss (held-out answers) |" in card


def test_eval_is_deterministic_and_the_cli_prints_json(trained, home_of, cli):
    home_of(trained)
    first = json.loads(cli("eval", trained.id, "--n", "4", "--json").out)
    second = json.loads(cli("eval", trained.id, "--n", "4", "--json").out)
    assert [s["tuned"] for s in first["samples"]] == [s["tuned"] for s in second["samples"]]
    assert first["examples"] == 4 and first["base"]["general_loss"] is not None


def test_merge_writes_a_model_that_generates_what_base_plus_adapter_generates(trained, tmp_path, home_of, cli):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sft_tui.core.config import config_from_toml_text

    home_of(trained)
    out = tmp_path / "merged"
    result = cli("merge", trained.id, "-o", str(out), "--dtype", "fp32")
    assert result.code == 0, result.err
    merged = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tokenizer.chat_template and (out / "README.md").is_file()
    base_name = config_from_toml_text(trained.config_path.read_text(), "config").model.name
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_name, local_files_only=True), trained.adapter_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Turn these key=value lines into one JSON object.\n\nage=3\ncity=Oslo"}],
                                           tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        a = merged.generate(**ids, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        b = reference.generate(**ids, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert a.tolist() == b.tolist()
    again = cli("merge", trained.id, "-o", str(out))
    assert again.code == 2 and again.err.count("\n") == 1 and "output folder is not empty" in again.err


def test_the_chat_server_streams_answers_from_both_models(trained):
    server = subprocess.Popen([sys.executable, "-m", "sft_tui.trainer.chat_server", str(trained.path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    try:
        assert json.loads(server.stdout.readline())["ready"] is True
        answers = {}
        for which in ("tuned", "base"):
            request = {"messages": [{"role": "user", "content": "Turn these key=value lines into one JSON object.\n\nage=3"}], "model": which,
                       "max_new_tokens": 24}
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            pieces, message = [], json.loads(server.stdout.readline())
            while "token" in message:
                pieces.append(message["token"])
                message = json.loads(server.stdout.readline())
            assert message["done"] is True
            answers[which] = ("".join(pieces), message["stopped"])
        assert answers["tuned"][0].strip().startswith("{") and answers["tuned"][1] is True
        assert answers["tuned"] != answers["base"]
    finally:
        server.stdin.close()
        server.wait(timeout=30)


def test_a_run_without_a_trained_model_is_refused_in_one_line(runs_home, cli, tmp_path):
    from sft_tui.core.runs import RunError, RunStatus, RunStore, now_iso

    run = RunStore().create_run('[model]\nname = "x"\n[method]\nname = "lora"\n', "x", "lora", name="oom")
    run.write_status(RunStatus("failed", 1, now_iso(), now_iso(), 3, 10, RunError("oom", "out of memory at step 3", "lower the batch")))
    for args in (["eval", run.id], ["merge", run.id, "-o", str(tmp_path / "m")], ["chat", run.id]):
        result = cli(*args)
        assert result.code == 2 and result.err.count("\n") == 1, args
        assert "has no trained model to use: it is failed (oom: out of memory at step 3)" in result.err
