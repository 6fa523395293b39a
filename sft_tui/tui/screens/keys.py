"""`?`: every key of the screen in front, with what it does, including those the footer has no room for."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


def _declared_actions(screen_type: type) -> set[str]:
    actions: set[str] = set()
    for cls in screen_type.__mro__:
        if cls.__module__.startswith("sft_tui."):
            actions |= {b.action if isinstance(b, Binding) else b[1] for b in cls.__dict__.get("BINDINGS", [])}
    return actions


def key_lines(screen: Screen) -> list[tuple[str, str]]:
    """(keys, description) for each thing the screen offers now, keys that do the same together, in binding order."""
    grouped: dict[str, list[str]] = {}
    declared = _declared_actions(type(screen)) | {"show_keys", "quit"}
    for _key, active in screen.active_bindings.items():
        binding = active.binding
        # keys sft-tui declares; a focused widget's scrolling and Textual's own focus/copy keys are not news
        ours = active.node in (screen, screen.app) and binding.action in declared
        if not ours or not binding.description or not active.enabled:
            continue
        shown = binding.key_display or screen.app.get_key_display(binding)
        keys = grouped.setdefault(binding.description, [])
        if shown not in keys:
            keys.append(shown)
    return [(" ".join(keys), description) for description, keys in grouped.items()]


class KeysScreen(ModalScreen[None]):
    """The key overlay; `?`, `esc` or `q` closes it."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close", key_display="esc")]

    def __init__(self, behind: Screen) -> None:
        super().__init__()
        self.behind = behind
        self.lines = key_lines(behind)

    def compose(self) -> ComposeResult:
        name = type(self.behind).__name__.removesuffix("Screen").lower() or "screen"
        width = max((len(keys) for keys, _ in self.lines), default=4)
        body = "\n".join(f"[b]{escape(keys.ljust(width))}[/b]  {escape(description)}" for keys, description in self.lines)
        with VerticalScroll(id="keys-box"):
            yield Static(f"[b]keys: {escape(name)}[/b]   (esc closes)", id="keys-title")
            yield Static(body or "no keys here", id="keys-list")
