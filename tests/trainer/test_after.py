"""After training, on a real tiny run: eval against the base, merge, the chat server, model card, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from sft_tui.core.runs.jobs import wait_until_inactive
from tests.trainer.conftest import DEMO, FINISH_S, START_S, run_trainer, wait_for


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    """One completed demo run (the demo's config and data, the tests' tiny model) shared by this module."""
    from sft_tui.core.config.load import dump_run_config, load_run_config
    from sft_tui.core.runs.store import RunStore

    home = tmp_path_factory.mktemp("after") / "home"
    resolved = load_run_config(DEMO / "demo.toml", [f"model.name={tiny_model}"])
    run = RunStore(home).create_run(dump_run_config(resolved.config), "tiny", "lora", name="after")
    done = run_trainer(run)
    assert done.returncode == 0, done.stdout + done.stderr
    return run


def running_job(run, kind: str, before: set[str]):
    """The new `kind` job once its own process has taken over (status running), else None.

    Only then has the starter finished: a terminal killed earlier takes the starter with it, and the job is never spawned.
    """
    from sft_tui.core.runs.liveness import effective_state

    for job in run.jobs():
        status, _ = job.status_or_reason()
        if job.kind == kind and job.name not in before and status is not None and effective_state(status) == "running":
            return job
    return None


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
    markdown = trained.eval_markdown_path.read_text()
    assert "| valid JSON |" in markdown and "## Answers side by side" in markdown
    card = trained.model_card_path.read_text()
    assert "## Evaluation against the base model" in card and "| response loss (held-out answers) |" in card


def test_eval_runs_as_a_job_is_deterministic_and_the_cli_prints_json(trained, home_of, cli):
    home_of(trained)
    first = cli("eval", trained.id, "--n", "4", "--json")
    assert first.code == 0, first.err
    second = json.loads(cli("eval", trained.id, "--n", "4", "--json").out)
    first = json.loads(first.out)
    assert [s["tuned"] for s in first["samples"]] == [s["tuned"] for s in second["samples"]]
    assert first["examples"] == 4 and first["base"]["general_loss"] is not None
    jobs = [j for j in trained.jobs() if j.kind == "eval"]
    status = jobs[-1].read_status()
    assert status.state == "completed" and status.result.startswith("response loss") and status.output == str(trained.eval_markdown_path)
    assert jobs[-1].log_path.is_file() and status.owner


def test_a_second_eval_while_one_runs_is_refused_in_one_line(trained, home_of, cli):
    from sft_tui.core.runs.jobs import job_request, start_job, wait_until_inactive

    home_of(trained)
    job = start_job(trained, job_request("eval", n=2))
    refused = cli("eval", trained.id, "--n", "2")
    assert refused.code == 2 and refused.err.count("\n") == 1
    assert f"an eval of run {trained.id} is already" in refused.err and job.name in refused.err
    assert wait_until_inactive(job, FINISH_S) == "completed"
    listed = json.loads(cli("runs", "--json").out)
    jobs = {j["id"]: j for j in listed[0]["jobs"]}
    assert jobs[job.name]["state"] == "completed" and jobs[job.name]["kind"] == "eval"


def test_merge_writes_a_model_that_generates_what_base_plus_adapter_generates(trained, tmp_path, home_of, cli):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sft_tui.core.config.load import config_from_toml_text

    home_of(trained)
    out = tmp_path / "merged"
    result = cli("merge", trained.id, "-o", str(out), "--dtype", "fp32")
    assert result.code == 0, result.err
    merged = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tokenizer.chat_template and (out / "README.md").is_file()
    base_name = config_from_toml_text(trained.read_config_text(), "config").model.name
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
    (out / "NOTES.txt").write_text("mine")
    forced = cli("merge", trained.id, "-o", str(out), "--force")  # bf16 over fp32: each file replaced whole, others kept
    assert forced.code == 0, forced.err
    assert (out / "NOTES.txt").read_text() == "mine" and '"bfloat16"' in (out / "config.json").read_text()
    assert not out.with_name(f".{out.name}.partial").exists()


def test_merge_goes_on_when_the_terminal_that_asked_for_it_is_killed(trained, tmp_path):
    out = tmp_path / "merged-detached"
    env = {**os.environ, "SFT_TUI_HOME": str(trained.path.parent.parent)}
    shell = subprocess.Popen(["bash", "-c", f"{sys.executable} -m sft_tui.cli merge {trained.id} -o {out}; sleep 600"], env=env,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = {j.name for j in trained.jobs()}
    job = wait_for(lambda: running_job(trained, "merge", before), START_S, "the merge job to start")
    os.killpg(shell.pid, signal.SIGKILL)  # the SSH session and everything in it are gone
    shell.wait()
    assert wait_until_inactive(job, FINISH_S) == "completed"
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()


def test_the_monitors_merge_key_survives_the_terminal_being_killed(trained, home_of):
    """`x` in the monitor of a real TUI in a real pseudo-terminal, then the terminal dies: merged/ still appears."""
    import fcntl
    import pty
    import struct
    import termios
    import threading

    home_of(trained)
    shutil.rmtree(trained.merged_dir, ignore_errors=True)
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))  # wide: every key in the footer
    tui = subprocess.Popen([sys.executable, "-m", "sft_tui.cli", "watch", trained.id], stdin=secondary, stdout=secondary, stderr=secondary,
                           start_new_session=True, env={**os.environ, "TERM": "xterm-256color"})
    os.close(secondary)
    screen = bytearray()

    def drain() -> None:  # a terminal that is never read blocks the app
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:
                return
            if not data:
                return
            screen.extend(data)

    threading.Thread(target=drain, daemon=True).start()
    try:
        wait_for(lambda: b"Merge" in screen, START_S, "the monitor to draw its keys")
        before = {j.name for j in trained.jobs()}
        os.write(primary, b"x")
        wait_for(lambda: running_job(trained, "merge", before), START_S, "the merge job to start")
    finally:
        os.killpg(tui.pid, signal.SIGKILL)  # the terminal, the TUI, the SSH session: all gone at once
        tui.wait()
        os.close(primary)
    job = running_job(trained, "merge", set())
    assert wait_until_inactive(job, FINISH_S) == "completed"
    assert (trained.merged_dir / "config.json").is_file() and job.read_status().output == str(trained.merged_dir)


def test_the_chat_job_streams_answers_from_both_models_and_ends_with_its_client(trained):
    from sft_tui.core.runs.jobs import start_job
    from sft_tui.tui.chat_backend import JobChatBackend

    backend = JobChatBackend(trained, start_job, max_new_tokens=24)
    note = backend.start()
    try:
        assert "cpu" in note
        answers = {}
        for which in ("tuned", "base"):
            text = "".join(backend.reply([{"role": "user", "content": "Turn these key=value lines into one JSON object.\n\nage=3"}], which))
            answers[which] = (text, backend.stopped)
        assert answers["tuned"][0].strip().startswith("{") and answers["tuned"][1] is True
        assert answers["tuned"] != answers["base"]
    finally:
        backend.close()
    assert wait_until_inactive(backend.job, FINISH_S) == "completed"
    assert backend.job.read_status().result == "answered 2 questions"


def test_a_run_without_a_trained_model_is_refused_in_one_line(runs_home, cli, tmp_path):
    from sft_tui.core.runs.schema import JobError, JobStatus, now_iso
    from sft_tui.core.runs.store import RunStore

    run = RunStore().create_run('[model]\nname = "x"\n[method]\nname = "lora"\n', "x", "lora", name="oom")
    run.write_status(JobStatus("failed", 1, now_iso(), now_iso(), step=3, max_steps=10, error=JobError("oom", "out of memory at step 3", "lower the batch")))
    for args in (["eval", run.id], ["merge", run.id, "-o", str(tmp_path / "m")], ["chat", run.id]):
        result = cli(*args)
        assert result.code == 2 and result.err.count("\n") == 1, args
        assert "has no trained model to use: it is failed (oom: out of memory at step 3)" in result.err
