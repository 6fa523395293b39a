"""The objective's config fields: loss variants checked against the objective, model.adapter resolved to a real adapter
folder (a run id or a folder) or refused in one line, and preference runs named as such in run lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from sft_tui.core.config.load import load_run_config
from sft_tui.core.errors import UserError
from sft_tui.core.runs.preflight import resolve_adapter
from sft_tui.core.runs.store import RunStore

BASE = '[model]\nname = "smollm2-135m"\n[data]\ntrain = "t.jsonl"\n[method]\n'


def config(tmp_path: Path, method: str, *overrides: str):
    path = tmp_path / "run.toml"
    path.write_text(BASE + method)
    return load_run_config(path, list(overrides))


def test_loss_type_must_belong_to_the_objective(tmp_path):
    assert config(tmp_path, 'objective = "dpo"\nloss_type = "ipo"\n').config.method.loss_type == "ipo"
    assert config(tmp_path, 'objective = "kto"\nloss_type = "apo_zero_unpaired"\n').config.method.objective == "kto"
    with pytest.raises(UserError) as refused:
        config(tmp_path, 'objective = "kto"\nloss_type = "ipo"\n')
    assert "'ipo' is a dpo loss, but method.objective is 'kto'" in refused.value.what and "use one of kto, apo_zero_unpaired" in refused.value.fix
    assert refused.value.where.endswith("run.toml:7")
    with pytest.raises(UserError) as refused:
        config(tmp_path, 'objective = "orpo"\n', "method.loss_type=sigmoid")
    assert "applies to dpo and kto only" in refused.value.fix and refused.value.where == "--set"
    with pytest.raises(UserError) as refused:
        config(tmp_path, 'objective = "ppo"\n')
    assert "sft" in refused.value.fix and "dpo" in refused.value.fix


def test_an_adapter_is_a_run_id_or_a_folder_and_ends_up_as_an_absolute_folder(tmp_path, runs_home):
    store = RunStore()
    done = store.create_run(BASE + 'name = "lora"\n', "smollm2-135m", "lora", name="sft")
    (done.adapter_dir).mkdir()
    (done.adapter_dir / "adapter_config.json").write_text("{}")
    resolved = resolve_adapter(config(tmp_path, 'objective = "dpo"\n', f"model.adapter={done.id}"), store)
    assert resolved.config.model.adapter == str(done.adapter_dir.resolve())
    folder = resolve_adapter(config(tmp_path, "", f"model.adapter={done.adapter_dir}"), store)
    assert folder.config.model.adapter == str(done.adapter_dir.resolve())
    unfinished = store.create_run(BASE, "smollm2-135m", "lora", name="half")
    with pytest.raises(UserError) as refused:
        resolve_adapter(config(tmp_path, "", f"model.adapter={unfinished.id}"), store)
    assert f"run {unfinished.id} has no trained adapter" in refused.value.what and "sft-tui resume" in refused.value.fix
    with pytest.raises(UserError) as refused:
        resolve_adapter(config(tmp_path, 'name = "full"\n', f"model.adapter={done.id}"), store)
    assert "needs method.name = 'lora' or 'qlora'" in refused.value.what and "sft-tui merge" in refused.value.fix
    with pytest.raises(UserError) as refused:
        resolve_adapter(config(tmp_path, "", f"model.adapter={tmp_path}"), store)
    assert "holds no adapter_config.json" in refused.value.what


def test_preference_runs_are_listed_with_their_objective(runs_home):
    store = RunStore()
    store.create_run('[model]\nname = "m"\n[method]\nname = "qlora"\nobjective = "kto"\n', "m", "qlora", name="k")
    store.create_run('[model]\nname = "m"\n[method]\nname = "lora"\nobjective = "sft"\n', "m", "lora", name="s")
    assert sorted(o.method for o in store.list_runs()) == ["lora", "qlora+kto"]


def test_kto_on_a_file_of_one_label_is_refused_before_it_starts(tmp_path):
    from sft_tui.core.data.formats import DataError
    from sft_tui.core.data.preference import load_for_objective

    path = tmp_path / "good.jsonl"
    path.write_text('{"prompt": "q", "completion": "a", "label": true}\n' * 3)
    with pytest.raises(DataError) as refused:
        load_for_objective(path, "auto", "kto")
    assert "every row is labelled desirable: KTO needs answers of both labels" in refused.value.what


def test_preflight_refuses_kto_at_micro_batch_one_and_notes_an_sft_learning_rate(tmp_path, runs_home, cli):
    data = tmp_path / "kto.jsonl"
    data.write_text('{"prompt": "q", "completion": "a", "label": true}\n{"prompt": "q", "completion": "b", "label": false}\n')
    config = tmp_path / "run.toml"
    config.write_text(f'recipe = "lora"\n[model]\nname = "smollm2-135m"\n[data]\ntrain = "{data}"\n[method]\nobjective = "kto"\n'
                      "[training]\nmicro_batch_size = 1\n")
    result = cli("train", str(config))
    assert result.code == 2 and "KTO needs training.micro_batch_size >= 2" in result.err and "run.toml:9:" in result.err
    result = cli("train", str(config), "--set", "training.micro_batch_size=2")
    assert "is a rate for SFT; preference tuning usually runs far lower" in result.err  # (then: no model files here)


def test_sft_weight_belongs_to_dpo(tmp_path):
    assert config(tmp_path, 'objective = "dpo"\nsft_weight = 1.0\n').config.method.sft_weight == 1.0
    with pytest.raises(UserError) as refused:
        config(tmp_path, 'objective = "kto"\nsft_weight = 1.0\n')
    assert "adds an SFT loss to DPO, but method.objective is 'kto'" in refused.value.what


def test_the_launch_line_counts_the_rows_the_eval_split_holds_out(tmp_path, runs_home, cli):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(f'{{"prompt": "q{i}", "chosen": "good", "rejected": "bad"}}\n' for i in range(10)))
    config = tmp_path / "run.toml"
    config.write_text(f'[model]\nname = "smollm2-135m"\n[data]\ntrain = "{data}"\neval_fraction = 0.2\n[method]\nobjective = "dpo"\n')
    assert "data: pairwise, 8 training rows for DPO, 2 held out for eval (data.eval_fraction 0.2)" in cli("train", str(config)).err
    kto = cli("train", str(config), "--set", "method.objective=kto", "--set", "training.micro_batch_size=2")
    assert "data: pairwise, 16 training rows for KTO, 4 held out for eval" in kto.err  # pairs split first, then unpaired
