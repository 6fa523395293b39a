"""Write the demo preference set: the demo task's JSON answers as chosen, flawed ones as rejected.

Same prompts as the SFT demo (make_demo_data.example); each rejected answer has one of the
flaws a tuned model should learn to avoid: chatty preamble, Python quoting instead of
JSON, a dropped key, or the key=value lines echoed back. Pairwise rows in TRL's format
(prompt / chosen / rejected strings), deterministic (seeded):

    python assets/demo/make_preference_data.py  -> assets/demo/prefs_train.jsonl, assets/demo/prefs_eval.jsonl

`sft-tui train assets/demo/demo_dpo.toml` trains DPO on them (README: Preference tuning).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_demo_data import example  # noqa: E402  (the SFT demo's prompts and answers)


def flawed(answer: str, prompt_lines: str, flaw: int) -> str:
    """The rejected answer: the right JSON with one typical flaw."""
    obj = json.loads(answer)
    if flaw == 0:
        return "Sure! Here is the JSON object you asked for: " + answer
    if flaw == 1:
        return repr(obj)  # Python quoting: 'name': 'Ada', True
    if flaw == 2:
        return json.dumps(dict(list(obj.items())[:-1]), separators=(", ", ": "))
    return prompt_lines.replace("\n", ", ")


def pair(rng: random.Random, index: int) -> dict:
    """One pairwise row (prompt as the SFT demo's instruction and input)."""
    row = example(rng)
    prompt = f"{row['instruction']}\n\n{row['input']}"
    return {"prompt": prompt, "chosen": row["output"], "rejected": flawed(row["output"], row["input"], index % 4)}


def main() -> None:
    rng = random.Random(4321)
    folder = Path(__file__).resolve().parent
    for name, count in (("prefs_train.jsonl", 320), ("prefs_eval.jsonl", 40)):
        with (folder / name).open("w", encoding="utf-8") as handle:
            for index in range(count):
                handle.write(json.dumps(pair(rng, index)) + "\n")
    print(f"wrote {folder / 'prefs_train.jsonl'} and {folder / 'prefs_eval.jsonl'}")


if __name__ == "__main__":
    main()
