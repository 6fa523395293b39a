"""Find, list and load the presets shipped with sft-tui.

Presets live in the repository's top-level `presets/` folder. A wheel carries a copy
as `sft_tui/presets` (see pyproject.toml), so both an editable checkout and a plain
`pip install .` find them. The same holds for `assets/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sft_tui.core.errors import UserError, did_you_mean
from sft_tui.core.config.tomlfile import load_toml_file

_PACKAGE_DIR = Path(__file__).resolve().parents[2]  # sft_tui/


def _shipped_dir(name: str) -> Path:
    """`sft_tui/<name>` inside an installed wheel, else `<repo>/<name>` in a checkout."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"sft-tui is installed without its {name}/ folder (looked beside {_PACKAGE_DIR})")


def presets_dir() -> Path:
    """The folder holding models/, recipes/ and wizard.toml."""
    return _shipped_dir("presets")


def assets_dir() -> Path:
    """The folder holding sample data and example configs."""
    return _shipped_dir("assets")


@dataclass(frozen=True)
class PresetFile:
    """One preset: its name (file stem), path and the first lines of its header comment."""

    name: str
    path: Path
    summary: str


def _header_summary(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines[0] if lines else ""


def _list(kind: str) -> list[PresetFile]:
    folder = presets_dir() / kind
    return [PresetFile(p.stem, p, _header_summary(p)) for p in sorted(folder.glob("*.toml"))]


def list_model_presets() -> list[PresetFile]:
    """All model presets, sorted by name."""
    return _list("models")


def list_recipe_presets() -> list[PresetFile]:
    """All training recipe presets (lora, qlora, full, ...), sorted by name."""
    return _list("recipes")


@lru_cache(maxsize=None)
def _load(kind: str, name: str) -> dict[str, Any]:
    path = presets_dir() / kind / f"{name}.toml"
    data, _ = load_toml_file(path)
    return data


def load_model_preset(name: str) -> dict[str, Any]:
    """The parsed TOML of a model preset; unknown names raise a UserError with a hint."""
    return _load_named("models", name, "model preset", "sft-tui models list")


def load_recipe_preset(name: str) -> dict[str, Any]:
    """The parsed TOML of a recipe preset; unknown names raise a UserError with a hint."""
    return _load_named("recipes", name, "recipe", "sft-tui config init --help")


def _load_named(kind: str, name: str, label: str, how_to_list: str) -> dict[str, Any]:
    names = [p.name for p in _list(kind)]
    if name not in names:
        lowered = {n.lower(): n for n in names}
        if name.lower() in lowered:
            name = lowered[name.lower()]
        else:
            raise UserError(
                f"unknown {label} {name!r}{did_you_mean(name, names)}",
                fix=f"`{how_to_list}` shows the {label}s",
            )
    return _load(kind, name)


def wizard_rules_path() -> Path:
    """Path of the decision wizard's questions and rules."""
    return presets_dir() / "wizard.toml"
