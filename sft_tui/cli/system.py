"""`sft-tui gpu`: the GPUs (memory, utilisation, temperature, power, processes) and the host."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sft_tui.cli.output import gib, print_json, print_table


def _maybe(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def gpu(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Show the GPUs (memory, utilisation, temperature, power, processes) and the host."""
    from sft_tui.core.runs.sysmon import SystemSampler

    sampler = SystemSampler()
    snapshot, host = sampler.sample_gpus(), sampler.sample_host()
    sampler.close()
    if as_json:
        print_json({"gpu": snapshot.to_json(), "host": host.to_json()})
        return
    print(f"host: {host.cpu_count} CPUs, RAM {gib(host.ram_used_bytes)} / {gib(host.ram_total_bytes)} GiB")
    if not snapshot.available:
        print(snapshot.reason)
        return
    rows: list[list[Any]] = []
    for g in snapshot.gpus:
        rows.append([g.index, g.name, f"{gib(g.memory_used_bytes)} / {gib(g.memory_total_bytes)}",
                     _maybe(g.utilization_pct, "%"), _maybe(g.temperature_c, " C"), _maybe(g.power_w, " W"),
                     g.compute_capability, "yes" if g.bf16_supported else "no", len(g.processes)])
    print_table(["#", "name", "memory GiB", "util", "temp", "power", "cc", "bf16", "procs"], rows, title=f"driver {snapshot.driver_version}")


def register(app: typer.Typer) -> None:
    """Add gpu to the main app."""
    app.command()(gpu)
