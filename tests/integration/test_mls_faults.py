"""Each fault the sandbox MLS can throw gives the documented behaviour and loses nothing."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from daemon.composition import Runtime, open_runtime
from daemon.sandbox.faults import Fault
from daemon.sandbox.mls_server import SandboxMls
from daemon.store import connections, listings, runs
from tests.helpers import (
    Mls,
    add_connection,
    add_oauth_connection,
    closed_port_url,
    make_settings,
    status_of,
    track,
)

pytestmark = pytest.mark.both_databases


async def _three_listings(rt: Runtime, sandbox: SandboxMls, url: str, **fields: object) -> None:
    for key, status in (("A", "Active"), ("B", "Pending"), ("C", "Closed")):
        sandbox.put(key, status)
    await add_connection(rt, url, **fields)  # type: ignore[arg-type]
    await track(rt, "mls-1", ["A", "B", "C"])


async def _statuses(rt: Runtime) -> list[str | None]:
    return [await status_of(rt, k) for k in ("A", "B", "C")]


async def test_429_with_retry_after_waits_that_long_then_succeeds(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    sandbox.faults.add(Fault("status", status=429, retry_after="1"))

    started = time.monotonic()
    report = await runtime.engine.sync_all()

    assert time.monotonic() - started >= 1.0
    assert report.run.errors == 0 and report.run.mls_requests == 2
    assert await _statuses(runtime) == ["active", "pending", "sold"]


async def test_429_without_retry_after_backs_off_and_succeeds(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    sandbox.faults.add(Fault("status", status=429, times=2))

    report = await runtime.engine.sync_all()

    assert report.run.errors == 0 and report.run.mls_requests == 3
    assert await _statuses(runtime) == ["active", "pending", "sold"]


async def test_the_waits_between_a_pages_attempts_double_from_the_first(
    tmp_path: Path, secret_key: str, mls: Mls
) -> None:
    """Four 503s without Retry-After, then an answer: the waits after attempts 1-4 are
    0.25, 0.5, 1 and 2 s, each plus up to 0.25 s of jitter: at least 3.75 s in all. Waits
    numbered one attempt short (0.25, 0.25, 0.5, 1) come to at most 3 s, which leaves the
    five requests and the sync 0.75 s."""
    sandbox, url = mls
    settings = make_settings(
        tmp_path,
        MLS_SYNC_MLS__MAX_ATTEMPTS="5",
        MLS_SYNC_MLS__BACKOFF_INITIAL_SECONDS="0.25",
        MLS_SYNC_MLS__BACKOFF_MAX_SECONDS="5",
    )
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        await _three_listings(rt, sandbox, url)
        sandbox.faults.add(Fault("status", status=503, times=4))
        started = time.monotonic()
        report = await rt.engine.sync_all()
        took = time.monotonic() - started
        assert await _statuses(rt) == ["active", "pending", "sold"]

    assert report.run.errors == 0 and report.run.mls_requests == 5
    assert took >= 3.75


async def test_repeated_429s_open_the_circuit_and_leave_that_server_alone(
    runtime: Runtime, mls: Mls
) -> None:
    """After `breaker_after_429s` (3) answers of 429 in a row the connection gets no more calls
    this cycle; the reason is recorded; the statuses are untouched and the next cycle works.
    (20 requests/s: each answer is back before the next request may leave, so the count is
    exact; faster, requests already sent when the third 429 arrives are counted too.)"""
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url, batch_size=1, rate_per_second=20.0)
    sandbox.faults.add(Fault("status", status=429, times=50))

    report = await runtime.engine.sync_all()

    assert sum(sandbox.requests.values()) == 3
    [error] = report.errors
    assert error.scope == "connection" and "429" in error.message
    assert await _statuses(runtime) == [None, None, None]
    sandbox.faults.clear()
    again = await runtime.engine.sync_all()
    assert again.run.errors == 0
    assert await _statuses(runtime) == ["active", "pending", "sold"]


async def test_a_retry_after_longer_than_we_wait_ends_the_connection_for_this_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    sandbox.faults.add(Fault("status", status=503, retry_after="3600"))

    report = await runtime.engine.sync_all()

    assert "3600" in report.errors[0].message
    assert sum(sandbox.requests.values()) == 1


async def test_5xx_answers_are_retried_with_backoff(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    sandbox.faults.add(Fault("status", status=500))
    sandbox.faults.add(Fault("status", status=502))
    sandbox.faults.add(Fault("status", status=503, retry_after="0"))

    report = await runtime.engine.sync_all()

    assert report.run.errors == 0 and report.run.mls_requests == 4
    assert await _statuses(runtime) == ["active", "pending", "sold"]


async def test_a_batch_that_fails_every_retry_is_one_batch_error_and_changes_nothing(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    await runtime.engine.sync_all()
    sandbox.set_status("A", "Closed")
    sandbox.faults.add(Fault("status", status=500, times=10))

    report = await runtime.engine.sync_all()

    [error] = report.errors
    assert error.scope == "batch" and "500" in error.message
    # Its tries, then its halves down to each of its three keys, once each ([A], [B, C],
    # [B], [C]): no part answered, so the batch fails whole.
    assert report.run.mls_requests == runtime.settings.mls.max_attempts + 4
    assert await _statuses(runtime) == ["active", "pending", "sold"]
    row = await listings.get(runtime.db, "L-A")
    assert row is not None and row.last_error is not None and "not checked" in row.last_error


async def test_a_slow_answer_times_out_and_is_retried(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    sandbox.faults.add(Fault("slow", seconds=3.0))  # the test timeout is 2 s

    report = await runtime.engine.sync_all()

    assert report.run.errors == 0 and report.run.mls_requests == 2
    assert await _statuses(runtime) == ["active", "pending", "sold"]


async def test_malformed_json_is_retried(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    sandbox.faults.add(Fault("malformed_json"))
    sandbox.faults.add(Fault("truncated"))

    report = await runtime.engine.sync_all()

    assert report.run.errors == 0 and report.run.mls_requests == 3
    assert await _statuses(runtime) == ["active", "pending", "sold"]


async def test_a_record_with_wrong_field_types_fails_only_that_listing(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    sandbox.put("B", 42)  # StandardStatus as a number

    report = await runtime.engine.sync_all()

    assert await _statuses(runtime) == ["active", None, "sold"]
    [error] = report.errors
    assert (error.scope, error.listing_id) == ("listing", "L-B")
    assert "StandardStatus" in error.message and "42" in error.message


async def test_a_record_missing_its_status_fails_only_that_listing(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    await runtime.engine.sync_all()
    del sandbox.records["C"]["StandardStatus"]
    sandbox.records["C"]["MlsStatus"] = None

    report = await runtime.engine.sync_all()

    assert await _statuses(runtime) == ["active", "pending", "sold"]
    [error] = report.errors
    assert error.listing_id == "L-C" and "missing" in error.message


async def test_an_unknown_status_is_an_error_for_that_listing_and_changes_nothing(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    await runtime.engine.sync_all()
    sandbox.set_status("A", "Sold Pending Paperwork")

    report = await runtime.engine.sync_all()

    assert await _statuses(runtime) == ["active", "pending", "sold"]
    [error] = report.errors
    assert error.listing_id == "L-A" and "Sold Pending Paperwork" in error.message
    assert report.run.outcome == "partial"


async def test_incomplete_is_ignored_with_a_warning(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    await runtime.engine.sync_all()
    sandbox.set_status("A", "Incomplete")

    report = await runtime.engine.sync_all()

    assert await _statuses(runtime) == ["active", "pending", "sold"]
    assert (report.run.errors, report.run.warnings, report.run.outcome) == (0, 1, "ok")


async def test_mlg_can_view_false_counts_as_removed(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url, select_mlg_can_view=True)
    await runtime.engine.sync_all()
    sandbox.hide("A")

    await runtime.engine.sync_all()

    assert await status_of(runtime, "A") == "off_market"
    change = (await listings.history(runtime.db, "L-A"))[-1]
    assert (change.from_status, change.to_status, change.event) == (
        "active",
        "off_market",
        "removed",
    )


async def test_a_key_missing_from_the_answer_counts_as_removed(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    await _three_listings(runtime, sandbox, url)
    await runtime.engine.sync_all()
    sandbox.delete("B")

    report = await runtime.engine.sync_all()

    assert await _statuses(runtime) == ["active", "off_market", "sold"]
    assert report.run.errors == 0


async def test_a_413_splits_the_batch_until_the_server_accepts_it(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    keys = [f"K{i:03d}" for i in range(40)]
    for k in keys:
        sandbox.put(k, "Closed")
    sandbox.max_filter_length = 120  # about 8 keys per `in` filter
    await add_connection(runtime, url)
    await track(runtime, "mls-1", keys)

    report = await runtime.engine.sync_all()

    assert report.run.errors == 0 and report.run.listings_checked == 40
    assert {await status_of(runtime, k) for k in keys} == {"sold"}


async def test_an_expired_oauth_token_is_refreshed_once_and_the_request_retried(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    sandbox.put("A", "Active")
    await add_oauth_connection(runtime, url)
    await track(runtime, "mls-1", ["A"])
    await runtime.engine.sync_all()
    assert sandbox.token_requests == 1
    sandbox.expire_tokens()
    sandbox.set_status("A", "Closed")

    report = await runtime.engine.sync_all()

    assert report.run.errors == 0
    assert sandbox.token_requests == 2
    assert await status_of(runtime, "A") == "sold"


async def test_a_cached_oauth_token_is_reused_between_cycles(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    sandbox.put("A", "Active")
    await add_oauth_connection(runtime, url)
    await track(runtime, "mls-1", ["A"])
    for _ in range(3):
        await runtime.engine.sync_all()
    assert sandbox.token_requests == 1


async def test_refused_client_credentials_mark_the_connection_needs_reauth(
    runtime: Runtime, mls: Mls
) -> None:
    """The connection gets no further calls until its credentials are updated."""
    sandbox, url = mls
    sandbox.put("A", "Active")
    sandbox.clients["client-1"] = "rotated-by-the-mls"
    await add_oauth_connection(runtime, url)
    await track(runtime, "mls-1", ["A"])

    report = await runtime.engine.sync_all()

    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.state == "needs_reauth"
    assert "client credentials" in (row.last_error or "")
    assert report.run.outcome == "failed"
    calls = sandbox.token_requests + sum(sandbox.requests.values())
    await runtime.engine.sync_all()
    assert sandbox.token_requests + sum(sandbox.requests.values()) == calls


async def test_a_static_token_answered_401_twice_needs_reauth(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    sandbox.put("A", "Active")
    sandbox.put("B", "Active")
    await add_connection(runtime, url, secret="a-token-the-mls-never-issued", batch_size=1)
    await track(runtime, "mls-1", ["A", "B"])

    report = await runtime.engine.sync_all()

    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.state == "needs_reauth"
    assert "401 twice" in report.errors[0].message
    history = await runs.errors_of(runtime.db, report.run.id)
    assert [e.scope for e in history] == ["connection"]


async def test_one_connection_failing_does_not_stop_another(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    sandbox.put("A", "Closed")
    await add_connection(runtime, url, "good")
    await add_connection(runtime, url, "bad", secret="wrong-token")
    await track(runtime, "good", ["A"])
    await track(runtime, "bad", ["A"], prefix="other-")

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "A") == "sold"
    assert report.run.outcome == "partial"
    assert [e.connection_id for e in report.errors] == ["bad"]


async def test_an_oauth_token_is_refreshed_before_it_expires(runtime: Runtime, mls: Mls) -> None:
    """No request ever goes out with a token the server already considers expired."""
    sandbox, url = mls
    sandbox.token_lifetime = 1.0
    sandbox.put("A", "Active")
    await add_oauth_connection(runtime, url)
    await track(runtime, "mls-1", ["A"])
    await runtime.engine.sync_all()
    await anyio.sleep(1.0)

    report = await runtime.engine.sync_all()

    assert report.run.errors == 0
    assert (sandbox.token_requests, sandbox.unauthorized) == (2, 0)


async def test_a_server_that_cannot_be_reached_is_retried_then_recorded(
    runtime: Runtime, mls: Mls
) -> None:
    """One batch's attempts, then the connection stops for the cycle and says why."""
    dead = closed_port_url()
    await add_connection(runtime, dead)
    await track(runtime, "mls-1", ["A"])

    report = await runtime.engine.sync_all()

    assert report.run.mls_requests == runtime.settings.mls.max_attempts
    [error] = report.errors
    assert error.scope == "connection" and "connection refused" in error.message
    assert await status_of(runtime, "A") is None
