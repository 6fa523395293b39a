"""The one exception type for mistakes a user can make and fix.

The CLI turns a `UserError` into a single line on stderr and exit code 2, without a
traceback. Everything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem the user caused and can fix: says what, where and what to do."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        """The whole message as one line: `where: what; fix`."""
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text = f"{text}; {self.fix}"
        return text


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ` (did you mean X?)` suffix when a close match exists, else an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
