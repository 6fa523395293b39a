"""Run config: load a TOML file, merge recipe preset + file + `--set` overrides, validate, dump.

Values are merged in this order, later winning: schema defaults, the recipe preset
named by `recipe = "..."`, the user's file, `--set section.key=value` overrides. Every
value keeps its origin (default / recipe / file:line / --set) so errors and
`sft-tui config show` can say where it came from. Validation happens once, here, and
raises a UserError naming the field path, where it was set and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

from sft_tui.core.models import presets
from sft_tui.core.config.schema import LOSS_TYPES, SECTIONS, TOP_LEVEL_KEYS, RunConfig, all_field_paths
from sft_tui.core.errors import UserError, did_you_mean
from sft_tui.core.config.tomlfile import key_line, load_toml_file, parse_toml_text, section_line

# fields holding file paths: made absolute against the config file's folder, so the
# resolved config stored in a run directory works from anywhere
_PATH_FIELDS = ("data.train", "data.eval", "eval.general_text")


@dataclass(frozen=True)
class ResolvedConfig:
    """A validated config, where each value came from, and non-fatal notes."""

    config: RunConfig
    origins: Mapping[str, str]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Layer:
    """One source of values: its label, its data, and a way to point at a key's line."""

    label: str
    data: Mapping[str, Any]
    text: str | None = None  # TOML text, to find key lines
    base_dir: Path | None = None  # for relative paths

    def where(self, dotted: str) -> str:
        if self.text is None:
            return self.label
        line = key_line(self.text, dotted) or section_line(self.text, dotted.split(".")[0])
        return f"{self.label}:{line}" if line else self.label


def parse_override(item: str) -> tuple[str, Any]:
    """`section.key=value` -> (path, value); the value is read as TOML, else kept as a string."""
    if "=" not in item:
        raise UserError(f"--set {item!r} has no '='", fix="write it as section.key=value, e.g. --set training.lr=1e-4")
    path, raw = (part.strip() for part in item.split("=", 1))
    if not path:
        raise UserError(f"--set {item!r} names no field", fix="write it as section.key=value")
    try:
        value = parse_toml_text(f"v = {raw}", "--set")["v"]
    except UserError:
        value = raw  # bare words such as model names need no quotes
    return path, value


def _nest(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in pairs:
        head, _, rest = path.partition(".")
        if rest:
            out.setdefault(head, {})
            if not isinstance(out[head], dict):
                raise UserError(f"--set {path}: {head} is not a section", fix=f"sections are {', '.join(SECTIONS)}")
            out[head][rest] = value
        else:
            out[head] = value
    return out


def _check_shape(layer: _Layer) -> None:
    """Unknown sections/keys (with suggestions), sections that are not tables, nested tables."""
    known = all_field_paths()
    for key, value in layer.data.items():
        if key in TOP_LEVEL_KEYS:
            if not isinstance(value, str):
                raise UserError(f"{key} must be a string (a recipe name), got {_describe(value)}", layer.where(key), 'e.g. recipe = "lora"')
            continue
        if key not in SECTIONS:
            owner = ALIASES.get(key) or next((p for p in known if p.endswith("." + key)), None)
            if owner and not isinstance(value, dict):
                raise UserError(f"unknown top-level key {key!r}: fields belong to a section", layer.where(key),
                                f"write it as {owner.split('.')[1]} = ... under [{owner.split('.')[0]}]")
            hint = did_you_mean(key, list(SECTIONS) + list(TOP_LEVEL_KEYS))
            raise UserError(f"unknown key {key!r}{hint}", layer.where(key), f"top-level sections are {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise UserError(f"{key} must be a section ([{key}]), got {_describe(value)}", layer.where(key), f"write [{key}] with its keys below it")
        names = [f.name for f in fields(SECTIONS[key])]
        for sub in value:
            if sub not in names:
                raise UserError(f"unknown key {key}.{sub}{_suggest(key, sub)}", layer.where(f"{key}.{sub}"), f"`sft-tui config show` lists the fields of [{key}]")


# names people bring from transformers' TrainingArguments, peft and other tools
ALIASES = {
    "learning_rate": "training.lr", "lr_rate": "training.lr", "num_train_epochs": "training.epochs",
    "per_device_train_batch_size": "training.micro_batch_size", "batch_size": "training.micro_batch_size",
    "gradient_accumulation": "training.gradient_accumulation_steps", "grad_accum": "training.gradient_accumulation_steps",
    "max_length": "training.max_seq_length", "seq_len": "training.max_seq_length", "max_seq_len": "training.max_seq_length",
    "sequence_len": "training.max_seq_length", "optim": "training.optimizer", "bf16": "training.precision",
    "fp16": "training.precision", "lr_scheduler_type": "training.lr_scheduler", "warmup": "training.warmup_ratio",
    "r": "method.lora_r", "lora_rank": "method.lora_r", "rank": "method.lora_r", "alpha": "method.lora_alpha",
    "lora_target_modules": "method.target_modules", "target": "method.target_modules", "load_in_4bit": "method.name",
    "bnb_4bit_quant_type": "method.quant_type", "bnb_4bit_use_double_quant": "method.double_quant",
    "model_name_or_path": "model.name", "base_model": "model.name", "dataset": "data.train", "train_file": "data.train",
    "method": "method.name", "type": "method.name",
}


def _suggest(section: str, key: str) -> str:
    """Suggest a field: a known alias, a similar name in this section, then in the others."""
    if key in ALIASES:
        return f" (did you mean {ALIASES[key]!r}?)"
    names = [f.name for f in fields(SECTIONS[section])]
    close = did_you_mean(key, names)
    if close:
        return close.replace("'", f"'{section}.", 1)
    prefixed = [n for n in names if key.startswith(n + "_") or n.startswith(key + "_")]
    if prefixed:
        return f" (did you mean '{section}.{prefixed[0]}'?)"
    elsewhere = {f.name: f"{other}.{f.name}" for other, cls in SECTIONS.items() if other != section for f in fields(cls)}
    if key in elsewhere:
        return f" (did you mean {elsewhere[key]!r}?)"
    close = did_you_mean(key, elsewhere)
    return f" (did you mean {elsewhere[close.split(chr(39))[1]]!r}?)" if close else ""


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


def _coerce(path: str, value: Any, hint: Any, meta: Mapping[str, Any], where: str) -> Any:
    """Check one value against its field's type, choices and range; return it normalised."""
    def bad(expected: str) -> UserError:
        return UserError(f"{path} must be {expected}, got {_describe(value)}", where, f"set {path} to {expected}")

    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a number")
        value = float(value)
    elif hint is str and meta.get("gpu_spec"):
        from sft_tui.core.config.gpus import normalise_gpus

        canonical = normalise_gpus(value)
        if canonical is None:
            raise bad('a GPU count (2), "all", or a list of distinct GPU indices ([0, 2])')
        value = canonical
    elif hint is str and meta.get("bool_words") and isinstance(value, bool):
        value = meta["bool_words"][0 if value else 1]
    elif hint is str and meta.get("bool_words") and not isinstance(value, str):
        raise bad(f"one of {', '.join(meta['choices'])} (or true/false)")
    elif hint is str:
        if not isinstance(value, str):
            raise bad("a string")
    else:  # tuple[str, ...]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise bad('a non-empty list of strings (or "all-linear")')
        value = tuple(value)
    choices = meta.get("choices") or ()
    if choices and value not in choices:
        also = " (or true/false)" if meta.get("bool_words") else ""
        raise UserError(f"{path} must be one of {', '.join(choices)}{also}; got {value!r}{did_you_mean(str(value), choices)}", where, f"pick one of {', '.join(choices)}{also}")
    low, high = meta.get("min"), meta.get("max")
    if low is not None and (value < low or (meta.get("min_exclusive") and value == low)):
        op = ">" if meta.get("min_exclusive") else ">="
        raise UserError(f"{path} must be {op} {low:g}, got {value!r}", where, f"use a value {op} {low:g}")
    if high is not None and value > high:
        raise UserError(f"{path} must be <= {high:g}, got {value!r}", where, f"use a value <= {high:g}")
    return value


def _merge(layers: Sequence[_Layer]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    values: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    for name, cls in SECTIONS.items():
        values[name] = {f.name: f.default for f in fields(cls)}
        for f in fields(cls):
            origins[f"{name}.{f.name}"] = "default"
    for layer in layers:
        for section, table in layer.data.items():
            if section in TOP_LEVEL_KEYS:
                continue
            hints = get_type_hints(SECTIONS[section])
            for key, value in table.items():
                path = f"{section}.{key}"
                meta = {f.name: f.metadata for f in fields(SECTIONS[section])}[key]
                where = layer.where(path)
                value = _coerce(path, value, hints[key], meta, where)
                if path in _PATH_FIELDS and value and layer.base_dir is not None:
                    value = str((layer.base_dir / Path(value).expanduser()).resolve())
                elif path == "model.name" and value and layer.base_dir is not None and (layer.base_dir / Path(value).expanduser()).exists():
                    # a model folder given relative to the config (or the shell, for --set); the trainer runs
                    # inside the run dir, so the run's config must hold the absolute path. Presets and repo ids stay.
                    value = str((layer.base_dir / Path(value).expanduser()).resolve())
                values[section][key] = value
                origins[path] = where
    return values, origins


def _check_required_and_contradictions(values: dict[str, dict[str, Any]], origins: dict[str, str], main_label: str) -> None:
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            if f.metadata.get("required") and not values[name][f.name]:
                raise UserError(f"{name}.{f.name} is required: {f.metadata['help']}", main_label, f'add it under [{name}], e.g. {f.name} = "..."')
    method = values["method"]["name"]
    if method == "full":
        for key in ("quant_type", "double_quant"):
            path = f"method.{key}"
            if origins[path] != "default":
                raise UserError(
                    f"method.name = 'full' contradicts {path} (set at {origins[path]}): a 4-bit quantised base cannot be fully fine-tuned",
                    origins["method.name"], "use method.name = 'qlora', or remove the quantisation settings",
                )
    objective, loss = values["method"]["objective"], values["method"]["loss_type"]
    if loss and loss not in LOSS_TYPES.get(objective, ()):
        fits = [name for name, losses in LOSS_TYPES.items() if loss in losses]
        raise UserError(
            f"method.loss_type = {loss!r} is a {'/'.join(fits)} loss, but method.objective is {objective!r}",
            origins["method.loss_type"], f"use one of {', '.join(LOSS_TYPES[objective])}" if objective in LOSS_TYPES
            else "remove method.loss_type (it applies to dpo and kto only)",
        )
    if values["data"]["packing"] in ("on", "wrapped") and objective != "sft":
        # the preference trainers batch pairs padded: said here so `config check` and the TUI's check catch it too
        raise UserError(f"data.packing = {values['data']['packing']!r} packs SFT rows, but method.objective is {objective!r}",
                        origins["data.packing"], f"remove data.packing (TRL's {objective.upper()} trainer pads its pairs)")
    if values["distributed"]["strategy"] == "fsdp" and values["distributed"]["processes"] > 1:
        # accelerate turns FSDP on for GPU process groups only: CPU processes would quietly train as DDP
        raise UserError("distributed.strategy = 'fsdp' shards over GPUs; distributed.processes are CPU processes, which accelerate "
                        "trains as DDP", origins["distributed.strategy"], "use strategy = 'ddp' with processes, or gpus = N with fsdp")
    if values["method"]["sft_weight"] > 0 and objective != "dpo":
        raise UserError(f"method.sft_weight adds an SFT loss to DPO, but method.objective is {objective!r}",
                        origins["method.sft_weight"], "remove method.sft_weight (ORPO has its own SFT term; KTO has none)")
    if values["data"]["eval"] and origins["data.eval_fraction"] != "default" and values["data"]["eval_fraction"] > 0:
        raise UserError(
            f"data.eval (a held-out file) and data.eval_fraction (set at {origins['data.eval_fraction']}) both choose the eval split",
            origins["data.eval"], "keep one of them",
        )


def resolve_layers(data: Mapping[str, Any], text: str | None, label: str, base_dir: Path | None, overrides: Sequence[str] = (),
                   check_contradictions: bool = True) -> ResolvedConfig:
    """Validate and merge one config (already parsed) with its recipe and overrides.

    `check_contradictions=False` is for configs sft-tui wrote itself (a run's config.toml
    sets every field explicitly, so "set by the user" means nothing there).
    """
    # command-line mistakes first: they are the newest and the cheapest to fix
    override_layer = _Layer("--set", _nest([parse_override(o) for o in overrides]), None, Path.cwd())
    _check_shape(override_layer)
    main = _Layer(label, data, text, base_dir)
    _check_shape(main)
    recipe = str(override_layer.data.get("recipe") or data.get("recipe") or "")
    layers: list[_Layer] = []
    if recipe:
        recipe_data = presets.load_recipe_preset(recipe)
        recipe_path = presets.presets_dir() / "recipes" / f"{recipe}.toml"
        recipe_layer = _Layer(str(recipe_path), recipe_data, recipe_path.read_text(encoding="utf-8"), None)
        if "recipe" in recipe_data:
            raise UserError("a recipe cannot name another recipe", recipe_layer.where("recipe"), "remove the recipe key from the preset")
        _check_shape(recipe_layer)
        layers.append(recipe_layer)
    layers += [main, override_layer]
    values, origins = _merge(layers)
    if check_contradictions:
        _check_required_and_contradictions(values, origins, label)
    notes = []
    for path in _PATH_FIELDS:
        section, key = path.split(".")
        if values[section][key] and not Path(values[section][key]).exists():
            notes.append(f"{path} = {values[section][key]!r} does not exist yet (set at {origins[path]})")
    config = RunConfig(**{name: SECTIONS[name](**values[name]) for name in SECTIONS}, recipe=recipe)
    return ResolvedConfig(config, origins, tuple(notes))


def load_run_config(path: Path, overrides: Sequence[str] = ()) -> ResolvedConfig:
    """Load, merge and validate a run config file; relative paths are taken from its folder."""
    data, text = load_toml_file(path)
    return resolve_layers(data, text, str(path), path.resolve().parent, overrides)


def check_precision_against_gpus(config: RunConfig, gpus: Sequence[Any], where: str) -> None:
    """bf16 needs compute capability 8.0+ (Ampere); refuse it on older GPUs with the fix."""
    if config.training.precision != "bf16":
        return
    for gpu in gpus:
        if not gpu.bf16_supported:
            raise UserError(
                f"training.precision = 'bf16' but GPU {gpu.index} ({gpu.name}, compute capability {gpu.compute_capability}) has no bf16",
                where, "set training.precision = 'fp16' (or 'auto')",
            )


def toml_value(value: Any) -> str:
    """A Python value of the schema types as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings


def dump_run_config(config: RunConfig, origins: Mapping[str, str] | None = None, header: str = "") -> str:
    """TOML text of a resolved config; with origins, each line says where its value came from."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    if config.recipe:
        lines.append(f"recipe = {toml_value(config.recipe)}")
    for name in SECTIONS:
        lines += ["", f"[{name}]"]
        section = getattr(config, name)
        for f in fields(section):
            line = f"{f.name} = {toml_value(getattr(section, f.name))}"
            if origins is not None:
                line = f"{line:<48} # {origins.get(f'{name}.{f.name}', 'default')}"
            lines.append(line)
    return "\n".join(lines).lstrip("\n") + "\n"


def config_from_toml_text(text: str, source: str) -> RunConfig:
    """Read back a config written by dump_run_config (e.g. a run directory's config.toml).

    The recipe is not applied again: the dump already holds every value it set, and a
    run must stay readable even if that preset changes later.
    """
    data = dict(parse_toml_text(text, source))
    recipe = str(data.pop("recipe", "") or "")
    config = resolve_layers(data, text, source, None, check_contradictions=False).config
    return RunConfig(**{name: getattr(config, name) for name in SECTIONS}, recipe=recipe)
