"""Launch: a run config, overrides and the same pre-flight as `sft-tui train`, then the monitor."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from sft_tui.tui.screens.base import CockpitScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from sft_tui.core.errors import UserError


def _presets() -> list[str]:
    from sft_tui.core.models.presets import list_model_presets

    return [p.name for p in list_model_presets()]


def parse_overrides(text: str) -> list[str]:
    """'training.lr=1e-4, method.lora_r=32' or space-separated -> ['training.lr=1e-4', 'method.lora_r=32']."""
    return [part.strip() for chunk in text.split(",") for part in chunk.split() if part.strip()]


class LaunchScreen(CockpitScreen):
    """Check a run config (data, weights, fit, disk) and launch it."""

    BINDINGS = [Binding("escape", "back", "Back"), Binding("ctrl+q", "app.quit", "Quit")]

    def __init__(self, config: str = "run.toml") -> None:
        super().__init__()
        self.config = config
        self.output: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("sft-tui · launch a run (the same checks as `sft-tui train`)", id="title")
        with VerticalScroll(id="launch-form"):
            yield Label("run config (TOML); if it does not exist yet, it is written from the three fields below")
            yield Input(self.config, id="config")
            yield Label("recipe")
            yield Select([(r, r) for r in ("lora", "qlora", "full")], value="lora", allow_blank=False, id="recipe")
            yield Label("model (preset, folder with weights, or cached repo id)")
            yield Input("qwen2.5-1.5b", id="model", suggester=SuggestFromList(_presets(), case_sensitive=False))
            yield Label("training data (JSONL, JSON, CSV or Parquet)")
            yield Input("train.jsonl", id="data")
            yield Label("overrides (section.key=value, comma or space separated)")
            yield Input("", id="overrides", placeholder="training.lr=1e-4 method.lora_r=32")
            yield Checkbox("launch even if the estimate says it does not fit", False, id="force")
            with Horizontal(id="launch-buttons"):
                yield Button("Check", id="check")
                yield Button("Launch", id="launch", variant="primary")
            yield Static("", id="launch-output")
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.run_preflight(launch=event.button.id == "launch")

    @work(thread=True, exclusive=True, exit_on_error=False)
    def run_preflight(self, launch: bool) -> None:
        """Pre-flight in a worker thread (it reads every data row); launch when asked and it passes."""
        from sft_tui.core.runs.preflight import preflight, start_run

        lines: list[str] = []
        config = Path(self.query_one("#config", Input).value.strip()).expanduser()
        overrides = parse_overrides(self.query_one("#overrides", Input).value)
        force = bool(self.query_one("#force", Checkbox).value)
        try:
            if not config.exists():
                from sft_tui.core.config.starter import starter_config_text
                from sft_tui.core.models.modelspec import resolve_model

                model = self.query_one("#model", Input).value.strip()
                resolve_model(model)  # an unknown model fails here, before a file is written
                config.parent.mkdir(parents=True, exist_ok=True)
                config.write_text(starter_config_text(model=model, recipe=str(self.query_one("#recipe", Select).value),
                                                      data=self.query_one("#data", Input).value.strip()), encoding="utf-8")
                lines.append(f"wrote {config} from the fields above")
            resolved = preflight(config, overrides, force, note=lines.append, store=self.app.store, sampler=self.app.sampler)
            if launch:
                run = start_run(resolved, str(config), out=lines.append, launch_fn=self.app.launch_fn, store=self.app.store)
                self.app.call_from_thread(self.app.open_monitor, run.id)
            else:
                lines.append(f"{config}: all checks passed; press Launch")
        except UserError as exc:
            lines.append(f"[b red]{exc.line()}[/]")
        self.output = lines
        self.app.call_from_thread(self.query_one("#launch-output", Static).update, "\n".join(lines))

    def action_back(self) -> None:
        """Back to the runs."""
        self.app.pop_screen()
