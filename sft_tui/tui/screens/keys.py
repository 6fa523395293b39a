"""`?`: every key of the screen in front, with what it does, including those the footer has no room for."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


def _declared(screen_type: type) -> list[Binding]:
    """The bindings sft-tui's own classes declare for this screen, the subclass's first (it may rebind a key)."""
    found: list[Binding] = []
    for cls in screen_type.__mro__:
        if cls.__module__.startswith("sft_tui."):
            found += [b if isinstance(b, Binding) else Binding(*b) for b in cls.__dict__.get("BINDINGS", [])]
    return found


def key_lines(screen: Screen) -> list[tuple[str, str]]:
    """(keys, description) for each thing the screen offers now, keys that do the same together, in binding order.

    Read from the screen's declared bindings, not the active ones: a focused widget that binds
    the same key (a table's enter) would hide the screen's meaning of it.
    """
    app = screen.app
    owned = [(screen, b) for b in _declared(type(screen))] + [(app, b) for b in _declared(type(app)) if b.action == "show_keys"]
    grouped: dict[str, list[str]] = {}
    for owner, binding in owned:
        target = app if binding.action.startswith("app.") else owner
        if not binding.description or target.check_action(binding.action.removeprefix("app."), ()) is False:
            continue
        keys = grouped.setdefault(binding.description, [])
        for key in binding.key.split(","):
            shown = binding.key_display or app.get_key_display(Binding(key.strip(), binding.action))
            if shown not in keys:
                keys.append(shown)
    quit_keys = grouped.get("Quit")
    if quit_keys is not None and "^q" not in quit_keys:
        quit_keys.append("^q")  # Textual's own quit works on every screen
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
