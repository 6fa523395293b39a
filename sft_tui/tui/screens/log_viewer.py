"""A log file, followed live like `tail -f`: search, wrap, and a filter that hides progress-bar noise.

Opens train.log and job logs (jobs/<kind>-<n>/job.log). Only the end of the file is read
(core.runs.logtext.LogFollower: at most 5,000 lines), then the bytes appended since, by a
thread worker re-armed at the app's poll interval once each read is shown, so reads never
overlap. The view sticks to the bottom while it is at the bottom; once the user scrolls up
or searches, new lines arrive below without moving it (`G` follows again).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Footer, Input, Static, TextArea
from textual.widgets.text_area import Selection

from sft_tui.core.runs.logtext import (
    TAIL_LINES,
    LogChunk,
    LogFollower,
    clean_line,
    readable_line,
)
from sft_tui.tui.screens.base import CockpitScreen

KEEP_LINES = 4 * TAIL_LINES  # a log followed for hours: past this the oldest lines go (the file keeps them)


@dataclass
class LogRead(Message, bubble=False):
    """The follower read the log (in a thread): new lines, or why there are none."""

    chunk: LogChunk


class LogText(TextArea, inherit_bindings=False):
    """The log's lines, read-only: arrows and pages move, shift+arrows select, ctrl+c copies.

    Only these bindings, not TextArea's editing ones, so the key overlay lists what a log view does.
    """

    BINDINGS = [
        Binding("up", "cursor_up", "Line up", show=False),
        Binding("down", "cursor_down", "Line down", show=False),
        Binding("pageup", "cursor_page_up", "Page up", show=False),
        Binding("pagedown", "cursor_page_down", "Page down", show=False),
        Binding("left", "cursor_left", "Left (wrap off: scrolls)", show=False),
        Binding("right", "cursor_right", "Right (wrap off: scrolls)", show=False),
        Binding("shift+up", "cursor_up(True)", "Select a line up", show=False),
        Binding("shift+down", "cursor_down(True)", "Select a line down", show=False),
        Binding("ctrl+c", "copy", "Copy the selection", show=False),
    ]


class SearchInput(Input):
    """The `/` search line; esc closes it without searching."""

    BINDINGS = [Binding("escape", "cancel", "Cancel search", show=False)]

    def action_cancel(self) -> None:
        """Close the search line, keep the view where it is."""
        self.screen.close_search()  # type: ignore[attr-defined]


class LogViewerScreen(CockpitScreen):
    """One log file, followed; `/` searches, `w` wraps, `f` hides progress bars, esc goes back."""

    CSS_PATH = "log_viewer.tcss"
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("n", "next_match", "Next"),
        Binding("N", "previous_match", "Previous", show=False),
        Binding("w", "toggle_wrap", "Wrap"),
        Binding("f", "toggle_filter", "Filter"),
        Binding("G", "follow", "Follow the end", show=False),
        Binding("escape,b", "app.pop_screen", "Back"),
    ]

    filtered: reactive[bool] = reactive(True, init=False)
    wrapped: reactive[bool] = reactive(True, init=False)

    def __init__(self, path: Path, title: str) -> None:
        super().__init__()
        self.path = path
        self.title_text = title
        self.follower = LogFollower(path)
        self.raw: list[str] = []  # cleaned lines (escapes gone, \r redraws collapsed), oldest first
        self.pending = ""  # the unfinished last line, cleaned
        self.shown_raw: list[int] = []  # for each displayed line, its index in raw (len(raw) for the pending line)
        self.query_text = ""
        self.missing = ""
        self.follow = True  # new lines scroll the view to the end (false once the user scrolls up or searches)
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"[b]{escape(self.title_text)}[/b]  {escape(str(self.path))}", id="log-title")
        yield Static("", id="log-status")
        yield LogText("", read_only=True, soft_wrap=self.wrapped, id="log-text", placeholder="(nothing in the log yet)")
        yield SearchInput(placeholder="search: enter finds (then n / N), esc cancels", id="log-search", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        text = self.query_one(LogText)
        text.cursor_blink = False  # a blinking cursor in a log is distracting (and makes snapshots flaky)
        text.focus()
        self.query_one(SearchInput).display = False
        self._draw_status()
        self.read_more()

    @work(thread=True, exclusive=True, exit_on_error=False, name="following the log")
    def read_more(self) -> None:
        """Read what was appended to the log (in a thread) and post it."""
        self.post_message(LogRead(self.follower.read()))

    def on_log_read(self, message: LogRead) -> None:
        chunk = message.chunk
        self.missing = chunk.missing
        if chunk.restarted:
            self.raw, self.pending = [clean_line(line) for line in chunk.lines], clean_line(chunk.pending)
            self._rebuild()
        elif chunk.lines or clean_line(chunk.pending) != self.pending:
            self._append([clean_line(line) for line in chunk.lines], clean_line(chunk.pending))
        else:  # nothing new: the status still tells whether the user has scrolled away from the end
            self.follow = self._at_bottom()
        self._draw_status()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(getattr(self.app, "poll_s", 1.0), self.read_more)  # re-armed only now: reads never overlap

    # --- the document: displayed lines derived from raw ---

    def _shown(self, line: str) -> str | None:
        return readable_line(line) if self.filtered else line

    def _display(self, start: int, lines: list[str], pending: str) -> tuple[list[str], list[int]]:
        """Displayed text and raw indices for raw lines numbered from `start`, and the pending line."""
        text: list[str] = []
        index: list[int] = []
        for number, line in enumerate([*lines, pending] if pending else lines, start):
            shown = self._shown(line)
            if shown is not None:
                text.append(shown)
                index.append(number)
        return text, index

    def _at_bottom(self) -> bool:
        area = self.query_one(LogText)
        return area.scroll_y >= area.max_scroll_y - 1

    def _rebuild(self) -> None:
        """Redraw every line (first read, filter toggled, trimmed); the cursor stays on the line it was on."""
        area = self.query_one(LogText)
        row = area.cursor_location[0]
        at_raw = self.shown_raw[row] if row < len(self.shown_raw) else None
        text, self.shown_raw = self._display(0, self.raw, self.pending)
        area.load_text("\n".join(text))
        if self.follow or at_raw is None:
            self._to_end()
        else:
            new_row = min(bisect_left(self.shown_raw, at_raw), max(len(self.shown_raw) - 1, 0))
            area.move_cursor((new_row, 0), center=True)

    def _append(self, lines: list[str], pending: str) -> None:
        area = self.query_one(LogText)
        follow = self._at_bottom()
        if len(self.raw) + len(lines) > KEEP_LINES:
            self.raw, self.pending = (self.raw + lines)[-TAIL_LINES:], pending
            self._rebuild()
            return
        if self.shown_raw and self.shown_raw[-1] == len(self.raw):  # the old pending line is shown: it is replaced
            self.shown_raw.pop()
            last = len(self.shown_raw) - 1
            area.delete((last, len(area.document.get_line(last))) if last >= 0 else (0, 0), area.document.end)
        text, index = self._display(len(self.raw), lines, pending)
        self.raw.extend(lines)
        self.pending = pending
        if text:
            area.insert(("\n" if self.shown_raw else "") + "\n".join(text), area.document.end)
            self.shown_raw.extend(index)
        area.history.clear()  # appends are not edits to undo: keeps memory flat on a log followed for hours
        self.follow = follow
        if follow:
            self._to_end()

    def _to_end(self) -> None:
        area = self.query_one(LogText)
        area.move_cursor((area.document.line_count - 1, 0))
        area.scroll_end(animate=False, x_axis=False)

    # --- status ---

    def _draw_status(self) -> None:
        shown = len(self.shown_raw)
        hidden = len(self.raw) + (1 if self.pending else 0) - shown
        parts = [f"{shown:,} lines", "following" if self.follow else "paused (G follows)",
                 f"filter on, {hidden:,} hidden" if self.filtered else "filter off", "wrap on" if self.wrapped else "wrap off"]
        if self.query_text:
            parts.append(self._match_note())
        status = " · ".join(parts)
        if self.missing:
            status = f"{self.missing}: waiting for the job to write it"
        self.query_one("#log-status", Static).update(escape(status))

    def _match_note(self) -> str:
        matches = self._matches()
        area = self.query_one(LogText)
        start = min(area.selection.start, area.selection.end)
        current = next((i for i, m in enumerate(matches, 1) if m == start), None)
        if not matches:
            return f"no match for {self.query_text!r}"
        return f"match {current}/{len(matches)}" if current else f"{len(matches)} matches"

    # --- search ---

    def _matches(self) -> list[tuple[int, int]]:
        """(row, column) of every match of the query in the displayed lines; smart case, like less and vim."""
        query = self.query_text
        if not query:
            return []
        folded = query == query.lower()
        needle = query.lower() if folded else query
        found = []
        for row, line in enumerate(self.query_one(LogText).document.lines):
            haystack = line.lower() if folded else line
            column = haystack.find(needle)
            while column != -1:
                found.append((row, column))
                column = haystack.find(needle, column + 1)
        return found

    def action_search(self) -> None:
        """Open the search line (enter finds the next match, n/N go on)."""
        search = self.query_one(SearchInput)
        search.display = True
        search.value = self.query_text
        search.focus()

    def close_search(self) -> None:
        """Hide the search line and give the keys back to the log."""
        self.query_one(SearchInput).display = False
        self.query_one(LogText).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_text = event.value
        following = self.follow
        self.close_search()
        # at the end of a followed log the match wanted is the latest one, above; elsewhere the next one down
        self._jump(forward=not following, from_cursor=True)

    def action_next_match(self) -> None:
        """The next match of the search (wraps around at the end)."""
        self._jump(forward=True)

    def action_previous_match(self) -> None:
        """The previous match of the search (wraps around at the start)."""
        self._jump(forward=False)

    def _jump(self, forward: bool, from_cursor: bool = False) -> None:
        if not self.query_text:
            self.notify("nothing to find yet: press / and type a word", severity="warning")
            return
        matches = self._matches()
        if not matches:
            self.notify(f"no match for {self.query_text!r} in the lines shown"
                        + (" (f shows the hidden progress lines)" if self.filtered else ""), severity="warning")
            self._draw_status()
            return
        area = self.query_one(LogText)
        here = min(area.selection.start, area.selection.end)
        if forward:
            later = [m for m in matches if (m >= here if from_cursor else m > here)]
            row, column = later[0] if later else matches[0]
        else:
            earlier = [m for m in matches if m < here]
            row, column = earlier[-1] if earlier else matches[-1]
        self.follow = False  # the match stays in view while lines arrive
        area.selection = Selection((row, column), (row, column + len(self.query_text)))
        area.scroll_cursor_visible(center=True, animate=False)
        self._draw_status()

    # --- toggles ---

    def action_toggle_wrap(self) -> None:
        """Long lines wrap <-> scroll sideways."""
        self.wrapped = not self.wrapped

    def watch_wrapped(self, wrapped: bool) -> None:
        area = self.query_one(LogText)
        area.soft_wrap = wrapped
        if self.follow:
            self._to_end()
        else:
            self.call_after_refresh(area.scroll_cursor_visible, center=True, animate=False)
        self._draw_status()

    def action_toggle_filter(self) -> None:
        """Hide <-> show progress bars and blank lines (raw metric dicts are shown readable while hidden)."""
        self.filtered = not self.filtered

    def watch_filtered(self) -> None:
        self._rebuild()
        self._draw_status()

    def action_follow(self) -> None:
        """Jump to the end and follow new lines again."""
        self.follow = True
        self._to_end()
        self._draw_status()

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()
