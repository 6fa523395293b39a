"""The text of a starter run config (`sft-tui config init`): short, commented, valid."""

from __future__ import annotations

from dataclasses import fields

from sft_tui.core.config.load import toml_value, resolve_layers
from sft_tui.core.config.schema import SECTIONS


def starter_config_text(model: str, recipe: str, data: str) -> str:
    """A run config naming the recipe, model and data; every other field is a commented line
    with its effective value (recipe or default) and its help, so a person sees what to tune."""
    chosen = {"recipe": recipe, "model": {"name": model}, "data": {"train": data}}
    resolved = resolve_layers(chosen, None, "config init", None)
    lines = [
        f"# Run config for sft-tui: {recipe} on {model}.",
        "# Uncomment a line to change it. Check: sft-tui config check FILE; all values: sft-tui config show FILE",
        "",
        f"recipe = {toml_value(recipe)}",
    ]
    for name, cls in SECTIONS.items():
        lines += ["", f"[{name}]"]
        section = getattr(resolved.config, name)
        for f in fields(cls):
            value = toml_value(getattr(section, f.name))
            if (name, f.name) == ("model", "name"):
                value = toml_value(model)
            elif (name, f.name) == ("data", "train"):
                value = toml_value(data)
            setting = f"{f.name} = {value}"
            if (name, f.name) in (("model", "name"), ("data", "train")):
                lines.append(f"{setting:<40} # {f.metadata['help']}")
            else:
                lines.append(f"# {setting:<38} # {f.metadata['help']}")
    return "\n".join(lines) + "\n"
