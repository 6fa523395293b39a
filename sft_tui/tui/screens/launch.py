"""Launch: a run config, overrides and the same pre-flight as `sft-tui train`, then the monitor.

What the form shows is what launches. When the config file exists, its recipe, model
and data fill the fields; a field changed on screen is passed as an override
(`--set`), and the resolved config's own values are printed before anything starts.
When it does not exist, it is written from the fields. After a launch the screen stack
is Home + Monitor: `esc` from the monitor lands on Home. Queue (ctrl+o) puts the run in the
shared box's queue instead (core/runs/queue.py): it starts when a GPU has room for it, so
the screen goes back to Home, where the run shows its place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import (
    Button,
    Checkbox,
    Footer,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Static,
)

from sft_tui.core.config.gpus import gpu_count
from sft_tui.core.errors import UserError
from sft_tui.tui.screens.base import CockpitScreen

RECIPES = ("lora", "qlora", "full")


def _presets() -> list[str]:
    from sft_tui.core.models.presets import list_model_presets

    return [p.name for p in list_model_presets()]


def parse_overrides(text: str) -> list[str]:
    """'training.lr=1e-4, method.lora_r=32' or space-separated -> ['training.lr=1e-4', 'method.lora_r=32']."""
    return [part.strip() for chunk in text.split(",") for part in chunk.split() if part.strip()]


class MarkedRadioButton(RadioButton):
    """A radio button whose dot shows only when it is on, so the choice reads without colour."""

    @property
    def BUTTON_INNER(self) -> str:  # the name ToggleButton reads
        return "●" if self.value else " "


class MarkedCheckbox(Checkbox):
    """A checkbox whose X shows only when it is ticked, so its state reads without colour."""

    @property
    def BUTTON_INNER(self) -> str:  # the name ToggleButton reads
        return "X" if self.value else " "


@dataclass(frozen=True)
class FormFields:
    """The recipe, model and data a config file names (raw, as written) or the form shows."""

    recipe: str
    model: str
    data: str


def fields_in_file(path: Path) -> FormFields:
    """The recipe, model and data of a config file as written (a missing one is ''; a bad file raises UserError)."""
    from sft_tui.core.config.tomlfile import load_toml_file

    data, _ = load_toml_file(path)

    def section(name: str) -> dict:
        return data[name] if isinstance(data.get(name), dict) else {}

    # no recipe and no method: the schema's default method, lora (so an untouched form adds no recipe the file lacks)
    recipe = data.get("recipe") or section("method").get("name") or "lora"
    return FormFields(str(recipe), str(section("model").get("name", "")), str(section("data").get("train", "")))


def field_overrides(shown: FormFields, in_file: FormFields, config_dir: Path) -> list[str]:
    """`section.key=value` overrides for the fields shown that differ from the file, so the form is what launches.

    A path typed in the form is read like the file's own: relative to the config's folder.
    """
    out = []
    if shown.recipe != in_file.recipe:
        out += [f"recipe={shown.recipe}", f"method.name={shown.recipe}"]  # the method too: a file's [method] name would win over the recipe
    if shown.model != in_file.model:
        local = config_dir / Path(shown.model).expanduser()
        out.append(f"model.name={local.resolve() if shown.model and local.exists() else shown.model}")
    if shown.data != in_file.data:
        out.append(f"data.train={(config_dir / Path(shown.data).expanduser()).resolve() if shown.data else ''}")
    return out


@dataclass(frozen=True)
class LaunchRequest:
    """Everything the pre-flight worker needs, read from the form in the UI thread."""

    config: Path
    shown: FormFields
    overrides: tuple[str, ...]
    force: bool
    launch: bool
    queue: bool = False  # launch through the queue: start when a GPU has room


class LaunchScreen(CockpitScreen):
    """Check a run config (data, weights, fit, disk) and launch it."""

    CSS_PATH = "launch.tcss"
    # ctrl+o for Queue: the fields' Input takes ctrl+e and ctrl+u, Textual takes ctrl+q
    BINDINGS = [Binding("ctrl+r", "check", "Check"), Binding("ctrl+l", "launch", "Launch"), Binding("ctrl+o", "queue", "Queue"),
                Binding("escape", "back", "Back"), Binding("ctrl+q", "app.quit", "Quit", show=False)]

    def __init__(self, config: str = "run.toml") -> None:
        super().__init__()
        self.config = config
        self.output: list[str] = []
        self.filled_from: Path | None = None  # the config file whose values fill the fields

    def compose(self) -> ComposeResult:
        yield Static("sft-tui · launch a run (the same checks as `sft-tui train`)", id="title")
        with Grid(id="launch-fields"):
            yield Label("config")
            yield Input(self.config, id="config", compact=True, placeholder="run config TOML: read if it exists, else written from the fields")
            yield Label("recipe")
            with RadioSet(id="recipe", compact=True):
                for recipe in RECIPES:
                    yield MarkedRadioButton(recipe, value=recipe == "lora")
            yield Label("model")
            yield Input("qwen2.5-1.5b", id="model", compact=True, placeholder="preset, model folder or cached repo id",
                        suggester=SuggestFromList(_presets(), case_sensitive=False))
            yield Label("data")
            yield Input("train.jsonl", id="data", compact=True, placeholder="required: the training file (JSONL, JSON, CSV or Parquet)")
            yield Label("overrides")
            yield Input("", id="overrides", compact=True, placeholder="section.key=value ..., e.g. training.lr=1e-4 method.lora_r=32")
        with Horizontal(id="launch-actions"):
            yield MarkedCheckbox("launch even if it does not fit", False, id="force", compact=True)
            yield Button("Check", id="check", compact=True)
            yield Button("Launch", id="launch", variant="primary", compact=True)
            yield Button("Queue", id="queue", compact=True)
        yield Static("", id="launch-source")
        with VerticalScroll(id="launch-report-box"):
            yield Static("", id="launch-report")
        yield Footer()

    def on_mount(self) -> None:
        self.fill_from_file()
        data = self.query_one("#data", Input)
        (data if not data.value else self.query_one("#config", Input)).focus()  # the field still to fill in, when there is one

    # -- the form ---------------------------------------------------------------------------

    def _config_path(self) -> Path:
        return Path(self.query_one("#config", Input).value.strip()).expanduser()

    def _shown(self) -> FormFields:
        recipe = RECIPES[max(self.query_one("#recipe", RadioSet).pressed_index, 0)]
        return FormFields(recipe, self.query_one("#model", Input).value.strip(), self.query_one("#data", Input).value.strip())

    def fill_from_file(self) -> None:
        """Fill recipe, model and data from the config file when it exists (once per file), and say where they came from."""
        path = self._config_path()
        source = self.query_one("#launch-source", Static)
        if not path.is_file():
            self.filled_from = None
            source.update(f"[dim]{path} does not exist yet: Check writes it from these fields[/dim]")
            return
        if self.filled_from == path.resolve():
            return
        try:
            found = fields_in_file(path)
        except UserError as exc:
            source.update(f"[b red]{exc.line()}[/]")
            return
        self.filled_from = path.resolve()
        if found.recipe in RECIPES:
            self.query_one("#recipe", RadioSet).query(RadioButton)[RECIPES.index(found.recipe)].value = True
        self.query_one("#model", Input).value = found.model
        self.query_one("#data", Input).value = found.data
        source.update(f"[dim]fields read from {path}; a field you change is passed as an override[/dim]")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "config":
            self.fill_from_file()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_check()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._start(launch=event.button.id in ("launch", "queue"), queue=event.button.id == "queue")

    def action_check(self) -> None:
        """Run the pre-flight checks without launching."""
        self._start(launch=False)

    def action_launch(self) -> None:
        """Run the pre-flight checks and launch when they pass."""
        self._start(launch=True)

    def action_queue(self) -> None:
        """Run the pre-flight checks and queue the run when they pass: it starts when a GPU has room."""
        self._start(launch=True, queue=True)

    def _start(self, launch: bool, queue: bool = False) -> None:
        self.fill_from_file()  # a path typed a moment ago: its values, not the previous ones
        request = LaunchRequest(self._config_path(), self._shown(), tuple(parse_overrides(self.query_one("#overrides", Input).value)),
                                bool(self.query_one("#force", Checkbox).value), launch, queue)
        self.query_one("#launch-report", Static).update("checking...")
        self.run_preflight(request)

    # -- the work -----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False)
    def run_preflight(self, request: LaunchRequest) -> None:
        """Pre-flight in a worker thread (it reads every data row); launch when asked and it passes."""
        from sft_tui.core.runs.preflight import PlacementRequest, preflight, start_run

        lines: list[str] = []
        config, shown = request.config, request.shown
        opened: str | None = None
        queued: str | None = None
        try:
            if not shown.data and not any(o.startswith("data.train=") for o in request.overrides):
                raise UserError("no training data", "data", "type the path of your training file (JSONL, JSON, CSV or Parquet) in the data field")
            overrides = list(request.overrides)
            if not config.exists():
                self._write_config(config, shown, lines)
            else:
                from_fields = field_overrides(shown, fields_in_file(config), config.resolve().parent)
                if from_fields:
                    lines.append("from the form: " + " ".join(from_fields))
                overrides = from_fields + overrides  # typed overrides last: they win, as --set does
            resolved = preflight(config, overrides, request.force, note=lines.append, store=self.app.store, sampler=self.app.sampler)
            c = resolved.config
            copies = c.distributed.processes or gpu_count(c.distributed.gpus)  # "all": counted when it starts
            lines.append(f"launches: {c.method.name} on {c.model.name}, data {c.data.train}, max_seq_length {c.training.max_seq_length}, "
                         f"micro-batch {c.training.micro_batch_size} x {c.training.gradient_accumulation_steps}"
                         + (f" x {copies} processes" if copies > 1 else ""))
            if request.launch:
                run = start_run(resolved, str(config), out=lines.append, launch_fn=self.app.launch_fn, store=self.app.store,
                                request=PlacementRequest(queue=request.queue), sampler=self.app.sampler, force=request.force)
                queued, opened = (self._queued_line(run), None) if request.queue else (None, run.id)
            else:
                lines.append(f"{config}: all checks passed; ctrl+l launches it, ctrl+o queues it")
        except UserError as exc:
            lines.append(f"[b red]{exc.line()}[/]")
        self.output = lines
        self.app.call_from_thread(self.query_one("#launch-report", Static).update, "\n".join(lines))
        self.app.call_from_thread(self.fill_from_file)  # a config written from the fields is now the file they come from
        if opened is not None:  # last: this screen is closed by it
            self.app.call_from_thread(self.show_monitor, opened)
        elif queued is not None:
            self.app.call_from_thread(self.show_home, queued)

    def _queued_line(self, run) -> str:
        """`queued run X at position N`, read back from the queue (a run that fitted at once may have left it already)."""
        from sft_tui.core.runs.queue_edits import queued_runs

        position = next((q.position for q in queued_runs(self.app.store) if q.id == run.id), None)
        if position is None:
            return f"queued run {run.id}; there was room, so it is starting"
        return f"queued run {run.id} at position {position}; it starts when there is room for it (s on Home cancels it)"

    @staticmethod
    def _write_config(config: Path, shown: FormFields, lines: list[str]) -> None:
        """Write a starter config from the fields (an unknown model fails first, before any file)."""
        from sft_tui.core.config.starter import starter_config_text
        from sft_tui.core.models.modelspec import resolve_model

        resolve_model(shown.model)
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(starter_config_text(model=shown.model, recipe=shown.recipe, data=shown.data), encoding="utf-8")
        lines.append(f"wrote {config} from the fields above")

    async def show_monitor(self, run_id: str) -> None:
        """Go back to Home (closing Launch and the wizard) and open the run's monitor on top of it."""
        await self._back_to_home()
        self.app.open_monitor(run_id)

    async def show_home(self, line: str) -> None:
        """Go back to Home after queueing (nothing to monitor yet), say where the run is, and list it."""
        app = self.app
        await self._back_to_home()
        app.notify(line, title="queued", timeout=15)
        app.poll_runs()

    async def _back_to_home(self) -> None:
        home = self.app.get_screen("home")
        while self.app.screen is not home and len(self.app.screen_stack) > 1:
            await self.app.pop_screen()

    def action_back(self) -> None:
        """Back to where Launch was opened from."""
        self.app.pop_screen()
