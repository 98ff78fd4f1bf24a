"""A real browser for the status page's tests: Debian's chromium, headless, driven by
Selenium through Debian's chromedriver (the same version as the browser). Nothing downloads a
browser or a driver; scripts/check installs both (packages chromium and chromium-driver).

Selenium's calls block, so the async tests run them in a worker thread (`call`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import anyio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
T = TypeVar("T")

# What a headless Chromium needs on this machine: no sandbox as root, no GPU, and none of its
# background connections (this machine has no internet; each would be refused).
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1280,1000",
)


@contextmanager
def browser(javascript: bool = True) -> Iterator[webdriver.Chrome]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise RuntimeError(
                f"{path} is missing: install Debian's chromium and chromium-driver "
                "(scripts/check does, as root)"
            )
    profile = tempfile.mkdtemp(prefix="mls-sync-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def call(func: Callable[..., T], *args: object) -> T:
    """A blocking Selenium call, off the event loop (the daemon under test is a subprocess,
    but the test's own servers may share this loop)."""
    return await anyio.to_thread.run_sync(func, *args)
