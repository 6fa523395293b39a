"""Chat with a finished run's model: streamed answers, its chat template, and a switch to the base model.

The model runs in a child process (tui.chat_backend); a thread worker feeds its pieces
back as ChatTokensArrived messages and ends with ChatAnswered. ctrl+t switches between
the tuned and the base model; ctrl+r asks the last question again with the current one,
so the two answers to the same prompt sit one under the other.
"""

from __future__ import annotations

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from sft_tui.tui.screens.base import CockpitScreen
from textual.widgets import Footer, Input, Static

from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.notices import short_name
from sft_tui.tui.chat_backend import ChatError
from sft_tui.tui.messages import ChatAnswered, ChatReady, ChatTokensArrived


class ChatScreen(CockpitScreen):
    """A transcript above, the prompt below; the title says which model answers."""

    BINDINGS = [Binding("ctrl+t", "toggle_model", "Tuned/base"), Binding("ctrl+r", "ask_again", "Ask again"),
                Binding("escape", "back", "Back")]

    def __init__(self, run: RunDir, backend) -> None:
        super().__init__()
        self.run = run
        self.backend = backend
        self.which = "tuned"
        self.history: list[dict] = []  # the conversation sent to the model
        self.ready = False
        self.busy = False
        self._current: Static | None = None
        self._text = ""

    def compose(self) -> ComposeResult:
        yield Static("", id="chat-title")
        yield Static("", id="chat-note")
        yield VerticalScroll(id="chat-log")
        yield Input(placeholder="loading the model ...", id="chat-input", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self._title("loading")
        self._start()

    def _title(self, state: str) -> None:
        other = "base" if self.which == "tuned" else "tuned"
        self.query_one("#chat-title", Static).update(
            f"chat · {escape(short_name(self.run.id))} · answering: [b]{self.which}[/b] (ctrl+t: {other})")
        self.query_one("#chat-note", Static).update(escape(state))  # its own line: the model's description is long

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat")
    def _start(self) -> None:
        try:
            self.post_message(ChatReady(self.backend.start()))
        except ChatError as exc:
            self.post_message(ChatAnswered(self.which, "", str(exc)))

    def on_chat_ready(self, message: ChatReady) -> None:
        self.ready = True
        self._title(message.note or "ready")
        field = self.query_one("#chat-input", Input)
        field.disabled = False
        field.placeholder = "ask something; enter sends"
        field.focus()

    def _add(self, text: str, classes: str) -> Static:
        block = Static(text, classes=classes)
        self.query_one("#chat-log", VerticalScroll).mount(block)
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)
        return block

    def on_input_submitted(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt or not self.ready or self.busy:
            return
        event.input.value = ""
        if self.history and self.history[-1]["role"] == "user":  # the previous question never got an answer
            self.history.pop()
        self.history.append({"role": "user", "content": prompt})
        self._add(f"[b]you[/b]  {escape(prompt)}", "chat-user")
        self._ask()

    def _ask(self) -> None:
        self.busy = True
        self._text = ""
        self._current = self._add(f"[b]{self.which}[/b]  ...", f"chat-{self.which}")
        self._generate(list(self.history), self.which)

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat")
    def _generate(self, messages: list[dict], which: str) -> None:
        text = ""
        try:
            for piece in self.backend.reply(messages, which):
                text += piece
                self.post_message(ChatTokensArrived(piece))
        except ChatError as exc:
            self.post_message(ChatAnswered(which, text, str(exc)))
            return
        self.post_message(ChatAnswered(which, text))

    def on_chat_tokens_arrived(self, message: ChatTokensArrived) -> None:
        self._text += message.text
        if self._current is not None:
            self._current.update(f"[b]{self.which}[/b]  {escape(self._text)}")
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    def on_chat_answered(self, message: ChatAnswered) -> None:
        self.busy = False
        if message.error:
            self._add(f"[b red]{escape(message.error)}[/]", "chat-error")
            return
        if self._current is not None:
            self._current.update(f"[b]{message.which}[/b]  {escape(message.text) or '[dim](empty answer)[/dim]'}")
        self.history.append({"role": "assistant", "content": message.text})

    def action_toggle_model(self) -> None:
        """Switch between the tuned model and its base."""
        self.which = "base" if self.which == "tuned" else "tuned"
        self._title("ctrl+r asks the last question again with this model")

    def action_ask_again(self) -> None:
        """Ask the last question again, with the model now selected."""
        if not self.ready or self.busy or not any(m["role"] == "user" for m in self.history):
            return
        while self.history and self.history[-1]["role"] == "assistant":
            self.history.pop()  # the new answer replaces the previous one in the conversation
        self._ask()

    def action_back(self) -> None:
        """Leave the chat (the model process ends)."""
        self.app.pop_screen()

    def on_unmount(self) -> None:
        self.backend.close()
