"""The daemon end to end: a real subprocess, real signals, real HTTP, a real notify socket,
against the sandbox MLS and platforms served by the test on loopback."""

from __future__ import annotations

import json
import platform
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from importlib.metadata import version
from pathlib import Path

import anyio
import httpx
import pytest

from daemon.composition import open_runtime
from daemon.config import load_settings
from daemon.sandbox.faults import Fault
from daemon.timestamps import parse_iso
from tests.e2e.daemon_process import API_TOKEN, NOWHERE, Daemon, DaemonConfig, Scrape
from tests.helpers import (
    Mls,
    Platforms,
    add_account,
    add_connection,
    add_incremental,
    add_post,
    add_sandbox_connection,
    clock_cycles_half_a_slot_away,
    closed_port_url,
    track,
)

pytestmark = pytest.mark.slow

StartDaemon = Callable[..., Daemon]


@pytest.fixture
async def prepared(daemon_config: DaemonConfig, mls: Mls) -> Path:
    """A config file and a database holding one connection with two listings. The clock's
    cycles half a slot away: the tests here count the runs they start (two failed once in a
    fresh-clone run, each seeing a run more than it started)."""
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1", "K2"])
        await clock_cycles_half_a_slot_away(rt.db, rt.settings.sync.interval_seconds)
    return daemon_config.path


@pytest.fixture
async def start(prepared: Path, daemon_config: DaemonConfig) -> AsyncIterator[StartDaemon]:
    """Starts the daemon on the prepared config and database; stops each one at the end."""
    started: list[Daemon] = []

    def launch(api_token: str | None = API_TOKEN, watchdog_usec: int | None = None) -> Daemon:
        daemon = daemon_config.start(api_token, watchdog_usec)
        started.append(daemon)
        return daemon

    yield launch
    for daemon in started:
        daemon.stop()


async def metric_when(
    daemon: Daemon, name: str, settled: Callable[[float | None], bool], **labels: str
) -> float | None:
    """The metric once `settled` holds, or its last value after 10 s: a finished run shows in
    /status a moment before the daemon has set its metrics, so a first read may be early."""
    deadline = time.monotonic() + 10
    while True:
        value = await daemon.metric(name, **labels)
        if settled(value) or time.monotonic() >= deadline:
            return value
        await anyio.sleep(0.05)


async def metric_equal(daemon: Daemon, name: str, expected: float, **labels: str) -> float | None:
    return await metric_when(daemon, name, lambda value: value == expected, **labels)


async def test_the_daemon_reports_ready_and_answers_health_status_and_metrics(
    start: StartDaemon,
) -> None:
    daemon = start()
    await daemon.wait_notify("READY=1")
    first = await daemon.wait_for_run(1)
    await metric_equal(daemon, "mls_sync_cycles_total", 1, outcome="ok")

    live = await daemon.get("/livez")
    ready = await daemon.get("/readyz")
    status = (await daemon.get("/status")).json()
    metrics = (await daemon.get("/metrics")).text

    assert live.status_code == 200 and live.json() == {"status": "pass"}
    assert (await daemon.get("/healthz")).status_code == 200
    assert ready.status_code == 200
    assert ready.headers["content-type"].startswith("application/health+json")
    assert ready.json()["status"] == "pass" and "sqlite:responseTime" in ready.json()["checks"]
    assert first["trigger"] == "startup" and first["listings_checked"] == 2
    assert (
        status["sandbox"] is False
        and status["next_run"]
        and status["connections"][0]["id"] == "mls-1"
    )
    assert status["listings_by_status"] == {"active": 2}
    assert "mls_sync_listings_checked_total 2.0" in metrics
    assert 'mls_sync_cycles_total{outcome="ok"} 1.0' in metrics
    assert "mls_sync_cycle_duration_seconds_bucket" in metrics
    assert 'mls_sync_connections{state="active"} 1.0' in metrics
    build = {"version": version("mls-sync"), "python": platform.python_version()}
    assert await daemon.metric("mls_sync_build_info", **build) == 1
    assert (await daemon.metric("process_resident_memory_bytes") or 0) > 0
    assert (await daemon.metric("process_open_fds") or 0) > 0
    outcome = daemon.received[await daemon.wait_notify("STATUS=last cycle")]
    assert outcome == (
        f"STATUS=last cycle ok (run 1, ended {first['finished_at'][:19]}Z): "
        "listings checked 2, status changes 2, posts taken down 0, errors 0"  # new: no status yet
    )
    assert (await daemon.get("/openapi.json")).json()["info"]["title"] == "mls-sync"
    unknown = await daemon.get("/nope")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "Not Found"


async def test_sigusr1_syncs_a_status_flipped_in_the_mls(start: StartDaemon, mls: Mls) -> None:
    daemon = start()
    await daemon.wait_notify("READY=1")
    await daemon.wait_for_run(1)
    mls[0].set_status("K1", "Closed")

    daemon.send(signal.SIGUSR1)

    run = await daemon.wait_for_run(2)
    assert run["trigger"] == "signal" and run["status_changes"] == 1
    listing = (await daemon.call("GET", "/v1/listings/L-K1")).json()
    assert listing["status"] == "sold"
    assert [c["event"] for c in listing["status_changes"]] == ["first_seen", "changed"]


async def test_sighup_applies_a_new_interval_and_keeps_the_old_one_on_a_broken_file(
    start: StartDaemon, prepared: Path
) -> None:
    daemon = start()
    await daemon.wait_notify("READY=1")
    text = prepared.read_text()

    prepared.write_text(text.replace("interval_seconds = 900", "interval_seconds = 120"))
    daemon.send(signal.SIGHUP)
    reloading = await daemon.wait_notify("RELOADING=1")
    assert "MONOTONIC_USEC=" in daemon.received[reloading]
    await daemon.wait_notify("READY=1", after=reloading)
    assert (await daemon.get("/status")).json()["interval_seconds"] == 120

    prepared.write_text(text.replace("interval_seconds = 900", "interval_seconds = 'soon'"))
    daemon.send(signal.SIGHUP)
    second = await daemon.wait_notify("RELOADING=1", after=reloading + 1)
    await daemon.wait_notify("READY=1", after=second)
    assert (await daemon.get("/status")).json()["interval_seconds"] == 120
    assert "reload_refused" in daemon.log() and "interval_seconds" in daemon.log()
    assert "soon" not in daemon.log()
    assert (await daemon.get("/livez")).status_code == 200


async def test_sighup_applies_a_longer_mls_timeout_to_the_next_sync(
    start: StartDaemon, prepared: Path, mls: Mls
) -> None:
    """An MLS that answers in 4 s, after a reload from a 2 s timeout to 10 s: the next sync
    waits for it. Before: the clients made at start kept their 2 s, every try timed out,
    and the reload had said nothing of it."""
    daemon = start()
    await daemon.wait_notify("READY=1")
    await daemon.wait_for_run(1)
    text = prepared.read_text()
    assert text.count("timeout_seconds = 2") == 2  # [mls] first, then [platforms]
    prepared.write_text(text.replace("timeout_seconds = 2", "timeout_seconds = 10", 1))
    daemon.send(signal.SIGHUP)
    reloading = await daemon.wait_notify("RELOADING=1")
    await daemon.wait_notify("READY=1", after=reloading)
    mls[0].faults.add(Fault("slow", seconds=4, times=10))  # every try answered after 4 s

    daemon.send(signal.SIGUSR1)

    run = await daemon.wait_for_run(2)
    assert (run["errors"], run["listings_checked"]) == (0, 2)


async def test_sighup_applies_a_longer_platform_timeout_to_the_next_delete(
    start: StartDaemon, prepared: Path, mls: Mls, platforms: Platforms
) -> None:
    """LinkedIn answering a DELETE in 4 s, after a reload from a 2 s timeout to 10 s: the
    sold listing's post comes down. Before: the platforms' clients kept their 2 s."""
    daemon = start()
    await daemon.wait_notify("READY=1")
    await daemon.wait_for_run(1)
    text = prepared.read_text()
    at = text.rindex("timeout_seconds = 2")  # [platforms]' own, after [mls]'
    prepared.write_text(
        text[:at] + "timeout_seconds = 10" + text[at + len("timeout_seconds = 2") :]
    )
    daemon.send(signal.SIGHUP)
    reloading = await daemon.wait_notify("RELOADING=1")
    await daemon.wait_notify("READY=1", after=reloading)
    await _linkedin_post_of_k1(daemon, platforms)
    platforms[0].inject("linkedin", Fault("slow", seconds=4, times=10))
    mls[0].set_status("K1", "Closed")

    result = await daemon.call("POST", "/v1/listings/L-K1/sync")

    assert [p["outcome"] for p in result.json()["posts"]] == ["Deleted"]
    assert not platforms[0].exists("urn:li:share:7")


async def test_sighup_applies_a_new_platform_address_to_the_next_delete(
    start: StartDaemon, prepared: Path, mls: Mls, platforms: Platforms
) -> None:
    """Started with LinkedIn's API at a closed port, then reloaded with its address: the sold
    listing's post comes down. Before: the adapters made at start kept the closed port."""
    text = prepared.read_text()
    edited, replaced = re.subn(
        r'linkedin_api_url = "[^"]*"', f'linkedin_api_url = "{closed_port_url()}"', text
    )
    assert replaced == 1
    prepared.write_text(edited)
    daemon = start()
    await daemon.wait_notify("READY=1")
    await daemon.wait_for_run(1)
    prepared.write_text(text)
    daemon.send(signal.SIGHUP)
    reloading = await daemon.wait_notify("RELOADING=1")
    await daemon.wait_notify("READY=1", after=reloading)
    await _linkedin_post_of_k1(daemon, platforms)
    mls[0].set_status("K1", "Closed")

    result = await daemon.call("POST", "/v1/listings/L-K1/sync")

    assert [p["outcome"] for p in result.json()["posts"]] == ["Deleted"]


async def _linkedin_post_of_k1(daemon: Daemon, platforms: Platforms) -> None:
    """A LinkedIn post of listing L-K1, published, and recorded through the API."""
    platforms[0].publish("linkedin", "urn:li:share:7", "li-token")
    for path, body in [
        (
            "/v1/platform-accounts/li",
            {"user_id": "default", "platform": "linkedin", "access_token": "li-token"},
        ),
        (
            "/v1/posts/p-7",
            {"listing_id": "L-K1", "account_id": "li", "platform_post_id": "urn:li:share:7"},
        ),
    ]:
        assert (await daemon.call("PUT", path, json=body)).status_code == 201


async def test_a_reload_says_which_settings_wait_for_a_restart(
    start: StartDaemon, prepared: Path
) -> None:
    """The HTTP clients' engine and pool sizes are made at start: a reload that asks for
    another engine or larger bounds says so, naming each key, and the rest applies."""
    daemon = start()
    await daemon.wait_notify("READY=1")
    text = prepared.read_text()
    more = {
        "[mls]": '[mls]\nhttp_engine = "httpcore"\nmax_concurrent_requests = 64',
        "[platforms]": "[platforms]\nmax_concurrent_requests = 64",
        "interval_seconds = 900": "interval_seconds = 120",
    }
    for old, new in more.items():
        text = text.replace(old, new, 1)
    prepared.write_text(text)
    daemon.send(signal.SIGHUP)
    reloading = await daemon.wait_notify("RELOADING=1")
    await daemon.wait_notify("READY=1", after=reloading)

    waiting = [
        (line["section"], line.get("key"))
        for line in map(
            json.loads, filter(lambda ln: ln.startswith("{"), daemon.log().splitlines())
        )
        if line.get("event") == "reload_needs_restart"
    ]
    assert sorted(waiting) == [
        ("mls", "http_engine"),
        ("mls", "max_concurrent_requests"),
        ("platforms", "max_concurrent_requests"),
    ]
    assert (await daemon.get("/status")).json()["interval_seconds"] == 120


async def test_sighup_with_a_file_that_is_not_utf8_keeps_the_old_settings_and_the_daemon(
    start: StartDaemon, prepared: Path
) -> None:
    daemon = start()
    await daemon.wait_notify("READY=1")
    text = prepared.read_text()
    secret_comment = "# caf\u00e9 pw=hunter2\n"
    prepared.write_bytes(
        (secret_comment + text.replace("interval_seconds = 900", "interval_seconds = 120")).encode(
            "latin-1"
        )
    )

    daemon.send(signal.SIGHUP)

    reloading = await daemon.wait_notify("RELOADING=1")
    ready = await daemon.wait_notify("READY=1", after=reloading)
    assert "reload refused" in daemon.received[ready]  # the cycle's STATUS= may come after
    assert (await daemon.get("/status")).json()["interval_seconds"] == 900
    assert "reload_refused" in daemon.log() and "not UTF-8 text (line 1" in daemon.log()
    assert "hunter2" not in daemon.log()


async def test_sighup_with_a_file_that_fails_unexpectedly_names_the_file_in_its_refusal(
    start: StartDaemon, prepared: Path
) -> None:
    """An integer of 5,000 digits is more than Python reads (not a TOML error): the reload is
    refused naming the file, as every refusal does, and the old settings stay."""
    daemon = start()
    await daemon.wait_notify("READY=1")
    too_long = "7" * 5000
    prepared.write_text(
        prepared.read_text().replace("interval_seconds = 900", f"interval_seconds = {too_long}")
    )

    daemon.send(signal.SIGHUP)

    reloading = await daemon.wait_notify("RELOADING=1")
    await daemon.wait_notify("READY=1", after=reloading)
    [refusal] = [line for line in daemon.log().splitlines() if "reload_refused" in line]
    assert str(prepared) in refusal
    assert too_long[:20] not in daemon.log()
    assert (await daemon.get("/status")).json()["interval_seconds"] == 900


async def test_sighup_the_instant_ready_arrives_reloads_instead_of_killing_the_daemon(
    start: StartDaemon,
) -> None:
    """systemd may send SIGHUP (ExecReload) as soon as it reads READY=1."""
    daemon = start()

    await daemon.signal_on_notify("READY=1", signal.SIGHUP)

    reloading = await daemon.wait_notify("RELOADING=1")
    await daemon.wait_notify("READY=1", after=reloading)
    assert (await daemon.get("/livez")).status_code == 200
    assert "Traceback" not in daemon.log()


async def test_sigusr1_the_instant_ready_arrives_asks_for_a_sync_instead_of_killing_the_daemon(
    start: StartDaemon,
) -> None:
    """`systemctl kill -s USR1` right after start is a sync request, not a death."""
    daemon = start()

    await daemon.signal_on_notify("READY=1", signal.SIGUSR1)

    await daemon.wait_for_run(1)
    assert (await daemon.get("/livez")).status_code == 200
    assert '"source": "signal"' in daemon.log() or "source=signal" in daemon.log()


async def test_sigterm_during_a_cycle_exits_0_within_the_grace_and_a_restart_loses_nothing(
    start: StartDaemon, prepared: Path, mls: Mls
) -> None:
    prepared.write_text(
        prepared.read_text().replace(
            "shutdown_grace_seconds = 20.0", "shutdown_grace_seconds = 1.5"
        )
    )
    sandbox = mls[0]
    sandbox.set_status("K1", "Closed")
    sandbox.faults.add(Fault("slow", seconds=30, times=2))  # the startup cycle hangs in flight
    daemon = start()
    await daemon.wait_notify("READY=1")
    while not sandbox.in_flight:
        await anyio.sleep(0.05)

    daemon.send(signal.SIGTERM)
    code, seconds = await daemon.wait_exit(timeout=10)

    assert code == 0 and seconds < 1.5 + 2
    assert any("STOPPING=1" in m for m in daemon.received)
    sandbox.faults.clear()
    again = start()
    await again.wait_notify("READY=1")
    run = await again.wait_for_run(2)
    assert run["outcome"] == "ok"
    listing = (await again.call("GET", "/v1/listings/L-K1")).json()
    assert listing["status"] == "sold"
    runs = (await again.call("GET", "/v1/runs")).json()["items"]
    assert runs[-1]["outcome"] == "interrupted"  # the killed cycle, marked on restart


async def test_a_restart_remembers_the_last_good_cycle_and_one_bad_listing_does_not_fail_it(
    start: StartDaemon, mls: Mls
) -> None:
    """The critical alert reads mls_sync_last_success_timestamp_seconds: a restart must not
    reset it to 0, and a cycle kept `partial` by one bad listing still read the MLS."""
    mls[0].set_status("K2", "NotAStatus")  # an error for that listing, every cycle
    daemon = start()
    await daemon.wait_notify("READY=1")
    first = await daemon.wait_for_run(1)
    assert first["outcome"] == "partial"
    said = daemon.received[await daemon.wait_notify("STATUS=last cycle")]
    assert said.startswith("STATUS=last cycle partial (run 1, ended ")
    assert said.endswith("errors 1 (mls-sync history --run 1)")
    finished = parse_iso(first["finished_at"]).timestamp()
    assert await metric_equal(daemon, "mls_sync_last_success_timestamp_seconds", finished) == (
        finished
    )
    daemon.send(signal.SIGTERM)
    assert (await daemon.wait_exit(timeout=20))[0] == 0
    mls[0].faults.add(Fault("slow", seconds=30, times=5))  # the next start's cycle hangs

    again = start()
    await again.wait_notify("READY=1")

    assert await again.metric("mls_sync_last_success_timestamp_seconds") == finished
    assert await again.metric("mls_sync_last_cycle_timestamp_seconds") == finished
    started = await metric_when(
        again, "mls_sync_cycle_started_timestamp_seconds", lambda value: bool(value)
    )
    assert started is not None and finished < started <= time.time()
    assert await again.metric("mls_sync_interval_seconds") == 900


async def test_a_connection_whose_mls_keeps_failing_shows_as_failing_until_a_clean_cycle(
    start: StartDaemon, mls: Mls
) -> None:
    mls[0].faults.add(Fault("status", status=503, times=1000))
    daemon = start()
    await daemon.wait_notify("READY=1")
    first = await daemon.wait_for_run(1)
    assert await metric_equal(daemon, "mls_sync_connection_failing", 1, connection="mls-1") == 1
    assert await metric_equal(daemon, "mls_sync_cycle_started_timestamp_seconds", 0) == 0
    # A cycle whose every batch failed read nothing: not a success, whatever its outcome says.
    started = parse_iso(first["started_at"]).timestamp()
    assert await metric_equal(daemon, "mls_sync_last_success_timestamp_seconds", started) == (
        started
    )

    mls[0].faults.clear()
    daemon.send(signal.SIGUSR1)
    assert (await daemon.wait_for_run(2))["outcome"] == "ok"

    assert await metric_equal(daemon, "mls_sync_connection_failing", 0, connection="mls-1") == 0


async def test_a_failed_batch_counts_while_its_cycle_runs_and_each_connection_has_its_series(
    start: StartDaemon, prepared: Path, secret_key: str, mls: Mls
) -> None:
    """An error shows in /metrics once recorded, not when the cycle ends (and is not counted
    again then); each connection has its own error count and last success."""
    sandbox, url = mls
    sandbox.put("K3", "Active")
    async with open_runtime(load_settings(prepared, {}), {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        await add_connection(rt, url, "mls-2")
        await track(rt, "mls-2", ["K3"])
    sandbox.faults.add(Fault("status", status=503, times=1000, matching="'K1'"))  # mls-1 fails
    sandbox.faults.add(Fault("slow", seconds=30, times=2, matching="'K3'"))  # mls-2 times out twice
    daemon = start()
    await daemon.wait_notify("READY=1")

    during = await daemon.scrape()
    with anyio.fail_after(10):
        while during.get("mls_sync_errors_total", {"scope": "batch"}) != 1:
            await anyio.sleep(0.05)
            during = await daemon.scrape()
    run = await daemon.wait_for_run(1, timeout=30)
    after = await _scrape_when(
        daemon, lambda s: s.get("mls_sync_cycles_total", {"outcome": "partial"}) == 1
    )

    assert during.get("mls_sync_cycle_running") == 1  # counted before the cycle ended
    assert during.get("mls_sync_connection_errors_total", {"connection": "mls-1"}) == 1
    assert during.get("mls_sync_connection_errors_total", {"connection": "mls-2"}) == 0
    assert run["outcome"] == "partial" and run["errors"] == 1
    assert after.get("mls_sync_errors_total", {"scope": "batch"}) == 1  # not twice
    assert after.get("mls_sync_connection_errors_total", {"connection": "mls-1"}) == 1
    assert after.get("mls_sync_connection_errors_total", {"connection": "mls-2"}) == 0
    assert after.get("mls_sync_listings_checked_total") == 1
    last_success = "mls_sync_connection_last_success_timestamp_seconds"
    assert after.get(last_success, {"connection": "mls-1"}) == 0  # never read
    # When mls-2's own sync ended: within the run.
    read = after.get(last_success, {"connection": "mls-2"})
    began, finished = (parse_iso(run[end]).timestamp() for end in ("started_at", "finished_at"))
    assert read is not None and began <= read <= finished


async def _scrape_when(daemon: Daemon, settled: Callable[[Scrape], bool]) -> Scrape:
    """/metrics once `settled` holds, or after 10 s: the counters are set a moment after
    /status shows the run finished."""
    scrape = await daemon.scrape()
    with anyio.move_on_after(10):
        while not settled(scrape):
            await anyio.sleep(0.05)
            scrape = await daemon.scrape()
    return scrape


async def test_every_error_scope_and_cycle_outcome_is_counted_from_0_at_start(
    start: StartDaemon, mls: Mls
) -> None:
    """increase() takes a counter's first sample as its baseline: a series the exporter
    creates only at its first error loses that error (and a restart recreates them all)."""
    mls[0].faults.add(Fault("slow", seconds=30, times=5))  # the first cycle does not end
    daemon = start()
    await daemon.wait_notify("READY=1")

    for scope in ("run", "connection", "batch", "listing", "post", "account"):
        assert await daemon.metric("mls_sync_errors_total", scope=scope) == 0, scope
    for outcome in ("ok", "partial", "failed"):
        assert await daemon.metric("mls_sync_cycles_total", outcome=outcome) == 0, outcome


async def test_incremental_cycles_that_read_the_mls_while_facebook_is_down_are_successes(
    tmp_path: Path, secret_key: str, mls: Mls
) -> None:
    """Incremental cycles check only listings that changed (often none) while a platform
    outage makes them `partial`: they still read the MLS, so the last success moves and no
    listing error counts towards the error rate."""
    sandbox, url = mls
    sandbox.put("K1", "Closed")
    sandbox.put("K2", "Active")
    config = DaemonConfig.write(tmp_path, NOWHERE, secret_key)  # no platform answers there
    config.add("platforms", retry_initial_seconds=0)  # the post is due every cycle
    async with config.runtime() as rt:
        await add_incremental(rt, url, ["K1", "K2"])
        await add_account(rt, "fb-page", "facebook", "fb-token")
        await add_post(rt, "p-1", "L-K1", "fb-page", "1093_4417")
    daemon = config.start()
    try:
        await daemon.wait_notify("READY=1")
        first = await daemon.wait_for_run(1)  # the full pass: K1 sold, its delete fails
        daemon.send(signal.SIGUSR1)
        second = await daemon.wait_for_run(2)  # nothing changed; the delete fails again

        assert (first["listings_checked"], second["listings_checked"]) == (2, 0)
        assert (first["outcome"], second["outcome"]) == ("partial", "partial")
        finished = parse_iso(second["finished_at"]).timestamp()
        last_success = "mls_sync_last_success_timestamp_seconds"
        assert await _metric_when_settled(daemon, last_success, finished) == finished
        assert await daemon.metric("mls_sync_connection_failing", connection="mls-1") == 0
        assert await daemon.metric("mls_sync_errors_total", scope="post") == 2
        assert await daemon.metric("mls_sync_errors_total", scope="listing") == 0
        assert await daemon.metric("mls_sync_listings_checked_total") == 2
    finally:
        daemon.stop()


async def _metric_when_settled(daemon: Daemon, name: str, expected: float) -> float | None:
    """The metric once it shows `expected`, or its value after 10 s: the gauges are set a
    moment after /status shows the run finished."""
    with anyio.move_on_after(10):
        while await daemon.metric(name) != expected:
            await anyio.sleep(0.05)
    return await daemon.metric(name)


async def test_the_v1_api_refuses_a_missing_wrong_or_malformed_token(start: StartDaemon) -> None:
    daemon = start()
    await daemon.wait_notify("READY=1")
    for token in (None, "wrong", API_TOKEN + "x", ""):
        response = await daemon.call("POST", "/v1/sync", token=token)
        assert response.status_code == 401, token
        assert response.headers["www-authenticate"] == "Bearer"
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        basic = await client.get("/v1/runs", headers={"Authorization": f"Basic {API_TOKEN}"})
    assert basic.status_code == 401
    assert (await daemon.call("POST", "/v1/sync")).status_code == 202


async def test_without_a_token_the_api_is_off_and_says_so(start: StartDaemon) -> None:
    daemon = start(api_token=None)
    await daemon.wait_notify("READY=1")
    response = await daemon.call("POST", "/v1/sync", token="anything")
    assert response.status_code == 503 and "API is off" in response.json()["detail"]


async def test_a_listing_and_a_post_recorded_through_the_api_come_down_when_sold(
    start: StartDaemon, mls: Mls, platforms: Platforms
) -> None:
    """The app's whole path: record a listing and its published post over /v1, the MLS
    says Closed, a sync through /v1, and the post is deleted on the platform."""
    daemon = start()
    await daemon.wait_notify("READY=1")
    await daemon.wait_for_run(1)
    mls[0].put("K9", "Active")
    platforms[0].publish("linkedin", "urn:li:share:99", "li-token")
    put = [
        ("/v1/listings/L-K9", {"connection_id": "mls-1", "listing_key": "K9"}),
        (
            "/v1/platform-accounts/li",
            {"user_id": "default", "platform": "linkedin", "access_token": "li-token"},
        ),
        (
            "/v1/posts/p-9",
            {"listing_id": "L-K9", "account_id": "li", "platform_post_id": "urn:li:share:99"},
        ),
    ]
    for path, body in put:
        response = await daemon.call("PUT", path, json=body)
        assert response.status_code == 201, response.text
        assert "li-token" not in response.text
        again = await daemon.call("PUT", path, json=body)
        assert again.status_code == 200  # idempotent
    mls[0].set_status("K9", "Closed")

    result = await daemon.call("POST", "/v1/listings/L-K9/sync")

    assert result.status_code == 200, result.text
    assert result.json()["listing"]["status"] == "sold"
    assert [p["outcome"] for p in result.json()["posts"]] == ["Deleted"]
    assert not platforms[0].exists("urn:li:share:99")
    post = (await daemon.call("GET", "/v1/posts/p-9")).json()
    assert post["status"] == "unpublished"


async def test_bad_api_bodies_are_refused_and_change_nothing(start: StartDaemon) -> None:
    daemon = start()
    await daemon.wait_notify("READY=1")
    bad = await daemon.call(
        "PUT",
        "/v1/mls-connections/x",
        json={"name": "X", "base_url": "ftp://nope", "batch_size": 0},
    )
    assert bad.status_code == 422
    assert "base_url" in bad.text and "batch_size" in bad.text
    huge = await daemon.call(
        "PUT",
        "/v1/listings/L-big",
        content=b"{" + b" " * 100_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    unknown_field = await daemon.call(
        "PUT",
        "/v1/listings/L-1",
        json={"connection_id": "mls-1", "listing_key": "K1", "colour": "red"},
    )
    assert unknown_field.status_code == 422 and "has a field the record does not have" in (
        unknown_field.text
    )
    assert "colour" not in unknown_field.text  # a field's name is input too
    assert (await daemon.call("GET", "/v1/mls-connections/x")).status_code == 404
    assert (await daemon.call("GET", "/v1/listings/L-big")).status_code == 404


async def test_the_watchdog_is_pinged_from_the_event_loop(start: StartDaemon) -> None:
    daemon = start(watchdog_usec=400_000)  # ping every 0.2 s
    first = await daemon.wait_notify("WATCHDOG=1")
    await daemon.wait_notify("WATCHDOG=1", after=first + 1)


async def test_the_daemon_answers_while_the_test_awaits_something_else(start: StartDaemon) -> None:
    """The harness reads the notify socket all the time, as systemd does: a test that awaits a
    browser for a while must not leave the daemon blocked on a full socket."""
    daemon = start(watchdog_usec=100_000)  # a ping every 50 ms: the kernel queues 10 or so
    await daemon.wait_notify("READY=1")
    time.sleep(2)  # noqa: ASYNC251 - on purpose: nothing of the test runs meanwhile
    with anyio.fail_after(5):
        assert (await daemon.get("/healthz")).status_code == 200
    assert sum("WATCHDOG=1" in m for m in daemon.received) >= 20


async def test_the_daemon_answers_while_systemd_reads_none_of_its_notifications(
    prepared: Path, daemon_config: DaemonConfig
) -> None:
    """A stuck systemd (its notify socket full) may lose the daemon's watchdog pings and
    status lines, never stop its event loop."""
    daemon = daemon_config.start(watchdog_usec=100_000, read_notifications=False)
    try:
        with anyio.fail_after(30):
            while True:
                try:
                    if (await daemon.get("/livez")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass  # not listening yet
                await anyio.sleep(0.1)
        await anyio.sleep(2)  # 40 pings and a cycle's status lines, none read
        with anyio.fail_after(5):
            assert (await daemon.get("/livez")).status_code == 200
            await daemon.wait_for_run(1)
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()


async def test_a_port_in_use_is_a_clear_error(prepared: Path, daemon_config: DaemonConfig) -> None:
    port = daemon_config.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        daemon = daemon_config.start()
        try:
            code, _ = await daemon.wait_exit(timeout=60)  # its whole start, then the error
        finally:
            daemon.stop()
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in daemon.log()
    assert "Traceback" not in daemon.log()


async def test_an_mls_engine_that_cannot_be_loaded_stops_the_start_naming_the_setting(
    prepared: Path, daemon_config: DaemonConfig, tmp_path: Path
) -> None:
    """The engine is loaded at start, not at the first MLS request: a broken installation
    is found before the daemon says it is ready, not in its first cycle."""
    shadow = tmp_path / "shadow" / "aiohttp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("a broken installation")\n')
    daemon = daemon_config.start(env={"PYTHONPATH": str(shadow.parent)})
    try:
        code, _ = await daemon.wait_exit(timeout=60)
    finally:
        daemon.stop()
    assert code == 1
    assert "cannot load the MLS HTTP engine 'aiohttp'" in daemon.log()
    assert "http_engine" in daemon.log() and "Traceback" not in daemon.log()
    assert not any("READY=1" in message for message in daemon.received)


async def test_readyz_fails_and_names_the_check_when_no_cycle_completes(
    start: StartDaemon, daemon_config: DaemonConfig, mls: Mls
) -> None:
    daemon_config.add("daemon", startup_grace_seconds=0)
    mls[0].faults.add(Fault("slow", seconds=30, times=5))  # the first cycle cannot finish
    daemon = start()
    await daemon.wait_notify("READY=1")

    ready = await daemon.get("/readyz")

    assert ready.status_code == 503
    assert ready.json()["status"] == "fail" and ready.json()["output"] == "failing: cycle:age"
    assert (await daemon.get("/livez")).status_code == 200  # alive, just not ready
    status = (await daemon.get("/status")).json()
    assert status["running"]["trigger"] == "startup"
