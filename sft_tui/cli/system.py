"""`sft-tui gpu`: the GPUs (memory, utilisation, temperature, power, processes) and the host."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sft_tui.cli.output import gib, print_json, print_table


def _maybe(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def gpu(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Show the GPUs (memory, utilisation, temperature, power, processes), the room each has for a new run, and the host."""
    from sft_tui.core.runs.placement import gpu_rooms
    from sft_tui.core.runs.queue import scan
    from sft_tui.core.runs.store import RunStore
    from sft_tui.core.runs.sysmon import SystemSampler

    sampler = SystemSampler()
    snapshot, host = sampler.sample_gpus(), sampler.sample_host()
    sampler.close()
    rooms = gpu_rooms(snapshot.gpus, scan(RunStore()).claims) if snapshot.available else []
    if as_json:
        print_json({"gpu": snapshot.to_json(), "host": host.to_json(),
                    "room": [{"index": r.index, "free_gib": round(r.free_gib, 3), "other_gib": round(r.other_gib, 3),
                              "reserved_gib": round(r.reserved_gib, 3), "runs": list(r.runs)} for r in rooms]})
        return
    print(f"host: {host.cpu_count} CPUs, RAM {gib(host.ram_used_bytes)} / {gib(host.ram_total_bytes)} GiB")
    if not snapshot.available:
        print(snapshot.reason)
        return
    rows: list[list[Any]] = []
    for g, room in zip(snapshot.gpus, rooms):
        rows.append([g.index, g.name, f"{gib(g.memory_used_bytes)} / {gib(g.memory_total_bytes)}", f"{room.free_gib:.1f}",
                     _maybe(g.utilization_pct, "%"), _maybe(g.temperature_c, " C"), _maybe(g.power_w, " W"),
                     g.compute_capability, "yes" if g.bf16_supported else "no", len(g.processes)])
    print_table(["#", "name", "memory GiB", "room GiB", "util", "temp", "power", "cc", "bf16", "procs"], rows,
                title=f"driver {snapshot.driver_version}")
    print("room: what a new run may take (total - other processes - what sft-tui runs there will take; `sft-tui queue` waits for it)")
    for room in rooms:
        if room.runs:
            print(f"GPU{room.index}: sft-tui runs {', '.join(room.runs)} ({room.reserved_gib:.1f} GiB)")


def register(app: typer.Typer) -> None:
    """Add gpu to the main app."""
    app.command()(gpu)
