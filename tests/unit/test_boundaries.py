"""Import boundaries (ARCHITECTURE.md), checked in fresh interpreters.

core imports neither textual nor torch; the CLI's --help path and the TUI never import
torch/transformers; the trainer never imports textual. Packages that do not exist yet
(tui, trainer) are picked up automatically once they do.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import sft_tui

ML = ["torch", "transformers", "peft", "bitsandbytes", "trl", "accelerate", "datasets"]
UI = ["textual", "textual_plotext"]
CLI_LIBS = ["typer", "click", "rich"]


def _modules(prefix: str) -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(sft_tui.__path__, "sft_tui.") if m.name.startswith(prefix))


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


RULES = [("sft_tui.core", ML + UI + CLI_LIBS), ("sft_tui.tui", ["torch", "transformers", "peft", "bitsandbytes", "trl"]), ("sft_tui.trainer", UI)]
CASES = [(module, forbidden) for prefix, forbidden in RULES for module in _modules(prefix)]


@pytest.mark.parametrize("module, forbidden", CASES, ids=[c[0] for c in CASES])
def test_module_stays_inside_its_boundary(module, forbidden):
    leaked = _loaded_after(f"import {module}") & set(forbidden)
    assert not leaked, f"{module} imports {sorted(leaked)}"


def test_core_modules_were_found():
    assert {"sft_tui.core.config", "sft_tui.core.runs", "sft_tui.core.modelspec", "sft_tui.core.sysmon"} <= set(_modules("sft_tui.core"))


@pytest.mark.parametrize("argv", [["--help"], ["runs", "--help"], ["estimate", "--help"], ["models", "list"]])
def test_cli_fast_paths_import_no_ml_or_ui_library(argv):
    code = f"from sft_tui.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    leaked = _loaded_after(code) & set(ML + UI)
    assert not leaked, f"sft-tui {' '.join(argv)} imports {sorted(leaked)}"


def test_data_tools_run_without_loading_ml_or_ui_libraries(tmp_path):
    """inspect, dedup and TF-IDF selection are CPU-light: no torch (seconds to import), no textual."""
    demo = sft_tui.__path__[0] + "/../assets/demo/train.jsonl"
    calls = [["data", "inspect", demo], ["data", "dedup", demo, "-o", str(tmp_path / "d.jsonl")],
             ["data", "select", demo, "-o", str(tmp_path / "s.jsonl"), "--n", "20"]]
    code = "from sft_tui.cli import main\n" + "".join(f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n" for argv in calls)
    leaked = _loaded_after(code) & set(ML + UI)
    assert not leaked, f"data tools import {sorted(leaked)}"
    assert (tmp_path / "s.jsonl").is_file()
