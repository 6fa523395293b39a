"""Desktop notifications through the terminal: OSC 9 or OSC 777 escapes, which pass through SSH untouched.

Off by default: a terminal that does not know the escape may print it. Turned on with
SFT_TUI_DESKTOP_NOTIFY=osc9 (iTerm2, WezTerm, kitty, Windows Terminal, ghostty) or osc777
(foot, rxvt-unicode with its extension, VTE/GNOME terminals). Inside tmux the escape is
wrapped for passthrough, which tmux delivers only with `set -g allow-passthrough on`.
"""

from __future__ import annotations

from sft_tui.core.errors import UserError

DESKTOP_NOTIFY_ENV = "SFT_TUI_DESKTOP_NOTIFY"
MODES = ("off", "osc9", "osc777")


def desktop_notify_mode(value: str) -> str:
    """The mode named by the setting ('' is off); a UserError names the setting and the choices."""
    mode = value.strip().lower() or "off"
    if mode not in MODES:
        raise UserError(f"{DESKTOP_NOTIFY_ENV}={value!r} is not a notification mode", DESKTOP_NOTIFY_ENV,
                        "use off (the default), osc9 (iTerm2, WezTerm, kitty, Windows Terminal) or osc777 (foot, VTE/GNOME terminals)")
    return mode


def _clean(text: str, limit: int = 200) -> str:
    """Printable text only: a control character inside would end the escape early (or start another one)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)[:limit]


def desktop_sequence(mode: str, title: str, body: str, inside_tmux: bool = False) -> str:
    """The escape that asks the terminal for a desktop notification ('' when off)."""
    if mode == "osc9":
        sequence = f"\x1b]9;{_clean(body)}\x07"
    elif mode == "osc777":
        sequence = f"\x1b]777;notify;{_clean(title).replace(';', ',')};{_clean(body)}\x07"
    else:
        return ""
    if inside_tmux:  # tmux passes a DCS-wrapped escape on to the outer terminal, with each ESC doubled
        sequence = "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return sequence
