"""The status page (/ui) in a real browser (tests/e2e/browser.py: Debian's chromium, headless)
on `mls-sync run` in sandbox mode: what a person sees, clicked through as a person would.

The sandbox starts with one listing sold before the daemon first looked, advertised in a
Facebook story no API deletes: its first cycle takes the other posts down and leaves the story
to a person."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.browser import browser, call
from tests.e2e.conftest import sandbox_config
from tests.e2e.daemon_process import API_TOKEN, Daemon
from tests.helpers import Platforms

pytestmark = pytest.mark.slow

# Every page: the three of the navigation, a connection's, and a listing's (one every
# sandbox has).
PAGES = (
    "/ui",
    "/ui/needs-person",
    "/ui/events",
    "/ui/connections/sandbox-1",
    "/ui/listings/L-SBX001-000000",
)


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


async def click_through(driver: webdriver.Chrome, element: WebElement, heading: str) -> None:
    """Clicks `element` (a link, a form's button) and waits for the page it leads to (after a
    form post, its redirect) to be loaded, with `heading` as its heading.

    Waiting for the heading alone is not enough: a login refused leads back to a page with the
    same heading, which the page still shown would satisfy. So it waits first for the document
    the click replaces to go, then reads the heading of the new one in one script: an element
    found first and read after could belong to a document replaced in between, which chromium
    reports as a bare WebDriverException, not as a stale element."""
    old_document = driver.find_element(By.TAG_NAME, "html")
    await call(element.click)

    def replaced(_: webdriver.Chrome) -> bool:
        # selenium's staleness_of knows only StaleElementReferenceException; chromium may
        # answer that the node "does not belong to the document", which means the same.
        try:
            old_document.is_enabled()
        except WebDriverException:  # stale, or no longer in the document
            return True
        return False

    await call(WebDriverWait(driver, 10).until, replaced)

    def shown(d: webdriver.Chrome) -> bool:
        try:
            found = d.execute_script(
                "const h = document.querySelector('h1'); return h ? h.textContent.trim() : null"
            )
        except WebDriverException:  # mid-navigation: the next poll reads the new document
            return False
        return bool(found == heading)

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


def contrast(foreground: str, background: str) -> float:
    """WCAG 2's contrast ratio of two `rgba(r, g, b, a)` colours as the browser reports them."""

    def luminance(css: str) -> float:
        red, green, blue = (int(v) / 255 for v in css[css.index("(") + 1 :].split(",")[:3])

        def channel(c: float) -> float:
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)

    light, dark = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


async def test_text_has_at_least_4_5_to_1_contrast_on_every_page(
    sandbox: Daemon, chromium: webdriver.Chrome
) -> None:
    """Every link, badge, error, note and header cell, against the page or the table head."""
    backgrounds = {"paper": "rgba(255, 255, 255, 1)", "band": "rgba(243, 245, 248, 1)"}
    checked = 0
    for path in PAGES:
        await open_page(chromium, sandbox, path)
        for element in chromium.find_elements(
            By.CSS_SELECTOR, "a, .badge, .error-text, small, th, footer, .legend, h1, h2"
        ):
            if not element.is_displayed() or not element.text:
                continue
            color = element.value_of_css_property("color")
            for name, background in backgrounds.items():
                ratio = contrast(color, background)
                assert ratio >= 4.5, (path, element.text, color, name, round(ratio, 2))
            checked += 1
    assert checked > 20


async def test_the_pages_read_on_a_phone_without_sideways_scrolling(
    sandbox: Daemon, chromium: webdriver.Chrome
) -> None:
    """Wide tables scroll in their own box; the page itself fits the screen."""
    chromium.set_window_size(390, 844)
    for path in PAGES:
        await open_page(chromium, sandbox, path)
        overflow = chromium.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, (path, overflow)


async def test_a_printed_page_leaves_out_the_navigation_and_keeps_the_figures(
    sandbox: Daemon, chromium: webdriver.Chrome
) -> None:
    await open_page(chromium, sandbox, "/ui")
    chromium.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    assert not chromium.find_element(By.TAG_NAME, "header").is_displayed()
    assert chromium.find_element(By.ID, "connections").is_displayed()
    assert chromium.find_element(By.ID, "chart-duration").is_displayed()


async def test_the_pages_read_without_javascript(sandbox: Daemon) -> None:
    """Everything is in the HTML; only the auto-refresh needs the script, and without it its
    box does not show."""
    with browser(javascript=False) as driver:
        for path in PAGES:
            await open_page(driver, sandbox, path)
            assert driver.find_element(By.TAG_NAME, "h1").text, path
            assert not driver.find_element(By.ID, "auto-refresh").is_displayed()
        await open_page(driver, sandbox, "/ui")
        assert len(texts(driver, "#connections tbody th a")) == 4


async def test_the_overview_names_every_sandbox_connection_and_draws_one_mark_per_run(
    sandbox: Daemon, chromium: webdriver.Chrome
) -> None:
    connections = (await sandbox.call("GET", "/v1/mls-connections")).json()["items"]
    assert len(connections) == 4
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
    await click_through(chromium, listing_link, f"Listing {listing_id.removeprefix('L-')}")
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
    await click_through(chromium, chromium.find_element(By.CSS_SELECTOR, "form button"), "Log in")
    assert "not accepted" in chromium.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert chromium.find_element(By.ID, "token").get_attribute("value") == ""

    chromium.find_element(By.ID, "token").send_keys(API_TOKEN)
    await click_through(
        chromium,
        chromium.find_element(By.CSS_SELECTOR, "form button"),
        "Events and webhook deliveries",
    )
    assert API_TOKEN not in chromium.current_url
    [cookie] = chromium.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert API_TOKEN not in cookie["value"]
    assert chromium.execute_script("return document.cookie") == ""  # out of scripts' reach

    await open_page(chromium, exposed, "/ui")  # no second login
    assert chromium.find_element(By.TAG_NAME, "h1").text == "Overview"
    await click_through(
        chromium, chromium.find_element(By.CSS_SELECTOR, ".logout button"), "Log in"
    )
    await open_page(chromium, exposed, "/ui")
    assert chromium.find_element(By.TAG_NAME, "h1").text == "Log in"
    with anyio.fail_after(5):  # without a session, the page gives nothing away
        answer = await exposed.get("/ui/needs-person")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")


async def test_pages_answer_with_a_strict_policy_and_errors_that_repeat_nothing(
    sandbox: Daemon,
) -> None:
    page = await sandbox.get("/ui")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"

    missing = await sandbox.get("/ui/listings/L-NOT-THERE-%3Cb%3E")
    assert missing.status_code == 404 and "NOT-THERE" not in missing.text
    bad = await sandbox.get("/ui/connections/sandbox-1?status=%3Cscript%3Ex")
    assert bad.status_code == 422 and "not a valid value: status" in bad.text
    assert "<script>x" not in bad.text and "&lt;script&gt;x" not in bad.text


async def test_a_connections_listings_are_paged_and_filtered_by_status(sandbox: Daemon) -> None:
    listings = await sandbox.call("GET", "/v1/listings?connection_id=sandbox-1&limit=1000")
    every = {item["id"] for item in listings.json()["items"]}
    seen: set[str] = set()
    path: str | None = "/ui/connections/sandbox-1"
    while path is not None:
        page = await sandbox.get(path)
        assert page.status_code == 200
        seen |= set(re.findall(r'href="/ui/listings/([^"]+)"', page.text))
        found = re.search(r'<a rel="next" href="([^"]+)"', page.text)
        path = html.unescape(found.group(1)) if found else None
    assert seen == every and len(every) > 25
    sold = await sandbox.get("/ui/connections/sandbox-1?status=sold")
    assert 'aria-current="page">sold' in sold.text


async def test_a_webhook_endpoint_shows_where_it_delivers_never_its_url(sandbox: Daemon) -> None:
    """A receiver's URL may carry its own token; the page shows its scheme and host only."""
    made = await sandbox.call(
        "POST", "/v1/webhooks", json={"url": "http://127.0.0.1:9/hooks?token=receiver-s3cret"}
    )
    assert made.status_code == 201, made.text
    page = await sandbox.get("/ui/events")
    assert "at http://127.0.0.1:9 " in page.text
    assert "receiver-s3cret" not in page.text and "/hooks" not in page.text


async def test_a_login_never_sends_the_browser_elsewhere_nor_takes_another_sites_form(
    exposed: Daemon,
) -> None:
    asked = await exposed.get("/ui/connections/sandbox-1?status=sold")
    assert asked.status_code == 303
    assert asked.headers["location"] == (
        "/ui/login?next=%2Fui%2Fconnections%2Fsandbox-1%3Fstatus%3Dsold"
    )
    form = {"token": API_TOKEN, "next": "https://elsewhere.example/ui"}
    answer = await exposed.call("POST", "/ui/login", token=None, data=form)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"
    cross = await exposed.call(
        "POST", "/ui/login", token=None, data=form, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403 and "set-cookie" not in cross.headers
