"""`sft-tui wizard`: ask (or read) the answers, print the recommendation, write the record and a starter config."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sft_tui.cli.output import print_json
from sft_tui.core.errors import UserError


def ask(spec) -> dict[str, Any]:
    """Ask every question in the terminal; Enter keeps the default (shown in brackets)."""
    from sft_tui.core.decide.wizard import parse_answer, validate_answers

    if not sys.stdin.isatty():
        raise UserError("no --answers file and no terminal to ask the questions in", "sft-tui wizard", "pass --answers answers.toml (keys: see presets/wizard.toml)")
    raw: dict[str, Any] = {}
    for number, q in enumerate(spec.questions, 1):
        options = f" ({'/'.join(q.choices)})" if q.choices else " (yes/no)" if q.kind == "bool" else ""
        default = "" if q.default is None else (" [yes]" if q.default is True else " [no]" if q.default is False else f" [{q.default}]")
        described = q.choice_descriptions()
        width = max(map(len, described), default=0)
        help_lines = ([f"{n} {name:<{width}}  {described[name]}" for n, name in enumerate(q.choices, 1)]
                      if len(described) == len(q.choices) > 0 else [q.help])
        print(f"\n{number}/{len(spec.questions)} {q.text}{options}{default}\n" + "".join(f"    {line}\n" for line in help_lines)
              + f"    why it matters: {q.why}")
        while True:
            text = input("> ").strip()
            if not text:
                break
            try:
                raw[q.key] = parse_answer(q, text)
                validate_answers({q.key: raw[q.key]}, spec)
                break
            except (ValueError, UserError) as exc:
                raw.pop(q.key, None)
                if q.kind == "choice":  # the help is on screen already: the line says only what is allowed
                    print(f"    answer one of {', '.join(q.choices)}, or its number (1-{len(q.choices)}); try again")
                else:
                    print(f"    {exc.line() if isinstance(exc, UserError) else exc}; try again")
    return validate_answers(raw, spec)


def run_wizard(answers_path: Path | None, as_json: bool, record: Path | None, config_out: Path | None, force: bool) -> None:
    """Entry point of `sft-tui wizard`: the files come from core.decide.starter.wizard_files, as in the TUI."""
    from sft_tui.core.decide.starter import wizard_files, write_new
    from sft_tui.core.decide.wizard import (
        detected_box,
        load_answers,
        load_spec,
        recommend,
        render_recommendation,
    )
    from sft_tui.core.estimate.fit import detected_gpus, rooms_on_this_box
    from sft_tui.core.runs.sysmon import SystemSampler

    spec = load_spec()
    answers = load_answers(answers_path, spec) if answers_path else ask(spec)
    detected, count, rooms = None, 0, ()
    if answers.get("gpu_gib") is None:  # an answered GPU may be another machine's: the room here says nothing about it
        sampler = SystemSampler()
        try:
            targets = detected_gpus(sampler)
            detected, count = detected_box([t.memory_gib for t in targets])  # GPU0's size, and the GPUs like it
            rooms = rooms_on_this_box(sampler) if targets else ()
        finally:
            sampler.close()
    rec = recommend(answers, spec, detected, count)
    for path in (record, config_out):  # refuse before writing anything
        if path is not None and path.exists() and not force:
            raise UserError("file exists; not overwriting it", str(path), "choose another path or pass --force")
    files = wizard_files(answers, rec, spec, config_dir=config_out.parent if config_out else None, rooms=rooms,
                         config_name=str(config_out) if config_out else "run.toml")
    notes = []
    if record is not None:
        write_new(record, files.record, force)
        notes.append(f"wrote the decision record {record}")
    if config_out is not None:
        if files.config is None:
            notes.append(f"no fine-tuning recommended: no run config written to {config_out}")
        else:
            write_new(config_out, files.config.text, force)
            notes.append(f"wrote the starter run config {config_out}; {files.config.next_step(config_out)}")
    if as_json:
        print_json(rec.to_json() | {"placement": files.placement_json()})
    else:
        sys.stdout.write(render_recommendation(rec))
        if files.room is not None or files.shares is not None:
            sys.stdout.write(f"\n{files.room_line(str(config_out) if config_out else 'run.toml')}\n")
    for note in notes:
        print(note, file=sys.stderr)


def wizard(
    answers: Annotated[Optional[Path], typer.Option("--answers", help="TOML file with answers (keys as in presets/wizard.toml, e.g. data_kind = \"pairs\"); without it the questions are asked.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the recommendation as JSON.")] = False,
    record: Annotated[Optional[Path], typer.Option("--record", help="Write a Markdown decision record the team can commit.")] = None,
    config_out: Annotated[Optional[Path], typer.Option("--config-out", help="Write a starter run config when fine-tuning is recommended.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --record / --config-out files.")] = False,
) -> None:
    """Decide between prompting/ICL, RAG, LoRA/QLoRA and full fine-tuning, and SFT or SFT then DPO/KTO, with reasons."""
    run_wizard(answers, as_json, record, config_out, force)


def register(app: typer.Typer) -> None:
    """Add wizard to the main app."""
    app.command()(wizard)
