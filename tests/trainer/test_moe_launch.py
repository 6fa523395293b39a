"""Mixture-of-experts models at launch: what peft would refuse after the model loaded is refused before, in one line."""

from __future__ import annotations

from tests.trainer.conftest import DEMO


def test_lora_dropout_on_a_moe_models_fused_experts_is_refused_before_it_starts(runs_home, tiny_model, tmp_path, cli):
    """peft refuses dropout on the adapters of fused experts; the run must not die on it after loading the model."""
    import shutil

    import torch
    import transformers

    folder = tmp_path / "tiny-mixtral"
    config = transformers.MixtralConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, vocab_size=768)
    transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model / name, folder / name)
    result = cli("train", str(DEMO / "demo.toml"), "--set", f"model.name={folder}", "--set", "method.lora_dropout=0.05")
    assert result.code == 2 and "peft puts no dropout on the LoRA of" in result.err and "set method.lora_dropout = 0" in result.err
    assert not (runs_home / "runs").exists() or not any((runs_home / "runs").iterdir())


def test_qlora_on_fused_experts_is_refused_with_the_lora_estimate(runs_home, tiny_model, tmp_path, cli):
    """In transformers 5 QLoRA leaves fused experts unquantised (fp32): saying so beats an out-of-memory an hour in."""
    import shutil

    import torch
    import transformers

    folder = tmp_path / "tiny-qwen3-moe"
    config = transformers.Qwen3MoeConfig(hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=8,
                                         num_experts_per_tok=2, vocab_size=768)
    transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model / name, folder / name)
    result = cli("train", str(DEMO / "demo.toml"), "--set", "recipe=qlora", "--set", f"model.name={folder}", "--set", "method.name=qlora",
                 "--set", "method.lora_dropout=0")
    assert result.code == 2 and "QLoRA cannot quantise" in result.err and "use method.name = 'lora'" in result.err, result.err
