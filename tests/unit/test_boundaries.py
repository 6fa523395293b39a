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
    assert {"sft_tui.core.config.load", "sft_tui.core.runs.store", "sft_tui.core.models.modelspec", "sft_tui.core.runs.sysmon"} <= set(_modules("sft_tui.core"))


@pytest.mark.parametrize("argv", [["--help"], ["runs", "--help"], ["estimate", "--help"], ["models", "list"]])
def test_cli_fast_paths_import_no_ml_or_ui_library(argv):
    code = f"from sft_tui.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    leaked = _loaded_after(code) & set(ML + UI)
    assert not leaked, f"sft-tui {' '.join(argv)} imports {sorted(leaked)}"


def test_data_tools_run_without_loading_ml_or_ui_libraries(tmp_path):
    """inspect, dedup and TF-IDF selection are CPU-light: no torch (seconds to import), no textual."""
    demo = sft_tui.__path__[0] + "/../assets/demo/train.jsonl"
    calls = [["data", "inspect", demo], ["data", "dedup", demo, "-o", str(tmp_path / "d.jsonl")],
             ["data", "select", demo, "-o", str(tmp_path / "s.jsonl"), "--n", "20"]]
    code = "from sft_tui.cli.main import main\n" + "".join(f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n" for argv in calls)
    leaked = _loaded_after(code) & set(ML + UI)
    assert not leaked, f"data tools import {sorted(leaked)}"
    assert (tmp_path / "s.jsonl").is_file()


def _import_graph() -> dict[str, set[str]]:
    """module -> the sft_tui modules it imports, at the top or inside functions (a lazy import is still a dependency)."""
    import ast
    from pathlib import Path

    root = Path(sft_tui.__path__[0])
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_two_modules_import_each_other_directly_or_in_a_circle():
    graph = _import_graph()
    assert "sft_tui.cli.main" in graph and "sft_tui.core.runs.rundir" in graph["sft_tui.core.runs.store"]
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
