"""The cycle's entry points, selective sync, and one sync per connection at a time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from daemon.composition import Runtime, open_runtime
from daemon.errors import NotFound
from daemon.sandbox.faults import Fault
from daemon.sandbox.mls_server import SandboxMls
from daemon.store import connections, leases, listings, runs
from daemon.sync.engine import SyncRefused
from daemon.timestamps import iso, utcnow
from tests.helpers import Mls, add_connection, make_settings, status_of, track

pytestmark = pytest.mark.both_databases


async def _two_connections(rt: Runtime, sandbox: SandboxMls, url: str) -> None:
    sandbox.put("A", "Closed")
    sandbox.put("B", "Closed")
    await add_connection(rt, url, "one")
    await add_connection(rt, url, "two")
    await track(rt, "one", ["A"])
    await track(rt, "two", ["B"])


async def test_a_paused_connection_is_skipped_until_resumed(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    await _two_connections(runtime, sandbox, url)
    await connections.set_state(runtime.db, "two", "paused", None, iso(utcnow()))

    report = await runtime.engine.sync_all()

    assert report.run.connections == 1
    assert (await status_of(runtime, "A"), await status_of(runtime, "B")) == ("sold", None)
    with pytest.raises(SyncRefused, match="paused"):
        await runtime.engine.sync_connection("two")
    await connections.set_state(runtime.db, "two", "active", None, iso(utcnow()))
    await runtime.engine.sync_all()
    assert await status_of(runtime, "B") == "sold"


async def test_an_excluded_listing_is_left_alone(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    sandbox.put("A", "Closed")
    sandbox.put("X", "Closed")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["A", "X"], status="active")
    await listings.set_excluded(runtime.db, "L-X", True, iso(utcnow()))

    report = await runtime.engine.sync_all()

    assert report.run.listings_checked == 1
    assert (await status_of(runtime, "A"), await status_of(runtime, "X")) == ("sold", "active")
    with pytest.raises(SyncRefused, match="excluded"):
        await runtime.engine.sync_listing("L-X")


async def test_sync_listing_checks_just_that_listing_and_reports_it(
    runtime: Runtime, mls: Mls
) -> None:
    """The brief's manual sync of one listing."""
    sandbox, url = mls
    await _two_connections(runtime, sandbox, url)

    report, listing = await runtime.engine.sync_listing("L-B")

    assert (listing.id, listing.status, listing.mls_standard_status) == ("L-B", "sold", "Closed")
    assert (report.run.scope, report.run.listings_checked) == ("listing:L-B", 1)
    assert await status_of(runtime, "A") is None
    assert sandbox.filters == ["ListingKey eq 'B'"]


async def test_sync_connection_syncs_only_that_connection(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    await _two_connections(runtime, sandbox, url)

    report = await runtime.engine.sync_connection("one")

    assert report.run.scope == "connection:one"
    assert (await status_of(runtime, "A"), await status_of(runtime, "B")) == ("sold", None)


async def test_unknown_ids_are_refused_with_a_clear_message(runtime: Runtime) -> None:
    with pytest.raises(NotFound, match="no MLS connection has this id"):
        await runtime.engine.sync_connection("nope")
    with pytest.raises(NotFound, match="no listing has this id"):
        await runtime.engine.sync_listing("nope")


async def test_a_connection_leased_by_another_process_is_skipped_not_synced_twice(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    await _two_connections(runtime, sandbox, url)
    now = utcnow()
    other = leases.LeaseRequest(
        "one", "other-host:4242:abcd", iso(now), iso(now + timedelta(minutes=5))
    )
    taken = await leases.acquire(runtime.db, other)
    assert taken

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "A") is None
    assert await status_of(runtime, "B") == "sold"
    [warning] = report.errors
    assert warning.severity == "warning" and "other-host:4242" in warning.message
    assert sandbox.filters == ["ListingKey eq 'B'"]  # only connection "two" was asked


async def test_an_expired_lease_of_a_crashed_holder_is_taken_over(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    await _two_connections(runtime, sandbox, url)
    past = utcnow() - timedelta(minutes=30)
    await leases.acquire(
        runtime.db, leases.LeaseRequest("one", "dead-host:1:abcd", iso(past), iso(past))
    )

    await runtime.engine.sync_all()

    assert await status_of(runtime, "A") == "sold"
    assert await leases.holder_of(runtime.db, "one") is None  # released after the sync


async def test_two_cycles_at_once_never_sync_the_same_connection_together(
    runtime: Runtime, mls: Mls
) -> None:
    """Two overlapping sync_all calls (as from a timer and a signal): one of them syncs the
    connection, the other skips it with a warning. Each change is applied exactly once."""
    sandbox, url = mls
    sandbox.put("A", "Closed")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["A"], status="active")
    sandbox.faults.add(Fault("slow", seconds=0.5))
    reports = []

    async def cycle() -> None:
        reports.append(await runtime.engine.sync_all())

    async with anyio.create_task_group() as tg:
        tg.start_soon(cycle)
        tg.start_soon(cycle)

    checked = sorted(r.run.listings_checked for r in reports)
    assert checked == [0, 1]
    assert len(await listings.history(runtime.db, "L-A")) == 1


async def test_a_run_left_running_by_a_dead_process_is_marked_interrupted(
    runtime: Runtime, mls: Mls
) -> None:
    hostname = runtime.engine.hostname
    orphan = await runs.start(runtime.db, "schedule", "all", f"{hostname}:999999999", iso(utcnow()))

    await runtime.engine.sync_all()

    row = await runs.get(runtime.db, orphan)
    assert row is not None and row.outcome == "interrupted"


async def test_a_lease_left_by_a_dead_process_on_this_host_is_taken_over_at_once(
    runtime: Runtime, mls: Mls
) -> None:
    """A sync killed mid-run (SIGKILL, a closed pipe) must not block the next one for the
    whole lease time."""
    sandbox, url = mls
    await _two_connections(runtime, sandbox, url)
    now = utcnow()
    dead = f"{runtime.engine.hostname}:999999999:abcd"
    held = leases.LeaseRequest("one", dead, iso(now), iso(now + timedelta(minutes=10)))
    await leases.acquire(runtime.db, held)

    report = await runtime.engine.sync_all()

    assert report.errors == []
    assert await status_of(runtime, "A") == "sold"


@pytest.mark.slow
async def test_a_sync_longer_than_a_third_of_its_lease_keeps_renewing_it(
    tmp_path: Path, secret_key: str, mls: Mls
) -> None:
    """Leases are renewed for the whole run by one task, a third of the way to expiry (30 s
    lease: every 10 s); a sync of 13 batches at 1 request/s outlasts that."""
    sandbox, url = mls
    keys = [f"K{i}" for i in range(13)]
    for key in keys:
        sandbox.put(key, "Active")
    settings = make_settings(tmp_path, MLS_SYNC_SYNC__LEASE_SECONDS="30")
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        await add_connection(rt, url, batch_size=1, rate_per_second=1.0)
        await track(rt, "mls-1", keys)
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.engine.sync_all)
            await anyio.sleep(1)
            first = await leases.holder_of(rt.db, "mls-1")
            await anyio.sleep(10)
            later = await leases.holder_of(rt.db, "mls-1")
        after = await leases.holder_of(rt.db, "mls-1")

    assert first is not None and later is not None
    assert later[0] == first[0] and later[1] > first[1]  # same holder, later expiry
    assert after is None  # released when the sync ended
