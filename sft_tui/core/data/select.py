"""`data select` and `data split`: a diverse subset, and a train/eval split, both seeded.

Diversity selection (Chen et al. 2023, "Maybe Only 0.5% Data is Needed"): embed every
example, cluster with k-means, then take from each cluster in proportion to its size,
at least one from each, at random within the cluster. The first pass reads only the
texts; the second writes the chosen rows unchanged and in their original order.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sft_tui.core.data.clusters import Clustering, cluster, proportional_quotas, tfidf_embeddings
from sft_tui.core.data.formats import iter_records
from sft_tui.core.data.readers import file_kind
from sft_tui.core.data.text import example_text, opening
from sft_tui.core.data.writers import check_output, write_rows
from sft_tui.core.errors import UserError

Embedder = Callable[[list[str]], object]  # texts -> (n, d) matrix


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster: its size, how many were taken, and the most common opening in it."""

    cluster: int
    size: int
    selected: int
    top_opening: str


@dataclass(frozen=True)
class SelectReport:
    """What `data select` chose."""

    input: str
    output: str
    rows: int
    invalid: int
    selected: int
    by: str
    embed: str
    seed: int
    clusters: tuple[ClusterSummary, ...]

    def to_json(self) -> dict:
        """The --json object."""
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class SplitReport:
    """What `data split` wrote."""

    train: str
    eval: str
    train_rows: int
    eval_rows: int
    invalid: int
    stratified_by: int  # clusters used for stratification; 0 when plain random

    def to_json(self) -> dict:
        """The --json object."""
        from dataclasses import asdict

        return asdict(self)


def _texts(path: Path, fmt: str, progress) -> tuple[list[int], list[str], list[str], int]:
    indices, texts, openings, invalid = [], [], [], 0
    for record in iter_records(path, fmt):
        if progress and record.index % 1000 == 0:
            progress("read", record.index)
        if record.example is None:
            invalid += 1
            continue
        indices.append(record.index)
        texts.append(example_text(record.example))
        openings.append(opening(record.example))
    if not indices:
        raise UserError("the file holds no usable rows", str(path), "`sft-tui data inspect` shows what is wrong with them")
    return indices, texts, openings, invalid


def _write(path: Path, output: Path, fmt: str, chosen: set[int], progress) -> int:
    def rows():
        for record in iter_records(path, fmt):
            if progress and record.index % 1000 == 0:
                progress("write", record.index)
            if record.index in chosen:
                yield record.row

    return write_rows(output, rows())


def default_clusters(n_selected: int) -> int:
    """One cluster per ten examples kept (between 2 and 200): fine enough to cover rare tasks."""
    return max(2, min(200, n_selected // 10))


def _clustering(texts: list[str], clusters: int, seed: int, embed: str, embedder: Embedder | None) -> Clustering:
    vectors = embedder(texts) if embedder is not None else tfidf_embeddings(texts, seed)
    return cluster(vectors, clusters, seed, method=embed)


def select_subset(path: Path, output: Path, n: int | None = None, fraction: float | None = None, by: str = "diversity",
                  embed: str = "tfidf", embedder: Embedder | None = None, clusters: int | None = None, seed: int = 0,
                  fmt: str = "auto", force: bool = False, progress=None) -> SelectReport:
    """Choose n (or a fraction) of the usable rows and write them to `output`."""
    if (n is None) == (fraction is None):
        raise UserError("give exactly one of --n and --fraction", "data select", "e.g. --n 1000 or --fraction 0.2")
    if by not in ("diversity", "random"):
        raise UserError(f"unknown selection {by!r}", "--by", "use diversity or random")
    if fraction is not None and not 0 < fraction <= 1:
        raise UserError(f"fraction {fraction} is outside (0, 1]", "--fraction", "e.g. 0.2 keeps a fifth")
    if n is not None and n < 1:
        raise UserError(f"--n must be at least 1, got {n}", "--n", "e.g. --n 1000")
    check_output(output, [path], force)
    indices, texts, openings, invalid = _texts(path, fmt, progress)
    want = min(len(indices), n if n is not None else max(1, round(fraction * len(indices))))
    rng = random.Random(seed)
    summaries: tuple[ClusterSummary, ...] = ()
    if by == "random":
        picked = rng.sample(range(len(indices)), want)
    else:
        if progress:
            progress("embed and cluster", len(indices))
        found = _clustering(texts, clusters or default_clusters(want), seed, embed, embedder)
        members: list[list[int]] = [[] for _ in found.sizes]
        for position, label in enumerate(found.labels):
            members[label].append(position)
        picked = []
        quotas = proportional_quotas(found.sizes, want)
        for label, quota in enumerate(quotas):
            picked.extend(rng.sample(members[label], quota))
        summaries = tuple(ClusterSummary(label, found.sizes[label], quotas[label], _top([openings[i] for i in members[label]]))
                          for label in range(len(found.sizes)))
    chosen = {indices[p] for p in picked}
    written = _write(path, output, fmt, chosen, progress)
    return SelectReport(str(path), str(output), len(indices) + invalid, invalid, written, by, embed if by == "diversity" else "-", seed, summaries)


def _top(items: list[str]) -> str:
    return Counter(items).most_common(1)[0][0] if items else ""


def split_dataset(path: Path, output_dir: Path, eval_fraction: float = 0.1, seed: int = 0, stratify: bool = False,
                  fmt: str = "auto", force: bool = False, progress=None) -> SplitReport:
    """Write train.<ext> and eval.<ext> into `output_dir`; with `stratify`, each cluster is split in the same proportion."""
    if not 0 < eval_fraction < 1:
        raise UserError(f"eval fraction {eval_fraction} is outside (0, 1)", "--eval-fraction", "e.g. 0.1 holds out a tenth")
    file_kind(path)  # an unsupported input fails here, before anything is written
    suffix = path.suffix.lower()
    train_out, eval_out = output_dir / f"train{suffix}", output_dir / f"eval{suffix}"
    for out in (train_out, eval_out):
        check_output(out, [path], force)
    indices, texts, _, invalid = _texts(path, fmt, progress)
    rng = random.Random(seed)
    groups: list[list[int]]
    if stratify and len(indices) >= 20:
        found = _clustering(texts, max(2, min(20, len(indices) // 20)), seed, "tfidf", None)
        groups = [[] for _ in found.sizes]
        for position, label in enumerate(found.labels):
            groups[label].append(position)
    else:
        groups = [list(range(len(indices)))]
    want = max(1, round(eval_fraction * len(indices)))
    quotas = proportional_quotas(tuple(len(g) for g in groups), want) if len(groups) > 1 else [want]
    held = {indices[p] for group, quota in zip(groups, quotas, strict=True) for p in rng.sample(group, quota)}
    usable = set(indices)
    eval_rows = _write(path, eval_out, fmt, held, progress)
    train_rows = _write(path, train_out, fmt, usable - held, progress)
    return SplitReport(str(train_out), str(eval_out), train_rows, eval_rows, invalid, len(groups) if len(groups) > 1 else 0)
