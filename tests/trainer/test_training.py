"""Each method trains on the CPU and saves something that loads; metrics and summary hold their contract."""

from __future__ import annotations

import json

import pytest

from tests.trainer.conftest import run_trainer, train_rows

TRAIN_ROW_KEYS = {"step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_s", "tokens", "wall_s", "gpu_mem_gib", "time", "kind"}


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_method_trains_saves_and_reports(make_run, method):
    run = make_run(f"recipe={method}", "training.max_steps=6", "training.lr=1e-3")
    proc = run_trainer(run)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    status = run.read_status()
    assert (status.state, status.step, status.max_steps, status.error) == ("completed", 6, 6, None)
    rows = train_rows(run)
    assert rows and TRAIN_ROW_KEYS <= set(json.loads(run.metrics_path.read_text().splitlines()[1]))  # [0] is the "started" event
    assert [r.step for r in rows] == sorted(r.step for r in rows) and rows[-1].tokens > rows[0].tokens > 0
    summary = run.read_summary()
    assert summary.steps == 6 and summary.tokens == rows[-1].tokens and summary.final_loss == rows[-1].loss
    assert summary.wall_time_s > 0 and summary.tokens_per_s > 0 and summary.peak_gpu_reserved_gib is None  # no GPU here
    output = run.model_dir if method == "full" else run.adapter_dir
    assert (output / "tokenizer.json").is_file() and (output / "chat_template.jinja").is_file()
    assert (output / ("config.json" if method == "full" else "adapter_config.json")).is_file()


def test_adapter_loads_with_peft_and_generates(make_run, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = make_run("training.max_steps=4")
    assert run_trainer(run).returncode == 0
    tokenizer = AutoTokenizer.from_pretrained(run.adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), run.adapter_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "name=Ada"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_messages_data_with_an_eval_fraction_and_default_logging_density(make_run, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"say {i}"}, {"role": "assistant", "content": f"{i} {i} {i}"}]} for i in range(120)]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = make_run(f"data.train={data}", "data.eval=", "data.eval_fraction=0.1", "training.max_steps=100", "training.micro_batch_size=4")
    proc = run_trainer(run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    chunk = run.read_new_rows()
    assert len(chunk.train) >= 45  # about 50 rows per run by default
    assert chunk.evals
    assert "data: messages, 108 training rows, 12 eval rows" in proc.stdout
    assert run.read_summary().eval_rows == 12
