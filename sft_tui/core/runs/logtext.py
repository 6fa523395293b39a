"""Log text a person can read: the trainer's step lines, progress-bar noise, and following a log file.

Used by the trainer (it prints `format_step_line` / `format_eval_line`), by the watcher's
log tail (the Monitor's log pane) and by the TUI's log viewer (its filter and its reader).

Noise is what a person never wants to read in a log pane: tqdm bars (`45%|####  | 9/20
[00:01<00:02, 4.1it/s]`), the `\\r` redraws that stack them on one line, ANSI colour
escapes, blank lines. Runs from before the trainer printed its own lines have raw metric
dicts (`{'loss': '2.559', 'grad_norm': '1.028', ...}`, transformers' PrinterCallback):
`readable_line` turns those into the same form the trainer prints now.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sft_tui.core.units import format_eta

TAIL_LINES = 5000  # what a viewer shows of a long log: enough to scroll back through, cheap on a 50 MB file
TAIL_BYTES = 2 * 1024 * 1024  # ~400 bytes a line at most: the end of the file that holds TAIL_LINES
PANE_TAIL_BYTES = 64 * 1024  # the Monitor's few lines, after noise is dropped

# ESC [ ... final byte (colours, cursor moves), ESC ] ... BEL/ST (titles, links), and lone two-byte escapes
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
# tqdm: "45%|####  |", and the rate block "[00:01<00:02, 4.10it/s]" / "[00:00, 1234.56 examples/s]" / "[00:00<?, ?it/s]"
_BAR = re.compile(r"\d{1,3}%\|")
_RATE = re.compile(r"\[(?:\d+:)?\d+:\d\d(?:<[^,\]]*)?,\s*[^\]]*?(?:/s|/it)\]")
_METRIC_KEYS = ("loss", "eval_loss", "train_runtime")


def strip_ansi(text: str) -> str:
    """The text without terminal escape sequences (colours, cursor moves)."""
    return _ANSI.sub("", text)


def clean_line(raw: str) -> str:
    """One log line as a terminal would have left it: escapes gone, only the last `\\r` redraw, no trailing blanks."""
    text = strip_ansi(raw).rstrip("\r\n")
    if "\r" in text:  # a progress bar redrawn in place: the terminal shows only the last drawing
        parts = [part for part in text.split("\r") if part.strip()]
        text = parts[-1] if parts else ""
    return text.rstrip()


def is_progress_noise(line: str) -> bool:
    """A blank line or a progress bar (tqdm and its look-alikes), after `clean_line`."""
    return not line.strip() or bool(_BAR.search(line) or _RATE.search(line))


def _number(value: object) -> float | None:
    # transformers 5 prints its floats pre-formatted as strings ('2.559', '1.174e+04')
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _rate(lr: float) -> str:
    return f"{lr:.1e}" if lr else "0"  # warmup starts at 0: '0', not '0.0e+00'


def metric_dict(line: str) -> dict[str, object] | None:
    """The dict a trainer printed on this line (`{'loss': ...}`), or None for anything else (other braces included)."""
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}") and any(f"'{key}'" in text or f'"{key}"' in text for key in _METRIC_KEYS)):
        return None
    try:
        value = ast.literal_eval(text)  # literals only: never runs anything a log holds
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) and any(key in value for key in _METRIC_KEYS) else None


def format_step_line(step: int, max_steps: int | None, loss: float | None, lr: float | None = None, grad_norm: float | None = None,
                     tokens_per_s: float | None = None, eta_s: float | None = None, objective: dict[str, float] | None = None) -> str:
    """'step 120/300  loss 1.234  lr 1.9e-04  grad 0.81  4,100 tok/s  ETA 3:05': the trainer's line per logged step.

    A preference run's margin and accuracy (or KL) follow the loss: the part an 80-column pane never cuts.
    """
    where = f"{step:>{len(str(max_steps))}}/{max_steps}" if max_steps else str(step)  # padded: the columns line up
    parts = [f"step {where}", (f"loss {loss:.3f}" if loss is not None else "loss -") + format_objective_metrics(objective or {})]
    if lr is not None:
        parts.append(f"lr {_rate(lr)}")
    if grad_norm is not None:
        parts.append(f"grad {grad_norm:.2f}")
    if tokens_per_s:
        parts.append(f"{tokens_per_s:,.0f} tok/s")
    if eta_s is not None:
        parts.append(f"ETA {format_eta(eta_s)}")
    return "  ".join(parts)


def format_eval_line(step: int | str, eval_loss: float | None) -> str:
    """'eval @120  loss 1.102': the trainer's line per evaluation."""
    return f"eval @{step}  loss {eval_loss:.3f}" if eval_loss is not None else f"eval @{step}  loss -"


# The objective metrics a person reads on a log line (the monitor charts the rest): (TRL name, label, format)
_OBJECTIVE_SHOWN = (("rewards/margins", "margin", "{:+.3f}"), ("rewards/accuracies", "acc", "{:.0%}"), ("kl", "kl", "{:.3f}"))


def format_objective_metrics(metrics: dict[str, float]) -> str:
    """'  margin +0.412  acc 75%' (DPO/ORPO) or '  margin +0.2  kl 0.013' (KTO): appended to a step or eval line; '' for SFT."""
    parts = [f"{label} {fmt.format(metrics[name])}" for name, label, fmt in _OBJECTIVE_SHOWN if isinstance(metrics.get(name), (int, float))]
    return "".join(f"  {p}" for p in parts)


def dict_line(metrics: dict[str, object]) -> str:
    """A raw metric dict from an older run's log as the line the trainer prints now (epochs where it had no step)."""
    def get(key: str) -> float | None:
        return _number(metrics.get(key))

    step, epoch = metrics.get("step"), get("epoch")
    at = f"epoch {epoch:g}" if epoch is not None else ""  # transformers' dicts name the epoch, not the step
    if "eval_loss" in metrics:
        return format_eval_line(step if step is not None else at or "?", get("eval_loss"))
    if "loss" in metrics:
        parts = [f"step {step}" if step is not None else at, f"loss {get('loss'):.3f}" if get("loss") is not None else "loss -"]
        if get("learning_rate") is not None:
            parts.append(f"lr {_rate(get('learning_rate'))}")
        if get("grad_norm") is not None:
            parts.append(f"grad {get('grad_norm'):.2f}")
        if get("train_tokens_per_second"):
            parts.append(f"{get('train_tokens_per_second'):,.0f} tok/s")
        return "  ".join(p for p in parts if p)
    runtime, mean_loss = get("train_runtime"), get("train_loss")
    return "training ended" + (f" after {runtime:,.1f} s" if runtime is not None else "") + (
        f", mean loss {mean_loss:.3f}" if mean_loss is not None else "")


def readable_line(raw: str) -> str | None:
    """The line a filtered view shows for one raw log line: None for noise, a metric dict as a readable line."""
    line = clean_line(raw)
    if is_progress_noise(line):
        return None
    metrics = metric_dict(line)
    return dict_line(metrics) if metrics is not None else line


def readable_lines(raw_lines: list[str] | tuple[str, ...]) -> list[str]:
    """`readable_line` over many lines, noise dropped."""
    return [line for line in map(readable_line, raw_lines) if line is not None]


@dataclass(frozen=True)
class LogChunk:
    """What one read of a log gave: whole new lines, the unfinished last line, and whether to start over."""

    lines: tuple[str, ...]  # raw (uncleaned) complete lines, oldest first
    pending: str  # the text after the last newline: a line still being written (or a progress bar)
    restarted: bool  # the lines replace everything read before (first read, file truncated or replaced, a jump ahead)
    missing: str = ""  # why there is nothing to read ('' when the file was read)


def _read_end(path: Path, start: int, end: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(end - start)


class LogFollower:
    """Reads a growing log like `tail -f`: first its end (at most `max_lines`), then only the bytes appended since.

    Keeps a byte offset and the bytes of an unfinished line; one thread at a time calls `read`.
    """

    def __init__(self, path: Path, max_lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES):
        self.path = path
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.offset = -1  # -1: nothing read yet
        self._identity: tuple[int, int] | None = None
        self._pending = b""

    def read(self) -> LogChunk:
        """What was appended since the previous read (the end of the file on the first read, or after a truncation)."""
        try:
            stat = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            restarted = self.offset != -1 or self._identity is not None
            self.offset, self._identity, self._pending = -1, None, b""
            return LogChunk((), "", restarted, missing=f"{self.path.name} does not exist yet")
        except OSError as exc:
            return LogChunk((), "", False, missing=f"{self.path.name}: {exc.strerror or exc}")
        identity = (stat.st_dev, stat.st_ino)
        size = stat.st_size
        restarted = self.offset < 0 or identity != self._identity or size < self.offset or size - self.offset > self.max_bytes
        start = max(0, size - self.max_bytes) if restarted else self.offset
        try:
            data = _read_end(self.path, start, size)
        except IsADirectoryError:
            return LogChunk((), "", False, missing=f"{self.path.name} is a folder, not a log")
        except OSError as exc:
            return LogChunk((), "", False, missing=f"{self.path.name}: {exc.strerror or exc}")
        self._identity = identity
        self.offset = start + len(data)
        if restarted:
            self._pending = b""
            if start > 0:  # began mid-line: that line's start is cut off
                data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        complete, self._pending = data[:cut], data[cut:]
        # decoded only at whole lines, so a character split across two reads is not broken; bad bytes become U+FFFD
        lines = complete.decode("utf-8", errors="replace").split("\n")[:-1] if complete else []
        if restarted:
            lines = lines[-self.max_lines:]
        return LogChunk(tuple(lines), self._pending.decode("utf-8", errors="replace"), restarted)


def readable_tail(path: Path, count: int = 12, max_bytes: int = PANE_TAIL_BYTES) -> tuple[str, ...]:
    """The last `count` readable lines of a log (noise dropped, metric dicts made readable); reads only its end."""
    chunk = LogFollower(path, max_lines=10 * count, max_bytes=max_bytes).read()
    raw = [*chunk.lines, chunk.pending] if chunk.pending else list(chunk.lines)
    kept: list[str] = []
    for line in reversed(raw):  # from the end: only the lines shown are parsed
        text = readable_line(line)
        if text is not None:
            kept.append(text)
            if len(kept) == count:
                break
    return tuple(reversed(kept))
