"""Run config: merge order, origins, validation errors with field path and line, dump round trip."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sft_tui.core.config import load as cfgmod
from sft_tui.core.models import presets
from sft_tui.core.errors import UserError

BASE = '[model]\nname = "smollm2-135m"\n\n[data]\ntrain = "train.jsonl"\n'


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, *overrides: str) -> cfgmod.ResolvedConfig:
    return cfgmod.load_run_config(write(tmp_path, text), list(overrides))


def error_of(tmp_path: Path, text: str, *overrides: str) -> str:
    with pytest.raises(UserError) as err:
        load(tmp_path, text, *overrides)
    line = err.value.line()
    assert "\n" not in line
    return line


def test_defaults_recipe_file_and_overrides_merge_in_order(tmp_path):
    text = 'recipe = "qlora"\n' + BASE + "\n[training]\nlr = 1e-4\nepochs = 3\n"
    resolved = load(tmp_path, text, "training.epochs=5", "method.lora_r=64", "output.name=my run")
    c = resolved.config
    assert c.method.name == "qlora" and c.training.optimizer == "paged_adamw_8bit"  # from the recipe
    assert c.training.lr == 1e-4  # the file beats the recipe
    assert c.training.epochs == 5.0 and c.method.lora_r == 64  # --set beats the file
    assert c.output.name == "my run"  # bare words need no quotes
    assert c.training.seed == 42  # default
    o = resolved.origins
    assert o["training.seed"] == "default"
    recipe_text = (presets.presets_dir() / "recipes" / "qlora.toml").read_text().splitlines()
    line = int(o["training.optimizer"].rsplit(":", 1)[1])
    assert o["training.optimizer"].startswith(str(presets.presets_dir() / "recipes" / "qlora.toml"))
    assert recipe_text[line - 1].startswith("optimizer =")
    assert o["training.lr"] == f"{tmp_path / 'run.toml'}:9"
    assert o["training.epochs"] == "--set"


def test_relative_data_paths_are_taken_from_the_config_folder(tmp_path):
    (tmp_path / "train.jsonl").write_text("{}\n")
    resolved = load(tmp_path, BASE)
    assert resolved.config.data.train == str(tmp_path / "train.jsonl")
    assert resolved.notes == ()


def test_missing_data_file_is_a_note_not_an_error(tmp_path):
    resolved = load(tmp_path, BASE)
    assert "does not exist yet" in resolved.notes[0]


def test_target_modules_accepts_a_string_or_a_list(tmp_path):
    assert load(tmp_path, BASE, 'method.target_modules="all-linear"').config.method.target_modules == ("all-linear",)
    assert load(tmp_path, BASE, 'method.target_modules=["q_proj","v_proj"]').config.method.target_modules == ("q_proj", "v_proj")


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("[training]\nlr_rate = 1\n", ":8: unknown key training.lr_rate (did you mean 'training.lr'?)"),
        ("[training]\nlearning_rate = 1e-4\n", "did you mean 'training.lr'?"),
        ("[training]\nlora_r = 8\n", "did you mean 'method.lora_r'?"),
        ("[trainig]\nlr = 1\n", "unknown key 'trainig' (did you mean 'training'?)"),
        ('[training]\nlr = "fast"\n', "training.lr must be a number, got 'fast' (string)"),
        ("[training]\nlr = 0\n", "training.lr must be > 0"),
        ("[training]\nmicro_batch_size = 2.5\n", "training.micro_batch_size must be an integer"),
        ("[training]\ngradient_checkpointing = 1\n", "must be true or false"),
        ('[training]\noptimizer = "adam"\n', "training.optimizer must be one of"),
        ("[method]\nlora_dropout = 1.5\n", "method.lora_dropout must be <= 0.9"),
        ("[method]\ntarget_modules = []\n", "non-empty list of strings"),
        ('training = "x"\n', ":7: unknown key data.training (did you mean 'data.train'?)"),  # BASE ends in [data]
    ],
)
def test_mistakes_give_one_line_with_field_and_line(tmp_path, extra, expected):
    line = error_of(tmp_path, BASE + "\n" + extra)
    assert expected in line
    assert str(tmp_path / "run.toml") in line


def test_a_section_written_as_a_value_is_refused(tmp_path):
    assert "training must be a section" in error_of(tmp_path, 'training = "x"\n' + BASE)


def test_top_level_field_is_pointed_at_its_section(tmp_path):
    assert "under [training]" in error_of(tmp_path, "lr = 1\n" + BASE)


def test_broken_toml_names_the_line(tmp_path):
    line = error_of(tmp_path, BASE + "[training\nlr = 1\n")
    assert f"{tmp_path / 'run.toml'}:6: invalid TOML" in line


def test_required_fields(tmp_path):
    assert "model.name is required" in error_of(tmp_path, '[data]\ntrain = "x.jsonl"\n')
    assert "data.train is required" in error_of(tmp_path, '[model]\nname = "x"\n')


def test_qlora_recipe_with_full_method_is_a_contradiction(tmp_path):
    line = error_of(tmp_path, 'recipe = "qlora"\n' + BASE + '[method]\nname = "full"\n')
    assert "method.name = 'full' contradicts method.quant_type" in line
    assert "qlora.toml" in line


def test_full_method_with_explicit_quantisation_is_a_contradiction(tmp_path):
    line = error_of(tmp_path, BASE, "method.name=full", "method.quant_type=nf4")
    assert "cannot be fully fine-tuned" in line


def test_eval_file_and_fraction_contradict(tmp_path):
    assert "both choose the eval split" in error_of(tmp_path, BASE + 'eval = "e.jsonl"\neval_fraction = 0.1\n')


def test_override_errors(tmp_path):
    assert "has no '='" in error_of(tmp_path, BASE, "training.lr")
    assert "unknown key training.nope" in error_of(tmp_path, BASE, "training.nope=1")
    assert "--set" in error_of(tmp_path, BASE, "training.lr=-1")


def test_unknown_recipe(tmp_path):
    assert "unknown recipe 'lorra' (did you mean 'lora'?)" in error_of(tmp_path, 'recipe = "lorra"\n' + BASE)


@dataclass(frozen=True)
class FakeGpu:
    index: int
    name: str
    compute_capability: str
    bf16_supported: bool


def test_bf16_on_a_gpu_without_bf16_is_refused(tmp_path):
    resolved = load(tmp_path, BASE, "training.precision=bf16")
    t4 = FakeGpu(0, "Tesla T4", "7.5", False)
    with pytest.raises(UserError, match=r"GPU 0 \(Tesla T4, compute capability 7.5\) has no bf16.*fp16"):
        cfgmod.check_precision_against_gpus(resolved.config, [t4], resolved.origins["training.precision"])
    cfgmod.check_precision_against_gpus(resolved.config, [FakeGpu(0, "A100", "8.0", True)], "x")
    cfgmod.check_precision_against_gpus(load(tmp_path, BASE).config, [t4], "x")  # auto is fine


def test_dump_round_trips(tmp_path):
    resolved = load(tmp_path, 'recipe = "lora"\n' + BASE, 'output.notes=say "hi"\\nbye', "method.target_modules=[\"q_proj\"]")
    text = cfgmod.dump_run_config(resolved.config, resolved.origins, header="resolved by a test")
    assert text.startswith("# resolved by a test")
    back = cfgmod.config_from_toml_text(text, "dumped.toml")
    assert back == resolved.config


@pytest.mark.parametrize("recipe", [p.name for p in presets.list_recipe_presets()])
def test_every_recipe_preset_loads_and_says_how_to_run_it(tmp_path, recipe):
    path = presets.presets_dir() / "recipes" / f"{recipe}.toml"
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("# ") and "sft-tui train" in header
    resolved = load(tmp_path, f'recipe = "{recipe}"\n' + BASE)
    assert resolved.config.method.name == recipe


def test_recipes_cover_the_three_methods():
    assert {p.name for p in presets.list_recipe_presets()} >= {"lora", "qlora", "full"}


def test_example_config_is_valid():
    example = presets.assets_dir() / "examples" / "run.toml"
    assert cfgmod.load_run_config(example).config.model.name == "smollm2-135m"


def test_starter_config_is_valid_and_commented(tmp_path):
    from sft_tui.core.config.starter import starter_config_text

    text = starter_config_text(model="qwen2.5-0.5b", recipe="qlora", data="d.jsonl")
    resolved = load(tmp_path, text)
    assert resolved.config.method.name == "qlora" and resolved.config.model.name == "qwen2.5-0.5b"
    assert '# lr = 0.0002' in text


def test_a_model_folder_relative_to_the_config_is_stored_absolute(tmp_path):
    """The trainer runs inside the run dir, so a relative model folder must not stay relative in the run's config."""
    (tmp_path / "models" / "mine").mkdir(parents=True)
    resolved = load(tmp_path, BASE.replace('name = "smollm2-135m"', 'name = "models/mine"'))
    assert resolved.config.model.name == str((tmp_path / "models" / "mine").resolve())
    assert load(tmp_path, BASE).config.model.name == "smollm2-135m"  # a preset stays a preset
