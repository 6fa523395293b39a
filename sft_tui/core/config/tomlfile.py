"""Reading TOML files with errors that name the file and line.

`tomllib` (Python 3.11+) or `tomli` parse; they do not keep line numbers for keys,
so `key_line()` finds the line of a `[section]` key by scanning the text, which is
enough to point a user at the line to fix.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from sft_tui.core.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError

_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")
_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def parse_toml_text(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a UserError naming `source:line`."""
    try:
        return tomllib.loads(text)
    except TOMLDecodeError as exc:
        message = str(exc)
        match = _AT_LINE.search(message)
        where = f"{source}:{match.group(1)}" if match else source
        what = _AT_LINE.sub("", message).strip().rstrip(".")
        raise UserError(f"invalid TOML: {what}", where, "fix the syntax at that line") from None


def load_toml_file(path: Path) -> tuple[dict[str, Any], str]:
    """Read and parse a TOML file; returns the data and the raw text (for line lookups)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found", str(path), "check the path") from None
    except IsADirectoryError:
        raise UserError("is a folder, not a TOML file", str(path), "pass the .toml file") from None
    except UnicodeDecodeError:
        raise UserError("is not UTF-8 text", str(path), "save the file as UTF-8") from None
    return parse_toml_text(text, str(path)), text


def key_line(text: str, dotted: str) -> int | None:
    """The 1-based line where `section.key` (or a top-level `key`) is set, if found."""
    *section_parts, key = dotted.split(".")
    wanted_section = ".".join(section_parts)
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            section = header.group(1).replace('"', "").replace(" ", "")
            if not key and section == wanted_section:
                return number
            continue
        found = _KEY.match(line)
        if found and section == wanted_section and found.group(1).strip('"') == key:
            return number
    return None


def section_line(text: str, section: str) -> int | None:
    """The 1-based line of a `[section]` header, if present."""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header and header.group(1).replace('"', "").replace(" ", "") == section:
            return number
    return None
