"""Model presets and the config.json reader: exact parameter counts, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_tui.core.models import modelspec
from sft_tui.core.models import presets
from sft_tui.core.errors import UserError

PRESETS = [p.name for p in presets.list_model_presets()]
REQUIRED = {
    "llama2-7b", "llama2-13b", "llama2-70b", "llama3.1-8b", "llama3.1-70b", "llama3.2-1b", "llama3.2-3b",
    "mistral-7b-v0.3", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b",
    "qwen2.5-32b", "qwen2.5-72b", "gemma2-2b", "gemma2-9b", "phi3-mini", "smollm2-135m", "smollm2-360m",
    "smollm2-1.7b", "tinyllama-1.1b",
    # issue 16: today's families and mixture-of-experts models
    "qwen3-4b", "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b", "gemma3-1b", "gemma3-4b", "gemma3-12b", "gemma3-27b",
    "gpt-oss-20b", "mistral-small-24b", "phi-4", "smollm3-3b", "mixtral-8x7b",
}


def _published(text: str) -> tuple[float, float]:
    """'7.62B' -> (7.62e9, half a unit of the last digit)."""
    scale = {"B": 1e9, "M": 1e6}[text[-1]]
    digits = text[:-1]
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return float(digits) * scale, 0.5 * 10 ** (-decimals) * scale


def test_required_presets_are_shipped():
    assert REQUIRED <= set(PRESETS)
    assert len(PRESETS) >= 20


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_complete_and_documented(name):
    data = presets.load_model_preset(name)
    path = presets.presets_dir() / "models" / f"{name}.toml"
    assert path.read_text().startswith("# "), "each preset opens with a header comment"
    assert data["name"] == name
    for key in ("display_name", "family", "hf_repo", "license_note", "published_params"):
        assert data.get(key), f"{name} lacks {key}"
    arch = data["architecture"]
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "intermediate_size", "vocab_size", "tie_word_embeddings", "max_position_embeddings", "torch_dtype"):
        assert key in arch, f"{name} lacks architecture.{key}"


@pytest.mark.parametrize("name", PRESETS)
def test_closed_form_count_matches_the_model_card(name):
    spec = modelspec.spec_from_preset(name)
    expected, tolerance = _published(presets.load_model_preset(name)["published_params"])
    total = spec.count_parameters().total
    assert abs(total - expected) <= tolerance, f"{name}: closed form {total:,} vs model card {expected:,.0f}"


def test_exact_counts_of_well_known_models():
    # exact totals from the models' safetensors metadata on the Hub
    known = {"llama2-7b": 6_738_415_616, "llama3.1-8b": 8_030_261_248, "mistral-7b-v0.3": 7_248_023_552,
             "qwen2.5-7b": 7_615_616_512, "gemma2-9b": 9_241_705_984, "phi3-mini": 3_821_079_552,
             "smollm2-135m": 134_515_008, "qwen2.5-0.5b": 494_032_768,
             # keras-hub's preset metadata (mixtral_presets.py, gemma3_presets.py: gemma3_1b)
             "mixtral-8x7b": 46_702_792_704, "gemma3-1b": 999_885_952,
             # Mistral-Small-24B-Instruct-2501's model.safetensors.index.json: total_size 47,144,806,400 bytes in bf16
             "mistral-small-24b": 47_144_806_400 // 2}
    for name, total in known.items():
        assert modelspec.spec_from_preset(name).count_parameters().total == total, name


def test_gemma3_text_counts_match_keras_hub_with_its_smaller_vocabulary():
    # keras-hub's gemma3_{4b,12b,27b}_text presets use 262144 embedding rows; the Hub checkpoints 262208
    keras = {"gemma3-4b": 3_880_099_328, "gemma3-12b": 11_765_788_416, "gemma3-27b": 27_009_002_240}
    for name, total in keras.items():
        spec = modelspec.spec_from_preset(name)
        assert spec.count_parameters().total - (262_208 - 262_144) * spec.hidden_size == total, name


def test_moe_presets_state_resident_and_active_like_their_model_cards():
    cards = {"qwen3-30b-a3b": (30.5e9, 3.3e9, True), "mixtral-8x7b": (46.7e9, 12.9e9, True), "gpt-oss-20b": (20.9e9, 3.6e9, False)}
    for name, (resident, active, with_embedding) in cards.items():
        spec = modelspec.spec_from_preset(name)
        assert abs(spec.count_parameters().total - resident) < 0.05e9, name
        assert abs(spec.active_parameters(input_embedding=with_embedding) - active) < 0.06e9, name  # cards round or cut to 0.1B


@pytest.mark.parametrize("name", PRESETS)
def test_closed_form_count_matches_a_meta_device_model(name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    data = presets.load_model_preset(name)
    arch = {k: v for k, v in data["architecture"].items() if k != "torch_dtype"}
    config = transformers.AutoConfig.for_model(data["family"], **arch)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == modelspec.spec_from_preset(name).count_parameters().total


@pytest.mark.parametrize("name", ["llama3.2-1b", "qwen2.5-0.5b", "gemma2-2b", "phi3-mini", "pythia-160m", "qwen3-0.6b"])
def test_config_json_written_by_transformers_reads_the_same(tmp_path, name):
    transformers = pytest.importorskip("transformers")
    data = presets.load_model_preset(name)
    arch = {k: v for k, v in data["architecture"].items() if k != "torch_dtype"}
    transformers.AutoConfig.for_model(data["family"], **arch).save_pretrained(tmp_path)
    from_file = modelspec.resolve_model(str(tmp_path))
    from_preset = modelspec.spec_from_preset(name)
    assert from_file.count_parameters() == from_preset.count_parameters()
    assert from_file.linear_shapes() == from_preset.linear_shapes()


def _write_config(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(fields))
    return folder


LLAMA_TINY = dict(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=128, vocab_size=1000)


def test_reads_a_folder_and_a_file(tmp_path):
    folder = _write_config(tmp_path / "tiny", **LLAMA_TINY)
    by_folder = modelspec.resolve_model(str(folder))
    by_file = modelspec.resolve_model(str(folder / "config.json"))
    assert by_folder.count_parameters() == by_file.count_parameters()
    # 2 layers x (q 64*64 + k,v 64*32*2 + o 64*64 + mlp 3*64*128 + 2 norms) + embed + lm_head + final norm
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert by_folder.count_parameters().total == 2 * per_layer + 2 * 1000 * 64 + 64
    assert by_folder.name == "tiny"


def test_reads_a_repo_id_from_the_local_hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-llama"
    _write_config(repo / "snapshots" / "abc123", **LLAMA_TINY)
    _write_config(repo / "snapshots" / "old999", **{**LLAMA_TINY, "num_hidden_layers": 9})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    spec = modelspec.resolve_model("acme/tiny-llama")
    assert spec.num_layers == 2 and spec.hf_repo == "acme/tiny-llama"


def test_preset_found_by_its_hf_repo_id():
    assert modelspec.resolve_model("Qwen/Qwen2.5-7B-Instruct").name == "qwen2.5-7b"
    assert modelspec.resolve_model("QWEN2.5-7B").name == "qwen2.5-7b"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({**LLAMA_TINY, "intermediate_size": None}, 'missing field "intermediate_size"'),
        ({k: v for k, v in LLAMA_TINY.items() if k != "vocab_size"}, 'missing field "vocab_size"'),
        ({k: v for k, v in LLAMA_TINY.items() if k != "model_type"}, 'missing field "model_type"'),
        ({**LLAMA_TINY, "model_type": "mamba"}, "model_type 'mamba' is not supported"),
        ({"model_type": "llava", "text_config": {}}, "text_config"),
        ({**LLAMA_TINY, "num_key_value_heads": 3}, "not a multiple"),
        ({**LLAMA_TINY, "hidden_size": "64"}, "must be a positive integer"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, fields, message):
    folder = _write_config(tmp_path / "m", **fields)
    with pytest.raises(UserError) as err:
        modelspec.resolve_model(str(folder))
    assert message in err.value.line()
    assert str(folder / "config.json") in err.value.line()


def test_invalid_json_names_the_line(tmp_path):
    (tmp_path / "config.json").write_text('{\n  "model_type": "llama",\n  oops\n}')
    with pytest.raises(UserError, match=r"config.json:3: invalid JSON"):
        modelspec.resolve_model(str(tmp_path))


def test_unknown_model_suggests_a_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError, match=r"did you mean 'qwen2.5-7b'"):
        modelspec.resolve_model("qwen2.5-7x")
    with pytest.raises(UserError, match="local Hugging Face cache"):
        modelspec.resolve_model("nobody/nothing")


def test_family_traits_shape_the_layers():
    qwen = modelspec.spec_from_preset("qwen2.5-0.5b")
    assert [s.bias for s in qwen.linear_shapes()][:4] == [True, True, True, False]  # q/k/v bias, no o bias
    phi = modelspec.spec_from_preset("phi3-mini")
    assert [s.name for s in phi.linear_shapes()] == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    gemma2 = modelspec.spec_from_preset("gemma2-9b")
    assert gemma2.head_dim == 256 and gemma2.linear_shapes()[0].out_features == 16 * 256  # q wider than hidden


def test_a_data_file_given_as_the_model_is_named_as_not_a_config(tmp_path, cli):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "q", "completion": "a"}\n{"prompt": "q2", "completion": "b"}\n')
    result = cli("estimate", str(data))
    assert result.code == 2 and "this is not a model's config.json" in result.err and "sft-tui models list" in result.err
    broken = tmp_path / "config.json"
    broken.write_text('{"model_type": "llama",\n')
    assert "invalid JSON" in cli("estimate", str(broken)).err  # a real config.json keeps its line number
