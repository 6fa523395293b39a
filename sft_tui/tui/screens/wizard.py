"""Wizard: the questions of presets/wizard.toml one at a time, then the recommendation with its reasons.

From the recommendation, `w` writes the decision record and `o` a starter run config
(both in the current folder, never overwriting), the same files `sft-tui wizard` writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from sft_tui.core.runs.rundir import DECISION_NAME
from sft_tui.tui.screens.base import CockpitScreen
from textual.widgets import Button, Footer, Input, Select, Static

from sft_tui.core.errors import UserError
from sft_tui.core.decide.wizard import Recommendation, WizardSpec, load_spec, parse_answer, recommend, render_recommendation, validate_answers


class WizardScreen(CockpitScreen):
    """Ask, then recommend."""

    BINDINGS = [Binding("escape", "back", "Back to runs"), Binding("w", "record", "Write record"),
                Binding("o", "config", "Write run.toml"), Binding("ctrl+q", "app.quit", "Quit")]

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__()
        self.spec: WizardSpec = load_spec()
        self.index = 0
        self.raw: dict[str, Any] = {}
        self.answers: dict[str, Any] | None = None
        self.recommendation: Recommendation | None = None
        self.folder = folder or Path.cwd()

    def compose(self) -> ComposeResult:
        yield Static("sft-tui · should we fine-tune? (ICL, RAG, LoRA/QLoRA or full)", id="title")
        with Vertical(id="asking"):
            yield Static("", id="question")
            yield Vertical(id="answer")
            with Horizontal(id="buttons"):
                yield Button("Back", id="prev")
                yield Button("Next", id="next", variant="primary")
        yield VerticalScroll(Static("", id="result"), id="result-box")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#result-box").display = False
        await self.show_question()

    async def show_question(self) -> None:
        """Put the current question and an input for its kind on screen."""
        q = self.spec.questions[self.index]
        self.query_one("#question", Static).update(
            f"[b]{self.index + 1}/{len(self.spec.questions)} {q.text}[/b]\n{q.help}\n[dim]why it matters: {q.why}[/dim]")
        box = self.query_one("#answer", Vertical)
        await box.remove_children()  # the old input must be gone before the new one takes its id
        current = self.raw.get(q.key, q.default)
        if q.kind in ("choice", "bool"):
            options = [(c, c) for c in q.choices] if q.kind == "choice" else [("yes", True), ("no", False)]
            widget = Select(options, value=current if current is not None else options[0][1], allow_blank=False, id="value")
        else:
            widget = Input("" if current is None else str(current), id="value", placeholder="empty keeps the default")
        await box.mount(widget)
        widget.focus()

    def _take_answer(self) -> bool:
        q = self.spec.questions[self.index]
        widget = self.query_one("#value")
        try:
            if isinstance(widget, Select):
                value = widget.value
            else:
                text = widget.value.strip()
                if not text:
                    self.raw.pop(q.key, None)
                    return True
                value = parse_answer(q, text)
            validate_answers({q.key: value}, self.spec)
        except (ValueError, UserError) as exc:
            self.app.notify(exc.line() if isinstance(exc, UserError) else f"{q.key}: {exc}", severity="warning")
            return False
        self.raw[q.key] = value
        return True

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "next":
            await self.action_next()
        elif event.button.id == "prev" and self.index > 0:
            self.index -= 1
            await self.show_question()

    async def on_input_submitted(self, _event: Input.Submitted) -> None:
        await self.action_next()

    async def action_next(self) -> None:
        """Keep this answer and go on; after the last, recommend."""
        if not self._take_answer():
            return
        if self.index + 1 < len(self.spec.questions):
            self.index += 1
            await self.show_question()
        else:
            self.finish()

    def finish(self) -> None:
        """Recommend from the answers (the estimator checks the method when model and GPU are known)."""
        self.answers = validate_answers(self.raw, self.spec)
        detected = None
        if self.answers.get("gpu_gib") is None:
            from sft_tui.core.estimate.fit import detected_gpu

            target = detected_gpu(self.app.sampler)
            detected = target.memory_gib if target else None
        try:
            self.recommendation = recommend(self.answers, self.spec, detected)
            text = render_recommendation(self.recommendation) + "\n[dim]w: write decision.md   o: write run.toml and go to Launch   esc: back[/dim]"
        except UserError as exc:
            text = f"[b red]{exc.line()}[/]"
        self.query_one("#asking").display = False
        self.query_one("#result-box").display = True
        self.query_one("#result", Static).update(text)

    def _write(self, name: str, text: str) -> Path | None:
        path = self.folder / name
        if path.exists():
            self.app.notify(f"{path} exists; not overwriting it", severity="warning")
            return None
        path.write_text(text, encoding="utf-8")
        self.app.notify(f"wrote {path}")
        return path

    def action_record(self) -> None:
        """Write decision.md (answers, outcome, reasons, estimate)."""
        if self.recommendation is not None:
            from sft_tui.core.decide.wizard import decision_record

            self._write(DECISION_NAME, decision_record(self.answers, self.recommendation, self.spec))

    def action_config(self) -> None:
        """Write a starter run.toml when fine-tuning is recommended."""
        rec = self.recommendation
        if rec is None:
            return
        if rec.method is None:
            self.app.notify("fine-tuning is not recommended: no run config to write", severity="warning")
            return
        from sft_tui.core.config.starter import starter_config_text

        path = self._write("run.toml", starter_config_text(model=rec.model or "qwen2.5-1.5b", recipe=rec.method, data="train.jsonl"))
        if path is not None:  # next step: check and launch it
            from sft_tui.tui.screens.launch import LaunchScreen

            self.app.push_screen(LaunchScreen(str(path)))

    def action_back(self) -> None:
        """Back to the runs."""
        self.app.pop_screen()
