"""`data inspect`: one streaming pass that says whether a dataset is fit to train on.

Reports the format, invalid rows with file:line, empty and very short answers, token
lengths (the model's tokenizer when given, else a stated approximation), the share that
would be truncated, exact and near duplicates, refusal-like answers, turn counts and the
most common instruction openings. Tool-calling rows add how many calls there are, and the
calls whose arguments are not valid JSON or that name no declared tool; every kind adds the
conversations with no user turn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sft_tui.core.data.duplicates import DuplicateFinder
from sft_tui.core.data.formats import Example, iter_records, uses_tools
from sft_tui.core.data.text import approx_tokens, example_text, is_short, looks_like_refusal, opening, user_turns
from sft_tui.core.data.tool_calls import arguments_are_json, declared_names

MAX_LISTED = 10  # invalid rows listed one by one; the rest are counted
Progress = Callable[[str, int], None]
CHARS_NOTE = "about 4 characters per token plus 4 per chat turn (no tokenizer given; pass --model for exact counts)"


@dataclass(frozen=True)
class TokenStats:
    """Token lengths of whole examples (prompt and answer, as formatted for training)."""

    min: int
    p50: int
    p95: int
    max: int
    approximate: bool
    method: str  # the tokenizer used, or how the approximation is made


@dataclass(frozen=True)
class InspectReport:
    """Everything `data inspect` reports; `to_json` gives the contract's field names."""

    file: str
    format: str
    records: int  # usable rows
    invalid: int
    invalid_rows: tuple[str, ...]  # "file:line: reason" for the first MAX_LISTED
    empty_responses: int
    short_responses: int
    tokens: TokenStats | None
    max_seq_len: int | None
    truncated: int
    exact_duplicates: int
    near_duplicates: int
    refusals: int
    turns: dict[int, int]  # user turns per example -> examples
    top_openings: tuple[tuple[str, int], ...]
    kind: str = "sft"  # sft | pairwise | unpaired-labelled (core.data.formats.KINDS)
    desirable: int = 0  # unpaired-labelled: rows labelled true
    undesirable: int = 0  # rows labelled false (SFT leaves them out)
    identical_pairs: int = 0  # pairwise: chosen == rejected (nothing to learn from)
    chosen_longer: int = 0  # pairwise: chosen longer than rejected (a share near 100% teaches "longer is better")
    chosen_chars_mean: float | None = None
    rejected_chars_mean: float | None = None
    no_user_turn: int = 0  # conversations where the user never speaks (the answer replies to nothing asked)
    first_no_user_turn: str = ""  # file:line of the first
    rows_with_calls: int = 0  # tool-calling: rows with at least one tool call
    rows_with_tools: int = 0  # rows that declare tools
    tool_calls: int = 0  # calls in all
    invalid_calls: int = 0  # calls whose arguments are not a valid JSON object
    first_invalid_call: str = ""  # "file:line: name(arguments)" of the first
    undeclared_calls: int = 0  # calls naming no tool the row declares
    first_undeclared_call: str = ""

    @property
    def truncated_share(self) -> float | None:
        """Share of records longer than max_seq_len; None without a length."""
        return round(self.truncated / self.records, 4) if self.max_seq_len and self.records else None

    @property
    def refusal_share(self) -> float:
        """Share of answers that open like a refusal."""
        return round(self.refusals / self.records, 4) if self.records else 0.0

    def to_json(self) -> dict:
        """The --json object."""
        out = asdict(self)
        out["invalid_rows"] = list(self.invalid_rows)
        out["turns"] = {str(k): v for k, v in sorted(self.turns.items())}
        out["top_openings"] = [{"opening": o, "count": c} for o, c in self.top_openings]
        out["truncated_share"] = self.truncated_share
        out["refusal_share"] = self.refusal_share
        return out


class _ToolCounts:
    """Tool declarations and calls over the rows, with where the first bad call of each kind is."""

    def __init__(self) -> None:
        self.any = False
        self.rows_with_calls = self.rows_with_tools = self.calls = self.invalid = self.undeclared = 0
        self.first_invalid = self.first_undeclared = ""

    def add(self, example: Example) -> None:
        if not uses_tools(example):
            return
        self.any = True
        self.rows_with_tools += example.tools is not None
        declared = declared_names(example.tools)
        calls = [call for turn in example.turns for call in turn.tool_calls]
        self.rows_with_calls += bool(calls)
        self.calls += len(calls)
        for call in calls:
            shown = f"{example.where}: {call.name or '(no name)'}({call.arguments[:40]})"
            if not arguments_are_json(call):
                self.invalid += 1
                self.first_invalid = self.first_invalid or shown
            if call.name not in declared:
                self.undeclared += 1
                self.first_undeclared = self.first_undeclared or shown


def _percentile(sorted_values: list[int], share: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(round(share * (len(sorted_values) - 1))))]


def inspect_dataset(path: Path, fmt: str = "auto", max_seq_len: int | None = None,
                    count_tokens: Callable[[Example], int] | None = None, token_method: str = "",
                    near_threshold: float = 0.85, progress: Progress | None = None) -> InspectReport:
    """Walk the file once and report; malformed rows are counted and listed, never raised."""
    counter = count_tokens or approx_tokens
    finder = DuplicateFinder(near_threshold)
    lengths: list[int] = []
    invalid: list[str] = []
    invalid_count = empty = short = refusals = truncated = 0
    turns: Counter[int] = Counter()
    openings: Counter[str] = Counter()
    detected = fmt if fmt != "auto" else "unknown"
    labels: Counter[bool] = Counter()
    chosen_chars: list[int] = []
    rejected_chars: list[int] = []
    identical = 0
    tools = _ToolCounts()
    no_user, first_no_user = 0, ""
    for record in iter_records(path, fmt):
        detected = record.format or detected
        if progress and record.index % 1000 == 0:
            progress("inspect", record.index)
        if record.example is None:
            invalid_count += 1
            if len(invalid) < MAX_LISTED:
                invalid.append(f"{record.where}: {record.error}")
            continue
        example = record.example
        response = example.response
        if example.turns and not any(t.role == "user" for t in example.turns):
            no_user += 1
            first_no_user = first_no_user or example.where
        tools.add(example)
        if example.label is not None:
            labels[example.label] += 1
        if example.rejected is not None:
            chosen_chars.append(len(response))
            rejected_chars.append(len(example.rejected))
            identical += response.strip() == example.rejected.strip()
        if not response.strip():
            empty += 1
        elif is_short(response):
            short += 1
        refusals += looks_like_refusal(response)
        length = counter(example)
        lengths.append(length)
        truncated += bool(max_seq_len and length > max_seq_len)
        turns[user_turns(example)] += 1
        openings[opening(example)] += 1
        finder.add(record.index, example_text(example))
    if progress:
        progress("near duplicates", len(lengths))
    duplicates = finder.flush()
    lengths.sort()
    tokens = None
    if lengths:
        method = token_method or f"approximation: {CHARS_NOTE}"
        tokens = TokenStats(lengths[0], _percentile(lengths, 0.5), _percentile(lengths, 0.95), lengths[-1], count_tokens is None, method)
    return InspectReport(
        file=str(path), format=detected, records=len(lengths), invalid=invalid_count,
        invalid_rows=tuple(invalid), empty_responses=empty, short_responses=short, tokens=tokens, max_seq_len=max_seq_len,
        truncated=truncated, exact_duplicates=sum(d.kind == "exact" for d in duplicates),
        near_duplicates=sum(d.kind == "near" for d in duplicates), refusals=refusals, turns=dict(turns),
        top_openings=tuple(openings.most_common(10)),
        kind="pairwise" if detected == "pairwise" else "unpaired-labelled" if labels else "tool-calling" if tools.any else "sft",
        desirable=labels[True], undesirable=labels[False], identical_pairs=identical,
        chosen_longer=sum(c > r for c, r in zip(chosen_chars, rejected_chars)),
        chosen_chars_mean=round(sum(chosen_chars) / len(chosen_chars), 1) if chosen_chars else None,
        rejected_chars_mean=round(sum(rejected_chars) / len(rejected_chars), 1) if rejected_chars else None,
        no_user_turn=no_user, first_no_user_turn=first_no_user, rows_with_calls=tools.rows_with_calls,
        rows_with_tools=tools.rows_with_tools, tool_calls=tools.calls, invalid_calls=tools.invalid,
        first_invalid_call=tools.first_invalid, undeclared_calls=tools.undeclared, first_undeclared_call=tools.first_undeclared,
    )



def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def report_rows(report: InspectReport) -> list[tuple[str, str, str]]:
    """(check, value, note) rows: the table the CLI prints and the TUI's Data screen shows."""
    if not report.records:
        return []
    tokens = report.tokens
    preference = []
    if report.kind == "unpaired-labelled":
        labelled = report.desirable + report.undesirable
        preference.append(("desirable / undesirable", f"{report.desirable:,} / {report.undesirable:,}",
                           f"{report.undesirable / labelled:.0%} labelled false; SFT leaves those out" if labelled else ""))
    if report.kind == "pairwise":
        pairs = report.records
        preference += [
            ("identical chosen / rejected", f"{report.identical_pairs:,}", "nothing to learn from these pairs" if report.identical_pairs else ""),
            ("chosen longer than rejected", f"{report.chosen_longer:,} ({report.chosen_longer / pairs:.0%})" if pairs else "-",
             f"mean {report.chosen_chars_mean:,.0f} vs {report.rejected_chars_mean:,.0f} characters; near 100% teaches 'longer is better'"
             if report.chosen_chars_mean is not None else ""),
        ]
    if report.kind == "tool-calling":
        preference += [
            ("tool calls", f"{report.tool_calls:,} in {report.rows_with_calls:,} rows",
             f"{report.rows_with_tools:,} rows declare tools; the calls are learnt, the results are not"),
            ("calls not valid JSON", f"{report.invalid_calls:,}",
             f"the trainer refuses these rows; first: {report.first_invalid_call}" if report.invalid_calls else ""),
            ("calls to undeclared tools", f"{report.undeclared_calls:,}",
             f"teaches calls to tools that do not exist; first: {report.first_undeclared_call}" if report.undeclared_calls else ""),
        ]
    if report.no_user_turn:  # shown only when it happens: a warning, not a statistic
        preference.append(("conversations with no user turn", f"{report.no_user_turn:,}",
                           f"first at {report.first_no_user_turn}; those answers reply to nothing asked"))
    return preference + [
        ("empty answers", f"{report.empty_responses:,}", "skipped by the trainer" if report.empty_responses else ""),
        ("answers of 1-2 words", f"{report.short_responses:,}", "fine for labels; worrying if most look like this"),
        ("tokens min / p50 / p95 / max", f"{tokens.min} / {tokens.p50} / {tokens.p95} / {tokens.max}", tokens.method),
        ("truncated at max-seq-len", f"{report.truncated:,} ({_share(report.truncated_share)})" if report.max_seq_len else "-",
         f"at {report.max_seq_len} tokens" if report.max_seq_len else "give a max sequence length"),
        ("exact duplicates", f"{report.exact_duplicates:,}", "after folding case, whitespace, punctuation"),
        ("near duplicates", f"{report.near_duplicates:,}", "MinHash similarity >= 0.85; `sft-tui data dedup` removes both kinds"),
        ("refusal-like answers", f"{report.refusals:,} ({_share(report.refusal_share)})", "a model learns to refuse from these"),
        ("user turns per example", ", ".join(f"{k}: {v:,}" for k, v in sorted(report.turns.items())), ""),
    ]


def summary_line(report: InspectReport) -> str:
    """The one-line headline: file, format (and what the rows are for, when not plain SFT), usable and invalid rows."""
    kind = {"pairwise": " (pairwise preferences: chosen/rejected)", "unpaired-labelled": " (answers labelled desirable or not: KTO's format)",
            "tool-calling": " (tool-calling)"}
    return f"{report.file}: {report.format}{kind.get(report.kind, '')}, {report.records:,} usable rows, {report.invalid:,} invalid"


def openings_line(report: InspectReport) -> str:
    """The most common instruction openings on one line."""
    return "top instruction openings: " + ", ".join(f"{o!r} {c}" for o, c in report.top_openings)
