"""Preference tuning on the CPU with the tiny model: DPO, KTO and ORPO train through TRL, stop and resume,
log their own metrics, start from an SFT run's adapter, and a mismatched file is refused before anything starts."""

from __future__ import annotations

import json

from sft_tui.core.runs.jobs import launch, request_stop, wait_until_inactive
from tests.trainer.conftest import DEMO, FINISH_S, START_S, events, run_trainer, state, train_rows, wait_for

PREFS = (f"data.train={DEMO / 'prefs_train.jsonl'}", f"data.eval={DEMO / 'prefs_eval.jsonl'}")


def test_dpo_stops_and_resumes_with_its_metrics_on_every_row(make_run):
    run = make_run(*PREFS, "method.objective=dpo", "training.lr=1e-3", "training.max_steps=30", "training.logging_steps=1",
                   "training.save_steps=1000", "training.eval_steps=15")
    launch(run)
    wait_for(lambda: (run.read_status().step or 0) >= 8, START_S, "eight DPO steps")
    request_stop(run)
    assert wait_until_inactive(run, FINISH_S) == "stopped"
    stopped_at = run.read_status().step
    assert run.latest_checkpoint().name == f"checkpoint-{stopped_at}"
    launch(run, resume=True)
    assert wait_until_inactive(run, FINISH_S) == "completed", (run.path / "train.log").read_text()[-2000:]
    rows = train_rows(run)
    assert [r.step for r in rows] == list(range(1, 31)), "every step once across the resume"
    assert all({"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(r.objective_metrics) for r in rows)
    # DPO's loss starts at ln 2 (policy == reference) and the margin grows as it learns the pairs
    assert abs(rows[0].loss - 0.6931) < 0.01 and rows[0].objective_metrics["rewards/margins"] == 0.0
    assert sum(r.objective_metrics["rewards/margins"] for r in rows[-10:]) / 10 > 1.0
    evals = list(run.read_new_rows().evals)
    assert evals and evals[-1].objective_metrics["rewards/accuracies"] >= 0.8
    log = (run.path / "train.log").read_text()
    assert "lora DPO on" in log and "reference model: the base with the adapter switched off" in log
    assert f"step 30/30  loss {rows[-1].loss:.3f}  margin +" in log  # the margin right after the loss: never cut at 80 columns
    assert [e.event for e in events(run)] == ["started", "stopped", "resumed", "completed"]
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()


def _kto_file(tmp_path):
    """KTO's own format: one answer per row, labelled desirable or not (the demo pairs, unpaired, 3 good : 2 bad)."""
    rows = []
    for index, line in enumerate((DEMO / "prefs_train.jsonl").read_text().splitlines()[:200]):
        pair = json.loads(line)
        good = index % 5 < 3
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen"] if good else pair["rejected"], "label": good})
    path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_kto_on_labelled_rows_and_orpo_on_pairs_complete_with_their_metrics(make_run, tmp_path):
    kto = make_run(f"data.train={_kto_file(tmp_path)}", "data.eval=", "data.eval_fraction=0.1", "method.objective=kto",
                   "training.max_steps=8", "training.logging_steps=1")
    result = run_trainer(kto)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = train_rows(kto)
    assert len(rows) == 8 and all({"kl", "rewards/chosen", "rewards/rejected"} <= set(r.objective_metrics) for r in rows)
    assert "lora KTO on" in result.stdout and "data: prompt_completion, 180 training rows, 20 eval rows" in result.stdout
    orpo = make_run(*PREFS, "method.objective=orpo", "training.max_steps=6", "training.logging_steps=1")
    result = run_trainer(orpo)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = train_rows(orpo)
    assert len(rows) == 6 and all({"rewards/accuracies", "log_odds_ratio", "nll_loss"} <= set(r.objective_metrics) for r in rows)
    assert "Tried to track the number of tokens" not in result.stdout + result.stderr  # no warning on every step
    assert "reference model" not in result.stdout  # ORPO has none


def test_a_mismatched_file_or_adapter_is_refused_in_one_line_before_anything_starts(runs_home, tiny_model, tmp_path, cli):
    config = DEMO / "demo_dpo.toml"
    kto = _kto_file(tmp_path)
    result = cli("train", str(config), "--set", f"model.name={tiny_model}", "--set", f"data.train={kto}", "--set", "data.eval=")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert "DPO learns from pairs (prompt, chosen, rejected), but kto.jsonl holds unpaired-labelled rows" in result.err
    assert "use method.objective = 'kto'" in result.err
    result = cli("train", str(config), "--set", f"model.name={tiny_model}", "--set", "model.adapter=no-such-run")
    assert result.code == 2 and "model.adapter = 'no-such-run' is neither a folder nor a run" in result.err
    result = cli("train", str(config), "--set", f"model.name={tiny_model}", "--set", "method.loss_type=kto")
    assert result.code == 2 and "method.loss_type = 'kto' is a kto loss, but method.objective is 'dpo'" in result.err
    assert not (runs_home / "runs").exists() or not any((runs_home / "runs").iterdir())


def test_preference_rows_with_tool_calls_are_refused_not_stripped():
    import pytest

    from sft_tui.core.data.formats import DataError, Example, ToolCall, Turn
    from sft_tui.trainer.objectives import preference_row

    calling = Example("f.jsonl:3", (Turn("user", "weather?"), Turn("assistant", "", (ToolCall("get_weather", "{}"),))), rejected="no")
    with pytest.raises(DataError) as refused:
        preference_row(calling, "dpo")
    assert refused.value.where == "f.jsonl:3" and "method.objective = 'sft'" in refused.value.fix

