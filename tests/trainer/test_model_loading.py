"""Loading a base model: families without an SDPA path in transformers load with eager attention instead of failing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("family", ["gemma2", "llama"])
def test_sdpa_falls_back_to_eager_only_where_transformers_has_no_sdpa(tmp_path, family, capsys):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from sft_tui.core.config.load import load_run_config
    from sft_tui.trainer.model_setup import load_model

    config = AutoConfig.for_model(family, vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "m")
    (tmp_path / "t.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    (tmp_path / "run.toml").write_text(f'[model]\nname = "{tmp_path / "m"}"\n[data]\ntrain = "t.jsonl"\n')
    model = load_model(tmp_path / "m", load_run_config(tmp_path / "run.toml").config, "fp32")
    expected = "eager" if family == "gemma2" else "sdpa"
    assert model.config._attn_implementation == expected
    assert ("attention: eager (gemma2 has no sdpa path" in capsys.readouterr().out) == (family == "gemma2")
