"""`sft-tui data ...`: inspect, dedup, select, convert and split datasets (logic in core.data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sft_tui.cli.output import print_json, print_table
from sft_tui.core.errors import UserError

data_app = typer.Typer(help="Inspect, deduplicate, select, convert and split datasets.", no_args_is_help=True)

FORMAT_HELP = "Row format: auto, alpaca, messages, sharegpt, prompt_completion, text or pairwise."
FORCE_HELP = "Overwrite existing output files (the input is never touched)."


def print_inspect(report) -> None:
    """The human-readable inspect report."""
    from sft_tui.core.data.inspect import MAX_LISTED, openings_line, report_rows, summary_line

    print(summary_line(report))
    for line in report.invalid_rows:
        print(f"  invalid  {line}")
    if report.invalid > MAX_LISTED:
        print(f"  ... and {report.invalid - MAX_LISTED:,} more invalid rows")
    if report.records:
        print_table(["check", "value", "note"], report_rows(report))
        print(openings_line(report))


@data_app.command("inspect")
def data_inspect(
    file: Annotated[Path, typer.Argument(help="Dataset: JSONL, JSON, CSV or Parquet.")],
    model: Annotated[Optional[str], typer.Option(help="Count tokens with this model's tokenizer (offline: folder, preset or cached repo).")] = None,
    max_seq_len: Annotated[Optional[int], typer.Option("--max-seq-len", help="Report the share truncated at this length.")] = None,
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Format and kind, invalid rows, lengths, truncation, duplicates, refusals, tool calls and openings of a dataset."""
    from sft_tui.cli.progress import progress_reporter
    from sft_tui.core.data.inspect import inspect_dataset
    from sft_tui.core.data.tokens import model_token_counter

    counter = model_token_counter(model) if model else None
    with progress_reporter() as progress:
        report = inspect_dataset(file, fmt, max_seq_len, counter.count if counter else None, counter.method if counter else "", progress=progress)
    if as_json:
        print_json(report.to_json())
    else:
        print_inspect(report)


@data_app.command("dedup")
def data_dedup(
    file: Annotated[Path, typer.Argument(help="Dataset to deduplicate (never modified).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Deduplicated dataset (its extension picks the format).")],
    threshold: Annotated[float, typer.Option(help="Jaccard similarity of the word sets for near duplicates.")] = 0.85,
    fields: Annotated[Optional[list[str]], typer.Option("--fields", help="Raw fields compared (repeatable; default: all the text).")] = None,
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "auto",
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Remove exact and near duplicates (MinHash LSH), keeping the first of each group; writes a removal report."""
    from sft_tui.cli.progress import progress_reporter
    from sft_tui.core.data.dedup import deduplicate, removal_lines

    names = tuple(f.strip() for value in fields or [] for f in value.split(",") if f.strip())
    with progress_reporter() as progress:
        report = deduplicate(file, output, threshold, names, fmt, force, progress)
    if as_json:
        print_json(report.to_json())
        return
    print(f"{report.input}: {report.rows:,} rows -> {report.kept:,} kept in {report.output}")
    print(f"removed {report.exact_removed:,} exact and {report.near_removed:,} near duplicates (threshold {report.threshold}); "
          f"every removal with the row it repeats: {report.report}")
    if report.invalid:
        print(f"left out {report.invalid:,} invalid rows, e.g. {report.invalid_rows[0]}")
    for line in removal_lines(report):
        print("  " + line)


@data_app.command("select")
def data_select(
    file: Annotated[Path, typer.Argument(help="Dataset to select from.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Selected subset.")],
    n: Annotated[Optional[int], typer.Option("--n", help="Number of examples to keep.")] = None,
    fraction: Annotated[Optional[float], typer.Option("--fraction", help="Share of examples to keep.")] = None,
    by: Annotated[str, typer.Option("--by", help="diversity (cluster, sample across clusters) or random.")] = "diversity",
    embed: Annotated[str, typer.Option("--embed", help="tfidf (fast, CPU) or model (hidden states of --model).")] = "tfidf",
    model: Annotated[Optional[str], typer.Option(help="Local model for --embed model.")] = None,
    clusters: Annotated[Optional[int], typer.Option("--clusters", help="k for k-means (default: one per ten kept, 2-200).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same subset.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "auto",
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Select a diverse subset: embed, cluster with k-means, sample across clusters in proportion."""
    from sft_tui.cli.progress import progress_reporter
    from sft_tui.core.data.select import select_subset

    if embed not in ("tfidf", "model"):
        raise UserError(f"unknown embedding {embed!r}", "--embed", "use tfidf or model")
    if embed == "model" and not model:
        raise UserError("--embed model needs a model", "--model", "pass --model NAME (a folder, preset or cached repo)")
    with progress_reporter() as progress:
        embedder = None
        if embed == "model" and by == "diversity":
            from sft_tui.trainer.embed import model_embedder

            embedder = model_embedder(model, progress)
        report = select_subset(file, output, n, fraction, by, embed, embedder, clusters, seed, fmt, force, progress)
    if as_json:
        print_json(report.to_json())
        return
    print(f"{report.input}: chose {report.selected:,} of {report.rows - report.invalid:,} usable rows ({report.by}"
          + (f", {report.embed} embeddings, {len(report.clusters)} clusters" if report.clusters else "") + f", seed {report.seed}) -> {report.output}")
    if report.clusters:
        shown = report.clusters[:15]
        print_table(["cluster", "size", "chosen", "most common opening"], [[c.cluster, c.size, c.selected, c.top_opening] for c in shown])
        if len(report.clusters) > len(shown):
            print(f"... {len(report.clusters) - len(shown)} smaller clusters (--json lists all)")


@data_app.command("convert")
def data_convert(
    file: Annotated[Path, typer.Argument(help="Dataset to convert.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Converted dataset.")],
    to: Annotated[str, typer.Option("--to", help="messages (OpenAI, tool_calls/tool), alpaca, sharegpt (LLaMA-Factory, function_call/observation); "
                                                 "for preference rows pairwise (TRL, messages), pairwise-strings (TRL), pairwise-sharegpt (LLaMA-Factory) or kto (TRL).")] = "messages",
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "auto",
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert rows to messages, alpaca or ShareGPT (tool calls kept), or preference rows between TRL's and LLaMA-Factory's formats."""
    from sft_tui.core.data.convert import convert_file

    report = convert_file(file, output, to, fmt, force)
    if as_json:
        print_json(report.to_json())
        return
    print(f"wrote {report.written:,} {report.to} rows to {report.output}")
    if report.left_out:
        print(f"left out {report.left_out:,} rows:")
        for line in report.left_out_rows:
            print(f"  {line}")


@data_app.command("split")
def data_split(
    file: Annotated[Path, typer.Argument(help="Dataset to split.")],
    output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Folder for train.<ext> and eval.<ext>.")],
    eval_fraction: Annotated[float, typer.Option("--eval-fraction", help="Share held out for evaluation.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    stratify: Annotated[bool, typer.Option("--stratify", help="Hold out the same share of every TF-IDF cluster.")] = False,
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "auto",
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Split a dataset into train and eval files, seeded, optionally stratified by cluster."""
    from sft_tui.cli.progress import progress_reporter
    from sft_tui.core.data.select import split_dataset

    with progress_reporter() as progress:
        report = split_dataset(file, output_dir, eval_fraction, seed, stratify, fmt, force, progress)
    if as_json:
        print_json(report.to_json())
        return
    print(f"train: {report.train_rows:,} rows -> {report.train}")
    print(f"eval:  {report.eval_rows:,} rows -> {report.eval}" + (f" (stratified over {report.stratified_by} clusters)" if report.stratified_by else ""))
    if report.invalid:
        print(f"left out {report.invalid:,} invalid rows (`sft-tui data inspect` lists them)")
