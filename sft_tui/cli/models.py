"""`sft-tui models list | show`: the shipped presets, and architecture numbers from any config.json."""

from __future__ import annotations

from typing import Annotated

import typer

from sft_tui.cli.output import print_json, print_table

models_app = typer.Typer(help="Model presets and architecture numbers from any config.json.", no_args_is_help=True)


def _human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _spec_json(spec) -> dict:
    from dataclasses import asdict

    params = spec.count_parameters()
    out = asdict(spec)
    out["params"] = {"total": params.total, "embedding": params.embedding, "lm_head": params.lm_head,
                     "per_layer": params.per_layer, "non_embedding": params.non_embedding}
    out["linear_layers"] = [asdict(s) for s in spec.linear_shapes()]
    return out


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """The shipped model presets with their sizes."""
    from sft_tui.core.models import modelspec
    from sft_tui.core.models import presets

    specs = [(p, modelspec.spec_from_preset(p.name), presets.load_model_preset(p.name)) for p in presets.list_model_presets()]
    if as_json:
        print_json([_spec_json(spec) for _, spec, _ in specs])
        return
    rows = [[p.name, spec.family, _human_count(spec.count_parameters().total), spec.num_layers, spec.hidden_size,
             f"{spec.num_attention_heads}/{spec.num_kv_heads}", spec.vocab_size, spec.max_position_embeddings, data.get("hf_repo", "")]
            for p, spec, data in specs]
    print_table(["preset", "family", "params", "layers", "hidden", "heads/kv", "vocab", "context", "HF repo"], rows)


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(help="Preset name, config.json / model folder, or repo id in the local HF cache.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Architecture numbers and the exact parameter count of one model (no weights needed)."""
    from sft_tui.core.models.modelspec import resolve_model

    spec = resolve_model(model)
    if as_json:
        print_json(_spec_json(spec))
        return
    params = spec.count_parameters()
    lines = [
        ("model", spec.name), ("family", spec.family), ("source", spec.source), ("HF repo", spec.hf_repo or "-"),
        ("licence", spec.license_note or "-"),
        ("hidden size", spec.hidden_size), ("layers", spec.num_layers),
        ("attention heads / KV heads / head dim", f"{spec.num_attention_heads} / {spec.num_kv_heads} / {spec.head_dim}"),
        ("intermediate size", spec.intermediate_size), ("vocabulary", spec.vocab_size),
        ("tied embeddings", "yes" if spec.tie_word_embeddings else "no"),
        ("max positions", spec.max_position_embeddings), ("dtype", spec.torch_dtype),
        ("parameters", f"{params.total:,} ({_human_count(params.total)})"),
        ("  embedding", f"{params.embedding:,}"), ("  lm head", f"{params.lm_head:,}" if params.lm_head else "tied"),
        ("  per layer", f"{params.per_layer:,} x {params.num_layers}"),
    ]
    if spec.moe is not None:  # all experts resident; a token uses its top-k
        active = spec.active_parameters()
        lines += [("experts", f"{spec.moe.num_experts} per sparse layer, {spec.moe.experts_per_token} per token "
                              f"({spec.num_sparse_layers} of {spec.num_layers} layers sparse)"),
                  ("active per token", f"{active:,} ({_human_count(active)}) of {_human_count(params.total)} resident")]
    if spec.scope_note:
        lines.append(("note", spec.scope_note))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
