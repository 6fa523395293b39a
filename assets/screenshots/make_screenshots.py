"""Save the README's SVG screenshots of the TUI (Textual renders them itself).

    SFT_TUI_HOME=<a home with a demo run> python assets/screenshots/make_screenshots.py

Writes monitor.svg (the newest run's monitor) and home.svg at 80x24, the size the TUI is
laid out for, from a real run on this machine: a CPU machine shows its "no NVIDIA GPU"
state, as a user would see it. It also copies three of the snapshot tests' pictures
(frozen runs and a fake NVML with an A100 and a T4: they show the layout, not a
measurement) as home-states.svg, monitor-gpu.svg and keys.svg.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from sft_tui.tui.app import make_app

HERE = Path(__file__).resolve().parent
SNAPSHOTS = HERE.parents[1] / "tests" / "tui" / "__snapshots__" / "test_snapshots"
FROM_SNAPSHOTS = {"test_home[size0].svg": "home-states.svg", "test_monitor_gpu_chart_from_recorded_samples[size0].svg": "monitor-gpu.svg",
                  "test_key_overlay[size0].svg": "keys.svg"}


async def main() -> None:
    app = make_app(open_run="latest")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(2.0)  # a few polls: the chart, the log and the GPU lines filled in
        app.save_screenshot(filename="monitor.svg", path=str(HERE))
        await pilot.press("escape")
        await pilot.pause(2.0)
        app.save_screenshot(filename="home.svg", path=str(HERE))
    for snapshot, name in FROM_SNAPSHOTS.items():
        shutil.copyfile(SNAPSHOTS / snapshot, HERE / name)
    print(f"wrote monitor.svg, home.svg and {', '.join(FROM_SNAPSHOTS.values())} in {HERE}")


if __name__ == "__main__":
    asyncio.run(main())
