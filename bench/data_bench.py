"""Data tools on real data: inspect, dedup and diversity selection, timed, with peak memory.

Inputs
  - ../shared/data/alpaca_5000.json: 5,000 real Alpaca records.
  - a 100,000-record JSONL built here from it: every original once, plus 95,000 copies of
    randomly chosen originals, each changed by one documented perturbation of one
    non-empty field (instruction, input or output):
      case         upper, lower, title or swapped case of the whole field
      whitespace   every space doubled, a trailing space or newline added
      punctuation  all of . , ; : ! ? removed (or a final '.' added when there was none)
      swap         two neighbouring words swapped (fields of 4+ words)
      drop         one word removed (fields of 4+ words)
    then shuffled (seeded). Copies of one original form a known group, so dedup's answer
    can be scored: recall = removed rows whose kept row is of their group / planted
    copies (rows - groups); precision = removed rows kept-by-their-own-group / removed.

Each stage runs in a fresh interpreter (so its peak RSS is its own) and the baseline is
the same reader walking the same file with no work (`iter_records` only): ratios are
stage time / baseline time, from the same script on the same machine.

    python bench/data_bench.py [--source PATH] [--total 100000]  -> bench/results/data_bench.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("case", "whitespace", "punctuation", "swap", "drop")
STAGE = r"""
import json, resource, sys, time
from pathlib import Path
stage, source, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
start = time.perf_counter()
if stage == "read":
    from sft_tui.core.data.formats import iter_records
    result = {"records": sum(1 for _ in iter_records(source))}
elif stage == "inspect":
    from sft_tui.core.data.inspect import inspect_dataset
    r = inspect_dataset(source, max_seq_len=512)
    result = {"records": r.records, "exact_duplicates": r.exact_duplicates, "near_duplicates": r.near_duplicates,
              "tokens_p95": r.tokens.p95}
elif stage == "dedup":
    from sft_tui.core.data.dedup import deduplicate
    r = deduplicate(source, out / "dedup.jsonl", force=True)
    result = {"kept": r.kept, "exact_removed": r.exact_removed, "near_removed": r.near_removed, "report": r.report}
elif stage == "select":
    from sft_tui.core.data.select import select_subset
    r = select_subset(source, out / "select.jsonl", n=1000, seed=0, force=True)
    result = {"selected": r.selected, "clusters": len(r.clusters), "smallest_cluster": min(c.size for c in r.clusters),
              "clusters_covered": sum(c.selected > 0 for c in r.clusters)}
result["seconds"] = round(time.perf_counter() - start, 3)
result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps(result))
"""


def perturb(text: str, rng: random.Random, kind: str) -> str:
    """One documented change to a field (see the module docstring)."""
    if kind == "case":
        return rng.choice([str.upper, str.lower, str.title, str.swapcase])(text)
    if kind == "whitespace":
        return "  ".join(text.split(" ")) + rng.choice([" ", "\n"])
    if kind == "punctuation":
        stripped = re.sub(r"[.,;:!?]", "", text)
        return stripped if stripped != text else text + "."
    words = text.split()
    if len(words) < 4:
        return text + " "  # too short to lose or swap a word and stay the same record
    i = rng.randrange(len(words) - 1)
    if kind == "swap":
        words[i], words[i + 1] = words[i + 1], words[i]
    else:
        del words[i]
    return " ".join(words)


def build_perturbed(records: list[dict], total: int, seed: int = 0) -> list[tuple[int, dict]]:
    """(group, row) pairs: every original once plus perturbed copies, shuffled."""
    rng = random.Random(seed)
    rows = list(enumerate(records))
    while len(rows) < total:
        group = rng.randrange(len(records))
        row = dict(records[group])
        field = rng.choice([k for k in ("instruction", "input", "output") if str(row.get(k, "")).strip()])
        row[field] = perturb(row[field], rng, rng.choice(KINDS))
        rows.append((group, row))
    rng.shuffle(rows)
    return rows


def run_stage(stage: str, source: Path, out: Path) -> dict:
    """One stage in a fresh interpreter: its result, seconds and peak RSS."""
    done = subprocess.run([sys.executable, "-c", STAGE, stage, str(source), str(out)], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _line(where: str) -> int:
    return int(where.rsplit(":", 1)[1])


def score_dedup(report_file: Path, groups: list[int], rows: list[dict]) -> dict:
    """Recall and precision against the known groups, with examples of wrong merges and of misses."""
    removals = [json.loads(line) for line in report_file.open(encoding="utf-8")]
    removed_lines = {_line(r["removed"]) for r in removals}
    first_kept: dict[int, int] = {}
    missed = []
    for index, group in enumerate(groups):
        if index + 1 in removed_lines:
            continue
        if group in first_kept and len(missed) < 5:
            missed.append({"kept_too": rows[index], "same_group_as": rows[first_kept[group]]})
        first_kept.setdefault(group, index)
    planted = len(groups) - len(set(groups))
    right = [r for r in removals if groups[_line(r["removed"]) - 1] == groups[_line(r["kept"]) - 1]]
    wrong = [r for r in removals if groups[_line(r["removed"]) - 1] != groups[_line(r["kept"]) - 1]]
    return {"planted_copies": planted, "removed": len(removals), "removed_correctly": len(right),
            "recall": round(len(right) / planted, 4) if planted else None,
            "precision": round(len(right) / len(removals), 4) if removals else None,
            "wrong_merges": len(wrong), "wrong_merge_examples": wrong[:10],
            "near_examples": [r for r in right if r["kind"] == "near"][:5], "missed_examples": missed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "alpaca_5000.json")
    parser.add_argument("--total", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "data_bench.json")
    args = parser.parse_args()
    records = json.loads(args.source.read_text(encoding="utf-8"))
    results = {"machine": machine_facts("datasketch", "scikit-learn", "numpy"), "source": str(args.source.name), "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        perturbed = build_perturbed(records, args.total)
        big = tmp / "perturbed.jsonl"
        with big.open("w", encoding="utf-8") as handle:
            for _, row in perturbed:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        for name, source, groups, rows in ((f"alpaca_{len(records)}", args.source, list(range(len(records))), records),
                                           (f"perturbed_{args.total}", big, [g for g, _ in perturbed], [r for _, r in perturbed])):
            stages = {stage: run_stage(stage, source, tmp) for stage in ("read", "inspect", "dedup", "select")}
            base = stages["read"]["seconds"]
            for stage in ("inspect", "dedup", "select"):
                stages[stage]["x_read_baseline"] = round(stages[stage]["seconds"] / base, 1)
            stages["dedup"]["score"] = score_dedup(Path(stages["dedup"].pop("report")), groups, rows)
            results["sets"][name] = {"rows": len(groups), "stages": stages}
            print(f"{name}: " + ", ".join(f"{s} {v['seconds']:.1f}s ({v['peak_rss_mib']:.0f} MiB)" for s, v in stages.items())
                  + f"; dedup recall {stages['dedup']['score']['recall']}, precision {stages['dedup']['score']['precision']}")
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
