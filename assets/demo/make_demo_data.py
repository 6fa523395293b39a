"""Write the demo dataset: turn `key=value` lines into one JSON object.

A small format-following task where learning is visible within a minute on a CPU: the
answer copies the values from the prompt, and the JSON punctuation, quoting and number
handling are the pattern to learn. Deterministic (seeded), so the committed files can
be rebuilt exactly:

    python assets/demo/make_demo_data.py     -> assets/demo/train.jsonl, assets/demo/eval.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

KEYS = {
    "name": ["Ada", "Linus", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Tim", "Radia"],
    "city": ["London", "Paris", "Oslo", "Lagos", "Lima", "Kyoto", "Quito", "Cairo", "Perth", "Delhi", "Bern", "Accra"],
    "age": list(range(18, 90)),
    "role": ["admin", "editor", "viewer", "owner", "guest"],
    "score": list(range(0, 101)),
    "active": ["true", "false"],
    "team": ["red", "blue", "green", "gold"],
    "lang": ["en", "fr", "de", "ja", "sw", "es"],
}


def example(rng: random.Random) -> dict:
    keys = rng.sample(sorted(KEYS), rng.randint(2, 4))
    pairs = [(k, rng.choice(KEYS[k])) for k in keys]
    prompt = "\n".join(f"{k}={v}" for k, v in pairs)
    obj = {k: (v if isinstance(v, int) else (v == "true" if k == "active" else v)) for k, v in pairs}
    return {"instruction": "Turn these key=value lines into one JSON object.", "input": prompt,
            "output": json.dumps(obj, separators=(", ", ": "))}


def main() -> None:
    rng = random.Random(1234)
    folder = Path(__file__).resolve().parent
    for name, count in (("train.jsonl", 480), ("eval.jsonl", 40)):
        with (folder / name).open("w", encoding="utf-8") as handle:
            for _ in range(count):
                handle.write(json.dumps(example(rng)) + "\n")
    print(f"wrote {folder / 'train.jsonl'} and {folder / 'eval.jsonl'}")


if __name__ == "__main__":
    main()
