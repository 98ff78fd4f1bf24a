"""The README's picture of the status page, taken from the sandbox by the test tooling:

    .venv/bin/python -m tests.e2e.screenshot docs/status-page.png

`mls-sync run` in sandbox mode (a cycle every second) in a folder of its own, a few cycles
of the market moving, then the overview in the tests' headless chromium (tests/e2e/browser.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import anyio

from daemon.encryption import generate_key
from tests.e2e.browser import browser, call
from tests.e2e.conftest import sandbox_config

RUNS = 12  # enough bars for the charts to read as charts
UNUSED_PLATFORMS = "http://127.0.0.1:9"  # the sandbox points the platforms at its own


async def take(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="mls-sync-screenshot-") as folder:
        config = sandbox_config(Path(folder), generate_key(), UNUSED_PLATFORMS)
        daemon = config.start()
        try:
            await daemon.wait_notify("READY=1", timeout=60)
            await daemon.wait_for_run(RUNS, timeout=120)
            with browser() as driver:
                driver.set_window_size(1100, 1100)
                await call(driver.get, daemon.url + "/ui")
                png = await call(driver.get_screenshot_as_png)
        finally:
            daemon.stop()
    out.write_bytes(png)
    print(f"{out}: {len(png):,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the PNG to write")
    anyio.run(take, parser.parse_args().out)


if __name__ == "__main__":
    main()
