"""Save SVG screenshots of the TUI (Textual renders them itself) for the README.

    SFT_TUI_HOME=<a home with a demo run> python assets/screenshots/make_screenshots.py

Writes monitor.svg (the newest run's monitor) and home.svg here, at 100x30. No GPU
needed: a CPU machine shows its "no NVIDIA GPU found" state, as a user would see it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sft_tui.tui.app import make_app

HERE = Path(__file__).resolve().parent


async def main() -> None:
    app = make_app(open_run="latest")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(2.0)
        app.save_screenshot(filename="monitor.svg", path=str(HERE))
        await pilot.press("escape")
        await pilot.pause(1.0)
        app.save_screenshot(filename="home.svg", path=str(HERE))
    print(f"wrote {HERE / 'monitor.svg'} and {HERE / 'home.svg'}")


if __name__ == "__main__":
    asyncio.run(main())
