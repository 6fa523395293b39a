"""How long does an estimate take? Every preset x method, against a single memory evaluation.

`build_estimate` is what `sft-tui estimate` and the TUI call on every keystroke: the
breakdown plus binary searches for the largest batch and sequence and the suggestions
(each its own estimate). Baseline: one `estimate_memory` call, timed in the same
process. The target is under 0.3 s per call, without importing torch.

    python bench/estimator_speed.py     -> bench/results/estimator_speed.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_facts, median_seconds  # noqa: E402

from sft_tui.core.estimate.fit import GpuTarget, build_estimate  # noqa: E402
from sft_tui.core.estimate.memory import TrainSettings, estimate_memory  # noqa: E402
from sft_tui.core.models.gpus import gpu_by_name  # noqa: E402
from sft_tui.core.models.modelspec import spec_from_preset  # noqa: E402
from sft_tui.core.models.presets import list_model_presets  # noqa: E402


def main() -> None:
    info = gpu_by_name("4090")  # a 24 GiB card: many runs do not fit, so suggestions do real work
    gpu = GpuTarget(info.name, info.memory_gib, info, "--gpu")
    rows = []
    for preset in list_model_presets():
        spec = spec_from_preset(preset.name)
        for method in ("full", "lora", "qlora"):
            s = TrainSettings(method=method, seq_len=4096, batch_size=2)
            single = median_seconds(lambda spec=spec, s=s: estimate_memory(spec, s))
            report = median_seconds(lambda spec=spec, s=s: build_estimate(spec, s, gpu, tokens=1e8))
            rows.append({"model": preset.name, "method": method, "estimate_memory_ms": round(single * 1e3, 3),
                         "build_estimate_ms": round(report * 1e3, 2), "x_single": round(report / single, 1)})
    worst = max(rows, key=lambda r: r["build_estimate_ms"])
    summary = {"worst_build_estimate_ms": worst["build_estimate_ms"], "worst_case": f"{worst['model']} {worst['method']}",
               "median_build_estimate_ms": statistics.median(r["build_estimate_ms"] for r in rows),
               "median_estimate_memory_ms": statistics.median(r["estimate_memory_ms"] for r in rows),
               "torch_imported": "torch" in sys.modules, "target_ms": 300}
    print(json.dumps(summary, indent=2))
    out = Path(__file__).resolve().parent / "results" / "estimator_speed.json"
    out.write_text(json.dumps({"benchmark": "estimator_speed", "machine": machine_facts(), "summary": summary, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
