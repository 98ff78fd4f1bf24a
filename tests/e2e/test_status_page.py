"""The status page (/ui) in a real browser (tests/e2e/browser.py: Debian's chromium, headless)
on `mls-sync run` in sandbox mode: what a person sees, clicked through as a person would.

The sandbox starts with one listing sold before the daemon first looked, advertised in a
Facebook story no API deletes: its first cycle takes the other posts down and leaves the story
to a person."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.browser import browser, call
from tests.e2e.conftest import sandbox_config
from tests.e2e.daemon_process import API_TOKEN, Daemon
from tests.helpers import Platforms

PAGES = ("/ui", "/ui/needs-person", "/ui/events")


@pytest.fixture
def chromium() -> Iterator[webdriver.Chrome]:
    with browser() as driver:
        yield driver


@pytest.fixture
async def sandbox(sandbox_daemon: Daemon) -> Daemon:
    """The sandbox daemon once its first cycle (the one that finds the sold listing) ended."""
    await sandbox_daemon.wait_for_run(1, timeout=60)
    return sandbox_daemon


async def open_page(driver: webdriver.Chrome, daemon: Daemon, path: str) -> None:
    await call(driver.get, daemon.url + path)


async def heading_becomes(driver: webdriver.Chrome, text: str) -> None:
    """Waits for the page (after a click, a form post and its redirect) to be the one whose
    heading is `text`."""

    def shown(d: webdriver.Chrome) -> bool:
        try:
            return bool(d.find_element(By.TAG_NAME, "h1").text == text)
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    await call(WebDriverWait(driver, 10).until, shown)


def texts(driver: webdriver.Chrome, css: str) -> list[str]:
    """The elements' text, shown or not (a closed <details> hides its table)."""
    return [
        str(e.get_attribute("textContent")).strip()
        for e in driver.find_elements(By.CSS_SELECTOR, css)
    ]


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """What the page's console said at error level: a refused script or style (the page's
    Content-Security-Policy), a missing asset."""
    logs: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [e for e in logs if e["level"] == "SEVERE"]


async def test_every_page_loads_with_its_assets_and_no_console_error(
    sandbox: Daemon, chromium: webdriver.Chrome
) -> None:
    for path in PAGES:
        await open_page(chromium, sandbox, path)
        assert chromium.find_element(By.TAG_NAME, "h1").text, path
        # The stylesheet applied (served by the daemon itself, nothing from elsewhere).
        header = chromium.find_element(By.TAG_NAME, "header")
        assert header.value_of_css_property("background-color") == "rgba(243, 245, 248, 1)"
        assert console_errors(chromium) == [], path
        # No secret: not the API token, not an account's platform token.
        source = chromium.page_source
        assert API_TOKEN not in source and "-facebook-token" not in source, path
    # The one script ran: it shows the auto-refresh box, which stays hidden without it.
    assert chromium.find_element(By.ID, "auto-refresh").is_displayed()


async def test_the_overview_names_every_sandbox_connection_and_draws_one_mark_per_run(
    sandbox: Daemon, chromium: webdriver.Chrome
) -> None:
    connections = (await sandbox.call("GET", "/v1/mls-connections")).json()["items"]
    assert len(connections) == 2
    await open_page(chromium, sandbox, "/ui")
    names = texts(chromium, "#connections tbody th a")
    assert sorted(names) == sorted(c["name"] for c in connections)
    # The runs table is the chart's twin: one mark per run in each chart, same runs.
    runs = texts(chromium, "#runs tbody th")
    assert runs
    for chart in ("duration", "changes", "errors", "requests"):
        marks = chromium.find_elements(By.CSS_SELECTOR, f"#chart-{chart} rect.mark")
        titles = [m.find_element(By.TAG_NAME, "title").get_attribute("textContent") for m in marks]
        assert sorted(str(t).split(":")[0] for t in titles) == sorted(f"run {r}" for r in runs)


async def test_the_needs_a_person_page_lists_the_story_the_sandbox_made_need_one(
    sandbox: Daemon, chromium: webdriver.Chrome
) -> None:
    manual = (await sandbox.call("GET", "/v1/posts?status=manual_required")).json()["items"]
    assert [p["platform"] for p in manual] == ["facebook"]
    await open_page(chromium, sandbox, "/ui/needs-person")
    [row] = chromium.find_elements(By.CSS_SELECTOR, "#manual-posts tbody tr")
    link = row.find_element(By.CSS_SELECTOR, "th a")
    assert link.text == manual[0]["platform_post_id"]
    assert link.get_attribute("href") == manual[0]["link"]


async def test_a_sold_listing_page_shows_its_audit_trail_and_its_taken_down_posts(
    sandbox: Daemon, chromium: webdriver.Chrome
) -> None:
    """Reached as a person would: from the post that needs them, to its listing."""
    await open_page(chromium, sandbox, "/ui/needs-person")
    listing_link = chromium.find_element(By.CSS_SELECTOR, "#manual-posts tbody td a")
    listing_id = listing_link.text
    await call(listing_link.click)
    await heading_becomes(chromium, f"Listing {listing_id.removeprefix('L-')}")
    assert "sold" in chromium.find_element(By.ID, "listing-now").text
    trail = (await sandbox.call("GET", f"/v1/listings/{listing_id}")).json()["status_changes"]
    rows = chromium.find_elements(By.CSS_SELECTOR, "#trail tbody tr")
    assert len(rows) == len(trail) >= 1
    assert "sold" in rows[0].text and "first seen" in rows[0].text
    posts = {
        r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[2].text
        for r in chromium.find_elements(By.CSS_SELECTOR, "#posts tbody tr")
    }
    assert posts == {
        "facebook": "manual required",
        "instagram": "unpublished",
        "linkedin": "unpublished",
    }


@pytest.fixture
async def exposed(tmp_path: Path, secret_key: str, platforms: Platforms) -> AsyncIterator[Daemon]:
    """The sandbox daemon on an address other machines can reach."""
    config = sandbox_config(tmp_path, secret_key, platforms[1])
    config.add("daemon", http_host="0.0.0.0")  # noqa: S104 - what the test is about
    daemon = config.start()
    try:
        await daemon.wait_notify("READY=1", timeout=60)
        yield daemon
    finally:
        daemon.stop()


async def test_on_an_address_others_reach_the_page_asks_for_a_token_once_and_keeps_a_cookie(
    exposed: Daemon, chromium: webdriver.Chrome
) -> None:
    await open_page(chromium, exposed, "/ui/events")
    assert chromium.find_element(By.TAG_NAME, "h1").text == "Log in"

    chromium.find_element(By.ID, "token").send_keys("not-the-token")
    await call(chromium.find_element(By.CSS_SELECTOR, "form button").click)
    await heading_becomes(chromium, "Log in")
    assert "not accepted" in chromium.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert chromium.find_element(By.ID, "token").get_attribute("value") == ""

    chromium.find_element(By.ID, "token").send_keys(API_TOKEN)
    await call(chromium.find_element(By.CSS_SELECTOR, "form button").click)
    await heading_becomes(chromium, "Events and webhook deliveries")
    assert API_TOKEN not in chromium.current_url
    [cookie] = chromium.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert API_TOKEN not in cookie["value"]
    assert chromium.execute_script("return document.cookie") == ""  # out of scripts' reach

    await open_page(chromium, exposed, "/ui")  # no second login
    assert chromium.find_element(By.TAG_NAME, "h1").text == "Overview"
    await call(chromium.find_element(By.CSS_SELECTOR, ".logout button").click)
    await heading_becomes(chromium, "Log in")
    await open_page(chromium, exposed, "/ui")
    assert chromium.find_element(By.TAG_NAME, "h1").text == "Log in"
    with anyio.fail_after(5):  # without a session, the page gives nothing away
        answer = await exposed.get("/ui/needs-person")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")
