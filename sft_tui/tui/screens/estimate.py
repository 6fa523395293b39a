"""Estimator: the verdict (peak vs the GPU, fits or not, the limits, the time) on top; the form and the breakdown below.

Every change recomputes with the same estimator as `sft-tui estimate` (core.estimate.fit
.build_estimate). The screen is built for an 80x24 pane: the verdict never scrolls away,
form fields take one row each, the breakdown scrolls on its own (pgup/pgdn from any field).
With a detected GPU picked, the verdict adds what the run gets on this box now (the queue's
free room, sampled again every few seconds in a thread): starts now, or waits in the queue.
GPUs above 1 (and a strategy, DDP or FSDP full shard, shown only then) make every figure one
GPU's, as `sft-tui estimate --gpus N --strategy S` does: the verdict opens with the CLI's
"per GPU (N GPUs, ...)" line and the fit is against one GPU's memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.suggester import SuggestFromList
from textual.widgets import Checkbox, Footer, Input, Label, OptionList, Select, Static

from sft_tui.core.config.schema import METHODS, OBJECTIVES, OPTIMIZERS
from sft_tui.core.errors import UserError
from sft_tui.core.estimate.fit import Estimate, GpuTarget, RoomNow
from sft_tui.core.estimate.sharding import STRATEGY_NAMES, headline
from sft_tui.core.runs.placement import GpuRoom
from sft_tui.core.units import GIB
from sft_tui.tui.screens.base import CockpitScreen

VERDICT_WIDTH = 78  # the verdict's lines fit an 80-column pane (padding 1 each side)
ROOM_EVERY_POLLS = 5  # free room is sampled again every this many app polls (5 s by default): it changes, the GPUs do not
NO_GPU = "none"  # the GPU choice when nothing was detected and none was picked
MAX_GPUS = 64  # one box or several: what the GPUs field takes
_FIELD_LABELS = {"--method": "method", "--optimizer": "optimizer", "--precision": "precision", "--seq-len": "seq len",
                 "--batch-size": "micro-batch", "--grad-accum": "accumulation", "--lora-r": "LoRA rank", "--lora-targets": "LoRA on",
                 "--gpus": "GPUs", "--strategy": "strategy"}
_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_FILL = {"weights": "█", "trainable": "▓", "gradients": "▒", "optimizer": "░", "activations": "▚", "logits": "▞", "reference": "▄", "overhead": "▪"}


def parse_token_count(text: str) -> float | None:
    """'10M', '1.5b', '250k', '1e7' or '10,000,000' as a number of tokens; '' is None; anything else raises UserError."""
    cleaned = text.strip().lower().replace(",", "").replace("_", "").replace(" ", "")
    if not cleaned:
        return None
    scale = _SUFFIXES.get(cleaned[-1], 1.0)
    number = cleaned[:-1] if cleaned[-1] in _SUFFIXES else cleaned
    try:
        tokens = float(number) * scale
    except ValueError:
        raise UserError(f"{text.strip()!r} is not a token count", "tokens", "type e.g. 10M, 250k or 1500000") from None
    if not tokens > 0 or tokens == float("inf"):
        raise UserError(f"must be more than 0, got {text.strip()!r}", "tokens", "type e.g. 10M (dataset tokens x epochs)")
    return tokens


def format_count(n: float) -> str:
    """10000000 -> '10M', 1500 -> '1.5k': token counts as people say them."""
    for suffix, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.0f}"


def format_duration(seconds: float) -> str:
    """Seconds as minutes, hours or days, whichever reads best."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@dataclass
class RoomsSampled(Message):
    """The GPUs' free room now (NVML and the admitted runs), sampled in a thread."""

    rooms: tuple[GpuRoom, ...]


@dataclass(frozen=True)
class FormOutcome:
    """What the form's values gave: an estimate (and the token count), or one line saying what to fix."""

    estimate: Estimate | None = None
    tokens: float | None = None
    problem: str = ""


def usage_bar(e: Estimate, width: int) -> str:
    """The peak against the GPU's memory, a fill character per term, free memory as '·' (full when it does not fit)."""
    scale = max(e.gpu.memory_gib if e.gpu else 0.0, e.memory.peak_gib) or 1.0
    cells = "".join(_FILL[t.key] * max(1, round(width * t.bytes / GIB / scale)) for t in e.memory.terms if t.bytes > 0)[:width]
    return cells + "·" * (width - len(cells))


def verdict_text(outcome: FormOutcome) -> str:
    """The four lines that answer 'does it fit, how far can I push it, how long' (one more on top on several GPUs): Rich markup."""
    if outcome.problem:
        return f"[b red]✗ {escape(outcome.problem)}[/]"
    e = outcome.estimate
    if e is None:
        return "estimating…"
    m, s = e.memory, e.memory.settings
    effective = s.batch_size * s.grad_accum * s.gpus  # each GPU steps its own micro-batches
    # several GPUs: the global batch, the name distributed training gives it
    batch_line = (f"global batch {effective} ({s.batch_size} × {s.grad_accum} accum × {s.gpus} GPUs)" if s.gpus > 1
                  else f"effective batch {effective} ({s.batch_size} × {s.grad_accum} accum)")
    # on several GPUs the memory is one GPU's (the time is the whole run's): said first, in the CLI report's words
    per_gpu = f"[b]{headline(s)}[/]: every memory figure below is one GPU's\n" if s.gpus > 1 else ""
    if e.gpu is None:
        return (f"{per_gpu}[b]peak {m.peak_gib:.2f} GiB[/] · no NVIDIA GPU detected here\n"
                "[b yellow]? fit unknown[/]: pick a GPU by name in the GPU field, or type its GiB\n"
                f"{batch_line}\ntime: needs a GPU picked by name")
    notes = f" · [yellow]{len(e.notes)} note{'s' if len(e.notes) > 1 else ''} below[/]" if e.notes else ""
    lines = [f"[b]peak {m.peak_gib:.2f} GiB[/] of {e.gpu.memory_gib:.1f} GiB · {escape(e.gpu.name)} ({e.gpu.source}){notes}"]
    bar = usage_bar(e, 24)
    if e.fits:
        fits = "✓ fits each GPU" if per_gpu else "✓ fits"
        lines.append(f"[b green]{fits}[/], {e.headroom_gib:.1f} GiB headroom  [green]{bar}[/] {m.peak_gib / e.gpu.memory_gib:.0%} used")
    else:
        over = f"✗ does NOT fit: {-e.headroom_gib:.1f} GiB over"
        fix = next((x for x in e.suggestions if x.fits), None)
        hint = f" · try: {_clip(fix.change, VERDICT_WIDTH - len(over) - 19)} ({fix.peak_gib:.1f} GiB)" if fix else " · see below"
        lines.append(f"[b red]{over}[/]{escape(hint)}")
    if e.max_batch_size or e.max_seq_len:
        batch = e.max_batch_size or "none"
        seq = f"{e.max_seq_len:,}" if e.max_seq_len else "none"
        lines.append(f"largest micro-batch at seq {s.seq_len:,}: [b]{batch}[/] · longest seq at micro-batch {s.batch_size}: [b]{seq}[/]")
    else:
        lines.append(f"no micro-batch fits at seq {s.seq_len:,}, no sequence at micro-batch {s.batch_size}")
    time_line = _time_line(e, outcome.tokens)
    if len(Text.from_markup(f"{batch_line} · {time_line}").plain) > VERDICT_WIDTH:  # big numbers: the how goes, the batch stays
        batch_line = batch_line.split(" (")[0]
    lines.append(f"{batch_line} · {time_line}")
    if e.room:
        lines.append(room_verdict(e.room))
    return per_gpu + "\n".join(lines)


def room_verdict(room: RoomNow) -> str:
    """One verdict line: the free room on the GPU a run started now would get, and whether it starts or waits (markup)."""
    if room.fits_now:
        outlook = "[b green]✓ starts now[/]"
    elif room.empty_fit is not None:
        outlook = "[b yellow]✗ waits: queue it[/]"
    else:
        outlook = "[b red]✗ no GPU here holds it[/]"
    free = f"GPU{room.gpu} now: {room.free_gib:.1f} of {room.total_gib:.1f} GiB free"
    width = VERDICT_WIDTH - len(Text.from_markup(outlook).plain) - 3
    # the split between other processes and sft-tui runs goes when the line would wrap (the breakdown has it)
    where = next((w for w in (f"{free} ({room.other_gib:.1f} other, {room.reserved_gib:.1f} sft-tui)",
                              f"{free} ({room.other_gib + room.reserved_gib:.1f} in use)") if len(w) <= width), free)
    return f"{escape(_clip(where, width))} · {outlook}"


def _time_line(e: Estimate, tokens: float | None) -> str:
    if e.time is None:
        return "time: pick the GPU by name for one"
    speed = f"~{e.time.tokens_per_s:,.0f} tok/s"
    if tokens is None:
        return f"{speed} · type tokens for a time"
    return f"{speed} · {format_count(tokens)} tokens: [b]~{format_duration(e.time.eta_s)}[/]"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 8)] + "…"


def breakdown_lines(outcome: FormOutcome) -> list[tuple[str, str]]:
    """Where the peak goes term by term, how to make it fit, model, time, notes, assumptions.

    (markup, kind) pairs: kind 'head' is a line of its own, 'item' a wrapped line indented
    under the one before it, 'bullet' an item of a list, '' a blank line.
    """
    e = outcome.estimate
    if e is None:
        return []
    m, s = e.memory, e.memory.settings
    out = []
    if e.notes:  # first: they change what to do (no bf16 on this GPU, a sequence beyond the context window)
        out += [("[b yellow]notes[/]", "head")] + [(escape(note), "bullet") for note in e.notes] + [("", "")]
    out.append((f"[b]where the {m.peak_gib:.2f} GiB{' per GPU' if s.gpus > 1 else ''} go[/] (peak at the {m.phase})", "head"))
    for term in m.terms:
        gib = term.bytes / GIB
        filled = round(12 * gib / m.peak_gib) if m.peak_gib else 0
        out.append((f"{term.key:<12}{gib:7.2f} GiB {_FILL[term.key] * filled}{'·' * (12 - filled)}", "head"))
        out.append((f"[dim]{escape(f'{term.label}: ' if term.label else '')}{escape(term.explanation)}[/]", "item"))
    if e.suggestions:
        out += [("", ""), ("[b]to make it fit[/]", "head")]
        out += [(f"{'[green]fits[/]' if x.fits else 'no  '} {x.peak_gib:6.2f} GiB  {escape(x.change)}", "item") for x in e.suggestions]
    if e.room:  # what `sft-tui train` would do now, in the words the verdict shortens
        out += [("", ""), ("[b]on this box now[/]", "head"), (escape(f"{e.room.where()}: {e.room.outlook()}"), "item"),
                ("[dim]a run started now goes to the GPU with the most free room; a queued one waits for room[/]", "item")]
    share = 100 * m.trainable_params / m.params
    out += [("", ""), ("[b]model[/]", "head"),
            (f"{escape(m.model)}: {m.params / 1e9:.2f}B params, {m.trainable_params / 1e6:.1f}M trainable ({share:.2f}%)", "item")]
    if e.time:
        t = e.time
        spread = f" {t.spread_note()}" if t.gpus > 1 else ""  # the whole run's rate: N GPUs at an assumed scaling
        speed = (f"~{t.tokens_per_s:,.0f} tokens/s{spread}, assuming {t.utilisation:.0%} of the GPU's {t.peak_tflops:g} TFLOP/s "
                 f"({t.flops_per_token / 1e9:.1f} GFLOP per token): measure on your data to know")
        out += [("", ""), ("[b]time[/]", "head"), (speed, "item")]
        if outcome.tokens:
            effective = s.batch_size * s.grad_accum * s.gpus
            steps = math.ceil(outcome.tokens / (effective * s.seq_len))
            eta = (f"{format_count(outcome.tokens)} tokens: ~{format_duration(t.eta_s)}, at least {steps:,} optimizer steps "
                   f"of {effective} sequence{'s' if effective > 1 else ''} (more when sequences are shorter than {s.seq_len:,})")
            out.append((eta, "item"))
    out += [("", ""), ("[b]assumptions[/]", "head")] + [(escape(a), "bullet") for a in m.assumptions]
    return out


def _breakdown_renderable(outcome: FormOutcome):
    """The breakdown lines as a Rich group: items wrap with a hanging indent so the term names stay readable."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    def line(markup: str, kind: str):
        text = Text.from_markup(markup)
        if kind == "item":
            return Padding(text, (0, 0, 0, 2))
        if kind == "bullet":
            row = Table.grid()
            row.add_column(width=4)
            row.add_column(ratio=1)
            row.add_row("  - ", text)
            return row
        return text

    return Group(*(line(markup, kind) for markup, kind in breakdown_lines(outcome)))


def _presets() -> list[str]:
    from sft_tui.core.models.presets import list_model_presets

    return [p.name for p in list_model_presets()]


def _short_gpu_name(name: str) -> str:
    for vendor in ("NVIDIA ", "GeForce ", "Tesla "):
        name = name.replace(vendor, "")
    return name


def _field(label: str, widget, row_id: str | None = None) -> Horizontal:
    """One form row: a fixed-width label, then the field (the label lights up while the field has focus)."""
    return Horizontal(Label(label, classes="field-label"), widget, classes="field", id=row_id)


class EstimateScreen(CockpitScreen):
    """The verdict across the top; the form on the left and the breakdown on the right below it."""

    CSS_PATH = "estimate.tcss"
    AUTO_FOCUS = "#model"  # the first key typed edits the model, not a scroll container
    # no `q` to quit: in a form a stray q on a Select or the breakdown would end the app (ctrl+q still does)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        # priority: every field (Input is a scroll view) binds pgup/pgdn to scroll itself
        Binding("pagedown", "scroll_breakdown(1)", "Breakdown ↓", priority=True),
        Binding("pageup", "scroll_breakdown(-1)", "Breakdown ↑", show=False, priority=True),
    ]

    outcome: reactive[FormOutcome] = reactive(FormOutcome, init=False)

    def __init__(self, gpu_gib: float | None = None) -> None:
        super().__init__()
        self.gpu_gib = gpu_gib
        self._pending = None
        self._detected: tuple[GpuTarget, ...] = ()
        self._rooms: tuple[GpuRoom, ...] = ()  # free room per detected GPU now (empty without a GPU)

    def compose(self) -> ComposeResult:
        from sft_tui.core.estimate.fit import detected_gpus
        from sft_tui.core.models.gpus import GPUS

        # the GPUs here do not change while the screen is open: ask NVML once (their free room is sampled again: sample_rooms)
        self._detected = detected_gpus(self.app.sampler)
        if self._detected:
            from sft_tui.core.estimate.fit import rooms_on_this_box

            self._rooms = rooms_on_this_box(self.app.sampler, self.app.store)
        # short option labels: the field is ~20 columns at 80x24 (the verdict shows the full name)
        detected = [(f"#{i} {_short_gpu_name(g.name)}", f"detected:{i}") for i, g in enumerate(self._detected)]
        gpu_choices = (detected or [("none detected", NO_GPU)]) + [(_short_gpu_name(g.name), g.key) for g in GPUS]

        yield Static("", id="verdict")
        with Horizontal(id="estimate-main"):
            # a plain Vertical (scrolling in CSS), not a VerticalScroll: its pgup/pgdn would shadow the screen's
            with Vertical(id="estimate-form"):
                yield _field("model", Input("qwen2.5-1.5b", id="model", compact=True, suggester=SuggestFromList(_presets(), case_sensitive=False)))
                yield _field("GPU", Select(gpu_choices, value=gpu_choices[0][1], allow_blank=False, id="gpu", compact=True))
                yield _field("tokens", Input("", id="tokens", compact=True, placeholder="e.g. 10M for a time"))
                yield _field("method", Select([(m, m) for m in METHODS], value="lora", allow_blank=False, id="method", compact=True))
                yield _field("objective", Select([(o, o) for o in OBJECTIVES], value="sft", allow_blank=False, id="objective", compact=True))
                yield _field("seq len", Input("2048", id="seq_len", type="integer", compact=True))
                yield _field("micro-batch", Input("1", id="batch_size", type="integer", compact=True))
                yield _field("accumulation", Input("1", id="grad_accum", type="integer", compact=True))
                yield _field("checkpointing", Checkbox("saves memory", True, id="gradient_checkpointing", compact=True))
                yield _field("optimizer", Select([(o, o) for o in OPTIMIZERS], value="adamw_torch", allow_blank=False, id="optimizer", compact=True))
                yield _field("precision", Select([(p, p) for p in ("bf16", "fp16", "fp32")], value="bf16", allow_blank=False, id="precision", compact=True))
                yield _field("LoRA rank", Input("16", id="lora_r", type="integer", compact=True))
                yield _field("LoRA on", Input("all-linear", id="lora_targets", compact=True, placeholder="all-linear or q,v,..."))
                yield _field("GPU GiB", Input("" if self.gpu_gib is None else f"{self.gpu_gib:g}", id="gpu_gib", type="number",
                                             compact=True, placeholder="empty: the GPU's own"))
                yield _field("GPUs", Input("1", id="gpus", type="integer", compact=True, placeholder=f"1 to {MAX_GPUS}"))
                # how the run spreads matters only on several GPUs: the row shows once GPUs is not 1
                strategy = _field("strategy", Select([(STRATEGY_NAMES[k], k) for k in STRATEGY_NAMES], value="ddp", allow_blank=False,
                                                     id="strategy", compact=True), "strategy-row")
                strategy.display = False
                yield strategy
            with VerticalScroll(id="estimate-breakdown"):
                yield Static("", id="breakdown")
        yield Footer()

    def on_mount(self) -> None:
        self.recompute()
        if self._detected:
            self.set_interval(self.app.poll_s * ROOM_EVERY_POLLS, self.sample_rooms)

    @work(thread=True, exclusive=True, exit_on_error=False, name="sampling the GPUs' free room")
    def sample_rooms(self) -> None:
        """Free room per GPU now (NVML and the runs admitted in the store), in a thread: the store scan reads every run."""
        from sft_tui.core.estimate.fit import rooms_on_this_box

        self.post_message(RoomsSampled(rooms_on_this_box(self.app.sampler, self.app.store)))

    def on_rooms_sampled(self, message: RoomsSampled) -> None:
        if message.rooms != self._rooms:
            self._rooms = message.rooms
            self.recompute()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "gpus":
            text = event.value.strip()
            self.query_one("#strategy-row").display = not (text.isdigit() and int(text) == 1)
        self._schedule()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self._schedule()

    def on_checkbox_changed(self, _event: Checkbox.Changed) -> None:
        self._schedule()

    def _schedule(self) -> None:
        # typing fires an event per key: recompute once the keys stop (estimates take ~20 ms, drawing is the cost)
        if self._pending is not None:
            self._pending.stop()
        self._pending = self.set_timer(0.15, self.recompute)

    def watch_outcome(self, outcome: FormOutcome) -> None:
        self.query_one("#verdict", Static).update(verdict_text(outcome))
        self.query_one("#verdict").set_class(bool(outcome.problem), "-problem")
        self.query_one("#breakdown", Static).update(_breakdown_renderable(outcome))

    @property
    def report(self) -> str:
        """The estimate as `sft-tui estimate` prints it (or the problem line): what tests and a copy-paste compare with."""
        from sft_tui.core.estimate.report import render_estimate

        return self.outcome.problem or (render_estimate(self.outcome.estimate) if self.outcome.estimate else "")

    def recompute(self) -> None:
        """Estimate with the form's values; a mistake becomes one line in the verdict instead of an estimate."""
        try:
            self.outcome = self._estimate_from_form()
        except UserError as exc:
            # the estimator names CLI flags (--lora-targets); here the field's label says where
            where = _FIELD_LABELS.get(exc.where or "", exc.where)
            self.outcome = FormOutcome(problem=UserError(exc.what, where, exc.fix).line())
        except (ValueError, OSError) as exc:  # a model folder that cannot be read, a config.json that is not one
            self.outcome = FormOutcome(problem=f"model: {exc}")

    def _value(self, widget_id: str) -> str:
        return str(self.query_one(f"#{widget_id}").value).strip()

    def _whole_number(self, widget_id: str, label: str) -> int:
        text = self._value(widget_id)
        if not text.isdigit() or int(text) < 1:
            raise UserError(f"{text or 'empty'} is not a whole number of at least 1", label, "type e.g. 1, 8 or 2048")
        return int(text)

    def _gpu_count(self) -> int:
        text = self._value("gpus")
        if not text.isdigit() or not 1 <= int(text) <= MAX_GPUS:
            raise UserError(f"{text or 'empty'} is not 1 to {MAX_GPUS} GPUs", "GPUs", "type how many the run trains on, e.g. 4")
        return int(text)

    def _gpu_target(self) -> GpuTarget | None:
        """The GPU picked (detected or by name), its memory replaced by GPU GiB when typed (like --gpu / --gpu-gib)."""
        from sft_tui.core.models.gpus import gpu_by_name

        text = self._value("gpu_gib")
        gib = None
        if text:
            try:
                gib = float(text)
            except ValueError:
                raise UserError(f"{text!r} is not a number", "GPU GiB", "type the GPU's memory, e.g. 24, or leave it empty") from None
            if not 0 < gib < 10_000:
                raise UserError(f"{text} is not a GPU's memory", "GPU GiB", "type e.g. 24 or 80, or leave it empty")
        choice = self._value("gpu")
        if choice.startswith("detected:") or choice == NO_GPU:
            if gib is not None:  # a memory size alone, as `--gpu-gib N` without `--gpu`
                return GpuTarget(f"{gib:g} GiB GPU", gib, None, "GPU GiB")
            return self._detected[int(choice.split(":")[1])] if choice != NO_GPU else None
        info = gpu_by_name(choice)
        return GpuTarget(info.name, gib or info.memory_gib, info, "picked")

    def _estimate_from_form(self) -> FormOutcome:
        from sft_tui.core.estimate.fit import build_estimate
        from sft_tui.core.estimate.memory import TrainSettings
        from sft_tui.core.models.modelspec import resolve_model

        model = self._value("model")
        if not model:
            raise UserError("empty", "model", "type a preset (e.g. qwen2.5-1.5b), a model folder or a cached repo id")
        numbers = {name: self._whole_number(name, label) for name, label in
                   (("seq_len", "seq len"), ("batch_size", "micro-batch"), ("grad_accum", "accumulation"), ("lora_r", "LoRA rank"))}
        targets = tuple(t.strip() for t in self._value("lora_targets").split(",") if t.strip()) or ("all-linear",)
        settings = TrainSettings(method=self._value("method"), objective=self._value("objective"), optimizer=self._value("optimizer"),
                                 precision=self._value("precision"),
                                 gradient_checkpointing=bool(self.query_one("#gradient_checkpointing", Checkbox).value),
                                 lora_targets=targets, **numbers)
        gpus = self._gpu_count()
        if gpus > 1:  # on one GPU the strategy changes nothing: the settings stay the one-GPU ones
            settings = replace(settings, gpus=gpus, strategy=self._value("strategy"))
        tokens = parse_token_count(self._value("tokens"))
        gpu = self._gpu_target()
        return FormOutcome(build_estimate(resolve_model(model), settings, gpu, tokens, rooms=self._rooms), tokens)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """pgup/pgdn page an open GPU or method list instead of the breakdown."""
        return not (action == "scroll_breakdown" and isinstance(self.focused, OptionList))

    def action_scroll_breakdown(self, pages: int) -> None:
        """Scroll the breakdown a page, whichever field has focus."""
        box = self.query_one("#estimate-breakdown", VerticalScroll)
        if pages > 0:
            box.scroll_page_down()
        else:
            box.scroll_page_up()

    def action_back(self) -> None:
        """Back to the runs."""
        self.app.pop_screen()
