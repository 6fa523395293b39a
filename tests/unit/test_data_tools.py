"""Data tools on generated data with planted duplicates: dedup, inspect, select, split, convert."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from sft_tui.core.data.clusters import proportional_quotas
from sft_tui.core.data.dedup import deduplicate, report_path
from sft_tui.core.data.inspect import inspect_dataset
from sft_tui.core.data.text import looks_like_refusal, normalise
from sft_tui.core.errors import UserError

VOCAB = [f"w{i}x" for i in range(5000)]


def distinct_records(count: int, seed: int = 0) -> list[dict]:
    """Records that share almost no words: any merge among them is a false positive."""
    rng = random.Random(seed)
    return [{"instruction": " ".join(rng.sample(VOCAB, 12)), "input": "", "output": " ".join(rng.sample(VOCAB, 20))} for _ in range(count)]


def planted(seed: int = 0) -> tuple[list[dict], list[int]]:
    """150 originals + 30 exact-after-normalisation copies + 30 near copies (one word dropped), shuffled; returns rows and groups."""
    rng = random.Random(seed)
    originals = distinct_records(150, seed)
    rows = [(i, r) for i, r in enumerate(originals)]
    for n in range(60):
        group = rng.randrange(150)
        copy = dict(originals[group])
        if n < 30:  # case, spacing and punctuation only: an exact duplicate after normalisation
            copy["output"] = "  " + copy["output"].upper().replace(" ", " , ") + "!"
        else:
            words = copy["output"].split()
            del words[rng.randrange(len(words))]
            copy["output"] = " ".join(words)
        rows.append((group, copy))
    first, rest = rows[:1], rows[1:]
    rng.shuffle(rest)
    rows = first + rest
    return [r for _, r in rows], [g for g, _ in rows]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dedup_removes_every_planted_duplicate_and_keeps_every_distinct_record(tmp_path):
    rows, groups = planted()
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    before = digest(source)
    report = deduplicate(source, tmp_path / "out.jsonl")
    removals = [json.loads(line) for line in report_path(tmp_path / "out.jsonl").read_text().splitlines()]
    line = lambda where: int(where.rsplit(":", 1)[1]) - 1  # noqa: E731
    correct = [r for r in removals if groups[line(r["removed"])] == groups[line(r["kept"])]]
    recall, precision = len(correct) / 60, len(correct) / len(removals)
    print(f"planted 60, removed {len(removals)}, recall {recall:.3f}, precision {precision:.3f}")
    assert (recall, precision) == (1.0, 1.0)
    assert report.exact_removed == 30 and report.near_removed == 30 and report.kept == 150
    kept = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted({normalise(r["instruction"]) for r in kept}) == sorted(normalise(r["instruction"]) for r in kept)  # one per group
    assert len({normalise(r["instruction"]) for r in kept}) == 150
    # every removed row points at a row that was kept, and earlier in the file
    assert all(line(r["kept"]) < line(r["removed"]) for r in removals)
    assert digest(source) == before


def test_dedup_compares_only_the_named_fields(tmp_path):
    rows = [{"instruction": "Say hi", "output": "hi"}, {"instruction": "Say hi", "output": "hello there"}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    assert deduplicate(source, tmp_path / "a.jsonl").kept == 2
    assert deduplicate(source, tmp_path / "b.jsonl", fields=("instruction",)).kept == 1
    with pytest.raises(UserError, match="field 'instrution' is not in the rows"):
        deduplicate(source, tmp_path / "c.jsonl", fields=("instrution",))


def test_dedup_never_overwrites_the_input_or_an_existing_output(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", distinct_records(3))
    with pytest.raises(UserError, match="the output is the input"):
        deduplicate(source, source, force=True)
    (tmp_path / "out.jsonl").write_text("mine\n")
    with pytest.raises(UserError, match="exists"):
        deduplicate(source, tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_text() == "mine\n"
    assert deduplicate(source, tmp_path / "out.jsonl", force=True).kept == 3


MALFORMED = ['{"instruction": "a b c", "output": "one"}', '{"instruction": "broken", ', '{"instruction": "x"}',
             '{"instruction": "d e f", "output": "two"}', '["not", "an", "object"]']


def test_malformed_rows_are_listed_with_their_line_and_never_stop_a_command(tmp_path, cli):
    source = write_jsonl(tmp_path / "in.jsonl", MALFORMED)
    report = inspect_dataset(source)
    assert report.records == 2 and report.invalid == 3
    assert report.invalid_rows[0].startswith(f"{source}:2: not valid JSON")
    assert report.invalid_rows[1] == f"{source}:3: missing 'output'"
    assert report.invalid_rows[2].startswith(f"{source}:5: expected a JSON object")
    result = cli("data", "dedup", str(source), "-o", str(tmp_path / "out.jsonl"))
    assert result.code == 0 and "left out 3 invalid rows" in result.out
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


def test_inspect_json_has_the_contract_fields(tmp_path, cli):
    rows = distinct_records(20) + [{"instruction": "Help me", "output": "I'm sorry, but I can't help with that."},
                                   {"instruction": "Label it", "output": ""}]
    rows.append(dict(rows[0], output=rows[0]["output"].upper()))
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    result = cli("data", "inspect", str(source), "--max-seq-len", "20", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert {"records", "invalid", "format", "tokens", "truncated_share", "exact_duplicates", "near_duplicates", "refusal_share"} <= set(data)
    assert set(data["tokens"]) >= {"min", "p50", "p95", "max", "approximate"} and data["tokens"]["approximate"] is True
    assert data["records"] == 23 and data["format"] == "alpaca" and data["exact_duplicates"] == 1
    assert data["empty_responses"] == 1 and data["refusal_share"] == round(1 / 23, 4)
    assert 0 < data["truncated_share"] <= 1 and data["turns"] == {"1": 23}


@pytest.mark.parametrize(("answer", "refusal"), [
    ("I'm sorry, but I cannot do that.", True), ("As an AI language model, I don't have opinions.", True),
    ("I can't browse the internet.", True), ("Unfortunately, I am unable to help.", True),
    ("I can help: here are three ideas.", False), ("Sorry to hear that! Try resting.", False), ("Paris.", False),
])
def test_refusal_detection(answer, refusal):
    assert looks_like_refusal(answer) is refusal


def test_quotas_are_proportional_add_up_and_cover_every_cluster():
    assert proportional_quotas((50, 30, 20), 10) == [5, 3, 2]
    assert proportional_quotas((97, 2, 1), 10) == [8, 1, 1]
    assert proportional_quotas((50, 30, 20), 2) == [1, 1, 0]
    assert proportional_quotas((5, 1, 1), 100) == [5, 1, 1]
    for total in range(5, 101):
        quotas = proportional_quotas((60, 25, 10, 4, 1), total)
        assert sum(quotas) == total and min(quotas) >= 1


def topic_records(seed: int = 0) -> list[dict]:
    """Four topics of very different sizes, each with its own vocabulary."""
    rng = random.Random(seed)
    out = []
    for topic, count in (("cook", 120), ("code", 60), ("tax", 15), ("moon", 5)):
        words = [f"{topic}{i}" for i in range(40)]
        out += [{"instruction": f"{topic} " + " ".join(rng.sample(words, 8)), "output": " ".join(rng.sample(words, 10))} for _ in range(count)]
    rng.shuffle(out)
    return out


def test_selection_is_deterministic_and_covers_every_cluster(tmp_path, cli):
    source = write_jsonl(tmp_path / "in.jsonl", topic_records())
    args = ["data", "select", str(source), "--n", "20", "--clusters", "8", "--json"]
    first = json.loads(cli(*args, "-o", str(tmp_path / "a.jsonl")).out)
    second = json.loads(cli(*args, "-o", str(tmp_path / "b.jsonl")).out)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert first["selected"] == 20 and first["clusters"] == second["clusters"]
    # k-means splits the big topics and gives the rare ones their own clusters (5 'moon', 15 'tax')
    assert len(first["clusters"]) == 8 and {5, 15} <= {c["size"] for c in first["clusters"]}
    assert all(c["selected"] >= 1 for c in first["clusters"])
    chosen = [json.loads(x)["instruction"].split()[0] for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert set(chosen) == {"cook", "code", "tax", "moon"}  # random sampling of 20 from 200 often misses 'moon'
    third = cli("data", "select", str(source), "--n", "20", "--clusters", "8", "--seed", "1", "-o", str(tmp_path / "c.jsonl"))
    assert third.code == 0 and (tmp_path / "c.jsonl").read_bytes() != (tmp_path / "a.jsonl").read_bytes()


def test_random_selection_and_fraction(tmp_path, cli):
    source = write_jsonl(tmp_path / "in.jsonl", topic_records())
    result = cli("data", "select", str(source), "-o", str(tmp_path / "r.jsonl"), "--fraction", "0.1", "--by", "random", "--json")
    assert json.loads(result.out)["selected"] == 20
    both = cli("data", "select", str(source), "-o", str(tmp_path / "x.jsonl"), "--fraction", "0.1", "--n", "3")
    assert both.code == 2 and "exactly one of --n and --fraction" in both.err


def test_split_is_disjoint_complete_seeded_and_stratified(tmp_path, cli):
    rows = topic_records()
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    result = cli("data", "split", str(source), "-o", str(tmp_path / "s"), "--eval-fraction", "0.2", "--stratify", "--json")
    assert result.code == 0, result.err
    train = (tmp_path / "s" / "train.jsonl").read_text().splitlines()
    held = (tmp_path / "s" / "eval.jsonl").read_text().splitlines()
    assert len(held) == 40 and sorted(train + held) == sorted(json.dumps(r) for r in rows)
    topics = [json.loads(x)["instruction"].split()[0] for x in held]
    assert {"cook", "code", "tax", "moon"} <= set(topics)
    again = cli("data", "split", str(source), "-o", str(tmp_path / "s"), "--eval-fraction", "0.2", "--stratify")
    assert again.code == 2 and "exists" in again.err
    cli("data", "split", str(source), "-o", str(tmp_path / "s2"), "--eval-fraction", "0.2", "--stratify")
    assert (tmp_path / "s2" / "eval.jsonl").read_text().splitlines() == held


def test_convert_round_trips_and_lists_what_it_cannot_hold(tmp_path, cli):
    rows = [{"instruction": "Add", "input": "", "output": "4"}, {"instruction": "Greet", "input": "", "output": "Hello", "system": "Be brief"}]
    source = write_jsonl(tmp_path / "a.jsonl", rows)
    assert cli("data", "convert", str(source), "-o", str(tmp_path / "m.jsonl"), "--to", "messages").code == 0
    assert cli("data", "convert", str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "s.json"), "--to", "sharegpt").code == 0
    assert cli("data", "convert", str(tmp_path / "s.json"), "-o", str(tmp_path / "back.jsonl"), "--to", "alpaca").code == 0
    assert [json.loads(x) for x in (tmp_path / "back.jsonl").read_text().splitlines()] == rows
    multi = write_jsonl(tmp_path / "multi.jsonl", [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]},
        {"messages": [{"role": "user", "content": "e"}, {"role": "assistant", "content": "f"}]}])
    result = cli("data", "convert", str(multi), "-o", str(tmp_path / "one.jsonl"), "--to", "alpaca")
    assert result.code == 0 and "left out 1 rows" in result.out and f"{multi}:1: alpaca holds one question" in result.out
    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "just text"}])
    failed = cli("data", "convert", str(text), "-o", str(tmp_path / "t.jsonl"))
    assert failed.code == 2 and "no row could be converted" in failed.err and not (tmp_path / "t.jsonl").exists()


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_outputs_in_every_file_type_read_back(tmp_path, suffix):
    from sft_tui.core.data.formats import load_examples

    rows, _ = planted()
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    report = deduplicate(source, tmp_path / f"out{suffix}")
    assert len(load_examples(tmp_path / f"out{suffix}").examples) == report.kept == 150
