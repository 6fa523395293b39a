"""Wizard: the questions of presets/wizard.toml one at a time, then the recommendation with its reasons.

Keys: `enter` keeps the answer and moves on, `esc` goes back a question; a choice is
picked with the arrows or its number (which also moves on). Focus is always on the
answer, so the first key counts. From the recommendation, `enter` writes run.toml and
decision.md into the current folder (never overwriting) and opens Launch; both files
come from core.decide.starter.wizard_files, the same function `sft-tui wizard` uses.
With a detected GPU, the recommendation also says how much is free on it now and whether
the run would start now or wait in the queue (as `sft-tui wizard` does); for a run on
several GPUs (DDP or FSDP, the question after GPU memory), whether that many have room
for its per-GPU peak. With pairs or
thumbs up/down the plan has two stages: run.toml is stage 1 (SFT), and the screen says
what stage 2 is (DPO or KTO from this run's adapter; the command is in run.toml's header).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import Button, Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from sft_tui.core.decide.wizard import (
    Recommendation,
    WizardSpec,
    load_spec,
    parse_answer,
    recommend,
    render_recommendation,
    validate_answers,
)
from sft_tui.core.errors import UserError
from sft_tui.core.runs.rundir import DECISION_NAME
from sft_tui.tui.screens.base import CockpitScreen

CONFIG_NAME = "run.toml"


class AnswerChoices(OptionList):
    """The options of a choice or yes/no question: arrows then enter, or the option's number (1-9)."""

    BINDINGS = [Binding("enter", "select", "Next"), Binding("1", "pick(1)", "Pick", key_display="1-9")] + [
        Binding(str(n), f"pick({n})", f"Pick option {n}", show=False) for n in range(2, 10)]

    def __init__(self, values: list[Any], labels: list[str], descriptions: dict[str, str], current: Any, **kwargs: Any) -> None:
        width = max(len(label) for label in labels)
        options = []
        for number, label in enumerate(labels, 1):
            prompt = Text.assemble((f"{number} ", "bold"), f"{label:<{width}}")
            if label in descriptions:
                prompt.append(f"  {descriptions[label]}", style="dim")
            options.append(Option(prompt))
        super().__init__(*options, compact=True, **kwargs)
        self.values = values
        self._start = values.index(current) if current in values else 0

    def on_mount(self) -> None:
        self.highlighted = self._start

    @property
    def value(self) -> Any:
        """The highlighted option's value (a choice, or True/False)."""
        return self.values[self.highlighted or 0]

    @value.setter
    def value(self, value: Any) -> None:
        self.highlighted = self.values.index(value)

    def action_pick(self, number: int) -> None:
        """Answer with option `number` and move on (a number beyond the options does nothing)."""
        if number <= len(self.values):
            self.highlighted = number - 1
            self.action_select()


class AnswerInput(Input):
    """A typed answer; enter moves on (shown in the footer, unlike a plain Input's enter)."""

    BINDINGS = [Binding("enter", "submit", "Next")]


class WizardScreen(CockpitScreen):
    """Ask, then recommend; write the starter run config and the decision record, then Launch."""

    CSS_PATH = "wizard.tcss"
    BINDINGS = [
        Binding("enter", "next", "Next"),
        Binding("enter,o", "config", "Write run.toml, Launch"),
        Binding("w", "record", "Record"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+x", "leave", "Leave"),
        Binding("ctrl+q", "app.quit", "Quit", show=False),
    ]

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__()
        self.spec: WizardSpec = load_spec()
        self.index = 0
        self.raw: dict[str, Any] = {}
        self.answers: dict[str, Any] | None = None
        self.recommendation: Recommendation | None = None
        self.folder = folder or Path.cwd()
        self.written: set[str] = set()  # files this wizard wrote for this recommendation: writing them again is not an error
        self.target: Path | None = None  # where they go (_target)
        self.rooms: tuple = ()  # this box's GPUs' free room when recommended (detected GPU only): the files say it

    def compose(self) -> ComposeResult:
        yield Static("sft-tui · should we fine-tune? (ICL, RAG, LoRA/QLoRA or full)", id="title")
        with Vertical(id="wizard-asking"):
            yield Static("", id="wizard-question")
            yield Vertical(id="wizard-answer")
            yield Static("", id="wizard-hint")
            with Horizontal(id="wizard-buttons"):
                yield Button("< Back", id="prev", compact=True)
                yield Button("Next >", id="next", variant="primary", compact=True)
        yield Static("", id="result")  # the outcome and what run.toml will set
        with VerticalScroll(id="wizard-result-box"):
            yield Static("", id="wizard-details")
        yield Footer()

    async def on_mount(self) -> None:
        for button in self.query(Button):
            button.can_focus = False  # focus stays on the answer: the mouse can still click them
        self.query_one("#wizard-result-box").display = False
        self.query_one("#result").display = False
        await self.show_question()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Question keys while asking, file keys once there is a recommendation."""
        if action == "next":
            return self.recommendation is None
        if action in ("config", "record"):
            return self.recommendation is not None
        return True

    async def show_question(self) -> None:
        """Put the current question and an input for its kind on screen, focused."""
        q = self.spec.questions[self.index]
        descriptions = q.choice_descriptions() if q.kind == "choice" else {}
        text = f"[b]{self.index + 1}/{len(self.spec.questions)}  {q.text}[/b]"
        if len(descriptions) < len(q.choices) or q.kind != "choice":
            text += f"\n{q.help}"
        self.query_one("#wizard-question", Static).update(f"{text}\n[dim]why it matters: {q.why}[/dim]")
        box = self.query_one("#wizard-answer", Vertical)
        await box.remove_children()  # the old input must be gone before the new one takes its id
        current = self.raw.get(q.key, q.default)
        if q.kind in ("choice", "bool"):
            values = list(q.choices) if q.kind == "choice" else [True, False]
            labels = list(q.choices) if q.kind == "choice" else ["yes", "no"]
            widget = AnswerChoices(values, labels, descriptions, current, id="value")
            hint = "arrows and enter, or the option's number"
        else:
            widget = AnswerInput("" if current is None else str(current), id="value", compact=True,
                           type={"int": "integer", "float": "number"}.get(q.kind, "text"),
                           placeholder="empty: not given" if q.optional else "empty keeps the default",
                           suggester=self._model_suggester() if q.key == "model" else None)
            hint = "type the answer, then enter" + (" (empty: not given)" if q.optional else "")
        await box.mount(widget)
        self.query_one("#wizard-hint", Static).update(f"[dim]{hint}; esc: back a question[/dim]")
        widget.focus()

    @staticmethod
    def _model_suggester() -> SuggestFromList:
        from sft_tui.core.models.presets import list_model_presets

        return SuggestFromList([p.name for p in list_model_presets()], case_sensitive=False)

    def _take_answer(self, given: Any = None) -> bool:
        """Keep the answer if it is valid (a warning names the problem otherwise).

        `given` is the value when enter was pressed (text, or the option picked): keys typed
        right after enter reach the widget before its message is handled, and must not change it.
        """
        q = self.spec.questions[self.index]
        widget = self.query_one("#value")
        try:
            if isinstance(widget, AnswerChoices):
                value = widget.value if given is None else given
            else:
                text = (widget.value if given is None else given).strip()
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
        elif event.button.id == "prev":
            await self.action_back()

    def _is_current(self, widget: object) -> bool:
        """Keys typed ahead can reach the previous question's widget while the next one mounts: those are dropped, never applied to the new question."""
        found = self.query("#value")
        return bool(found) and found.first() is widget

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if self._is_current(event.input):
            await self.action_next(event.value)

    async def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if self._is_current(event.option_list):
            await self.action_next(event.option_list.values[event.option_index])

    async def action_next(self, given: Any = None) -> None:
        """Keep this answer and go on; after the last, recommend."""
        if self.recommendation is not None or not self._take_answer(given):
            return
        if self.index + 1 < len(self.spec.questions):
            self.index += 1
            await self.show_question()
        else:
            self.finish()

    async def action_back(self) -> None:
        """The previous question (from the recommendation: the last one); from the first, leave."""
        if self.recommendation is not None or self.query_one("#result").display:
            self.recommendation = None
            self.query_one("#wizard-result-box").display = False
            self.query_one("#result").display = False
            self.query_one("#wizard-asking").display = True
            self.refresh_bindings()
            await self.show_question()
        elif self.index > 0:
            self.index -= 1
            await self.show_question()
        else:
            self.action_leave()

    def finish(self) -> None:
        """Recommend from the answers (the estimator checks the method when model and GPU are known)."""
        self.written, self.target = set(), None  # new answers: new files, beside (never over) the ones written before
        self.answers = validate_answers(self.raw, self.spec)
        detected, count, self.rooms = None, 0, ()
        if self.answers.get("gpu_gib") is None:  # an answered GPU may be another machine's: the room here says nothing about it
            from sft_tui.core.decide.wizard import detected_box
            from sft_tui.core.estimate.fit import detected_gpus, rooms_on_this_box

            targets = detected_gpus(self.app.sampler)
            detected, count = detected_box([t.memory_gib for t in targets])  # GPU0's size, and the GPUs like it
            self.rooms = rooms_on_this_box(self.app.sampler, self.app.store) if targets else ()
        try:
            self.recommendation = recommend(self.answers, self.spec, detected, count)
            files = self._files()
            config = files.config
            outcome, _, details = render_recommendation(self.recommendation).partition("\n")
            summary = [f"[b]{outcome}[/b]"]
            if files.room is not None or files.shares is not None:
                summary.append(self._room_markup(files))
            if config is not None:
                # rows fit the screen (2 columns of indent, 1 of padding each side): a row with a long path drops its why
                summary += [f"{CONFIG_NAME} will set:"] + [f"  {line}" for line in config.summary_lines(self.size.width - 4)]
                for number, stage in enumerate(self.recommendation.stages[1:], 2):  # the file is stage 1: say what comes after it
                    after = "this run" if number == 2 else f"stage {number - 1}"
                    summary.append(f"then stage {number}: {stage.objective.upper()} from {after}'s "
                                   f"{'model' if config.recipe == 'full' else 'adapter'} (command in {CONFIG_NAME}'s header)")
                summary.append(f"[dim]enter writes {CONFIG_NAME} and {DECISION_NAME} here, then opens Launch[/dim]")
            else:
                summary.append(f"[dim]no run config: fine-tuning is not recommended · w: write {DECISION_NAME} · esc: back[/dim]")
        except UserError as exc:
            self.recommendation = None
            summary, details = [f"[b red]{exc.line()}[/]", "[dim]esc: back to the questions[/dim]"], ""
        self.query_one("#wizard-asking").display = False
        self.query_one("#result", Static).update("\n".join(summary))
        self.query_one("#result").display = True
        self.query_one("#wizard-details", Static).update(details.strip("\n"))
        self.query_one("#wizard-result-box").display = bool(details.strip())
        self.query_one("#wizard-result-box").focus()  # arrows scroll the reasons
        self.refresh_bindings()

    @staticmethod
    def _room_markup(files) -> str:
        """What the run gets on this box now, in at most two rows at 80 columns: the verdict's words, coloured."""
        from rich.markup import escape

        room, shares, peak = files.room, files.shares, files.config.peak_gib if files.config else None
        if shares is not None:  # a run on several GPUs: do that many have room for its per-GPU peak
            where = f"now: {shares.where()}, the run needs {shares.gpus}"
            fits_now, fits_ever = shares.fits_now, shares.fits_when_empty
        else:
            where = (f"GPU{room.gpu} now: {room.free_gib:.1f} of {room.total_gib:.1f} GiB free "
                     f"({room.other_gib:.1f} other, {room.reserved_gib:.1f} sft-tui runs)")
            fits_now, fits_ever = room.fits_now, room.empty_fit is not None
            if peak is None:
                return escape(f"{where}; give a model to know if the run starts now")
            where += f" · the run needs ~{peak:.1f} GiB"
        if fits_now:
            outlook, colour = "[b]✓ starts now[/b]", "green"
        elif fits_ever:
            outlook, colour = "[b]✗ waits in the queue[/b] (Queue, ctrl+o, on Launch)", "yellow"
        elif shares is not None:
            outlook, colour = f"[b]✗ only {len(shares.big_enough)} GPUs here hold it, even empty[/b]", "red"
        else:
            outlook, colour = "[b]✗ fits no GPU here, even empty[/b]", "red"
        return f"[{colour}]{escape(where)}: {outlook}[/]"

    def _target(self) -> Path:
        """The folder this recommendation's files go to: the current folder, or wizard-2/, wizard-3/ ... beside
        an earlier wizard's run.toml or decision.md (never overwritten; a run copies the decision.md beside its config)."""
        if self.target is None:
            taken = lambda folder: (folder / CONFIG_NAME).exists() or (folder / DECISION_NAME).exists()  # noqa: E731
            self.target = self.folder
            number = 2
            while taken(self.target):
                self.target = self.folder / f"wizard-{number}"
                number += 1
        return self.target

    def _files(self):
        from sft_tui.core.decide.starter import wizard_files

        return wizard_files(self.answers, self.recommendation, self.spec, config_dir=self._target(), rooms=self.rooms,
                            config_name=CONFIG_NAME)

    def _write(self, name: str, text: str) -> bool:
        """Write a file into the target folder (a file this wizard wrote already counts as written)."""
        from sft_tui.core.decide.starter import write_new

        if name in self.written:
            return True
        try:
            write_new(self._target() / name, text)
        except (UserError, OSError) as exc:
            self.app.notify(exc.line() if isinstance(exc, UserError) else f"{exc.filename}: {exc.strerror}", severity="warning")
            return False
        self.written.add(name)
        return True

    def _where(self) -> str:
        moved = f" ({CONFIG_NAME} or {DECISION_NAME} was already in {self.folder})" if self._target() != self.folder else ""
        return f"{self._target()}{moved}"

    def action_record(self) -> None:
        """Write decision.md (answers, outcome, reasons, estimate, what the run config sets)."""
        if self.recommendation is not None and self._write(DECISION_NAME, self._files().record):
            self.app.notify(f"wrote {DECISION_NAME} in {self._where()}")

    def action_config(self) -> None:
        """Write run.toml and decision.md from the answers, then open Launch on run.toml."""
        if self.recommendation is None:
            return
        files = self._files()
        if files.config is None:
            self.app.notify(f"fine-tuning is not recommended: no run config to write (w writes {DECISION_NAME})", severity="warning")
            return
        record = self._write(DECISION_NAME, files.record)
        if self._write(CONFIG_NAME, files.config.text):
            from sft_tui.tui.screens.launch import LaunchScreen

            self.app.notify(f"wrote {CONFIG_NAME}{' and ' + DECISION_NAME if record else ''} in {self._where()}")
            self.app.push_screen(LaunchScreen(str(self._target() / CONFIG_NAME)))

    def action_leave(self) -> None:
        """Back to the runs."""
        self.app.pop_screen()
