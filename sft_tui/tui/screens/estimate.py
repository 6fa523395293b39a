"""Estimator: pick a model and settings; the memory breakdown, fit, limits and suggestions follow as you type."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from sft_tui.tui.screens.base import CockpitScreen
from textual.suggester import SuggestFromList
from textual.widgets import Checkbox, Footer, Input, Label, Select, Static

from sft_tui.core.config.schema import METHODS, OPTIMIZERS
from sft_tui.core.errors import UserError


def _presets() -> list[str]:
    from sft_tui.core.models.presets import list_model_presets

    return [p.name for p in list_model_presets()]


class EstimateScreen(CockpitScreen):
    """A form on the left, the live estimate on the right."""

    BINDINGS = [Binding("escape", "back", "Back"), Binding("q", "app.quit", "Quit")]

    def __init__(self, gpu_gib: float | None = None) -> None:
        super().__init__()
        self.gpu_gib = gpu_gib
        self.report = ""
        self._pending = None

    def compose(self) -> ComposeResult:
        yield Static("sft-tui · estimate memory and time (changes recompute at once)", id="title")
        with Horizontal(id="estimate-body"):
            with VerticalScroll(id="form"):
                yield Label("model (preset, folder or cached repo id)")
                yield Input("qwen2.5-1.5b", id="model", suggester=SuggestFromList(_presets(), case_sensitive=False))
                yield Label("method")
                yield Select([(m, m) for m in METHODS], value="lora", allow_blank=False, id="method")
                yield Label("sequence length")
                yield Input("2048", id="seq_len", type="integer")
                yield Label("micro-batch")
                yield Input("1", id="batch_size", type="integer")
                yield Checkbox("gradient checkpointing", True, id="gradient_checkpointing")
                yield Label("optimizer")
                yield Select([(o, o) for o in OPTIMIZERS], value="adamw_torch", allow_blank=False, id="optimizer")
                yield Label("precision")
                yield Select([(p, p) for p in ("bf16", "fp16", "fp32")], value="bf16", allow_blank=False, id="precision")
                yield Label("LoRA rank")
                yield Input("16", id="lora_r", type="integer")
                yield Label("LoRA targets (all-linear or q,v,...)")
                yield Input("all-linear", id="lora_targets")
                yield Label("GPU memory GiB (empty: detected)")
                yield Input("" if self.gpu_gib is None else f"{self.gpu_gib:g}", id="gpu_gib", type="number")
            yield VerticalScroll(Static("", id="report"), id="report-box")
        yield Footer()

    def on_mount(self) -> None:
        self.recompute()

    def on_input_changed(self, _event: Input.Changed) -> None:
        self._schedule()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self._schedule()

    def on_checkbox_changed(self, _event: Checkbox.Changed) -> None:
        self._schedule()

    def _schedule(self) -> None:
        # typing fires an event per key: recompute once the keys stop (estimates take ~2 ms, drawing is the cost)
        if self._pending is not None:
            self._pending.stop()
        self._pending = self.set_timer(0.15, self.recompute)

    def _value(self, widget_id: str) -> str:
        return str(self.query_one(f"#{widget_id}").value).strip()

    def recompute(self) -> None:
        """Estimate with the form's values; a mistake shows as one line instead of the report."""
        from sft_tui.core.estimate.fit import GpuTarget, build_estimate, detected_gpu
        from sft_tui.core.estimate.report import render_estimate
        from sft_tui.core.estimate.memory import TrainSettings
        from sft_tui.core.models.modelspec import resolve_model

        try:
            numbers = {}
            for name in ("seq_len", "batch_size", "lora_r"):
                text = self._value(name)
                if not text.lstrip("-").isdigit():
                    raise UserError(f"{name.replace('_', ' ')} must be a whole number", name)
                numbers[name] = int(text)
            targets = tuple(t.strip() for t in self._value("lora_targets").split(",") if t.strip()) or ("all-linear",)
            settings = TrainSettings(method=self._value("method"), optimizer=self._value("optimizer"), precision=self._value("precision"),
                                     gradient_checkpointing=bool(self.query_one("#gradient_checkpointing", Checkbox).value),
                                     lora_targets=targets, **numbers)
            gpu_text = self._value("gpu_gib")
            gpu = GpuTarget(f"{float(gpu_text):g} GiB GPU", float(gpu_text), None, "form") if gpu_text else detected_gpu(self.app.sampler)
            self.report = render_estimate(build_estimate(resolve_model(self._value("model")), settings, gpu))
        except UserError as exc:
            self.report = f"[b red]{exc.line()}[/]"
        except ValueError as exc:
            self.report = f"[b red]{exc}[/]"
        self.query_one("#report", Static).update(self.report)

    def action_back(self) -> None:
        """Back to the runs."""
        self.app.pop_screen()
