"""Several daemons on one database run one cycle per slot for each connection
(daemon/sync/cycle_slots.py): two runtimes on the same database stand for two daemons, each
with its own engine, leases and HTTP clients, on a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from daemon.composition import Runtime, open_runtime
from daemon.sandbox.faults import Fault
from daemon.sandbox.platforms_server import platform_env
from daemon.store import cycle_health, leases, runs
from daemon.sync.cycle_slots import slot_bounds
from daemon.sync.process_lease import Witness
from daemon.sync.unpublish_lease import LEASE as UNPUBLISH_LEASE
from daemon.timestamps import iso, parse_iso
from tests.helpers import (
    Mls,
    Platforms,
    add_account,
    add_connection,
    add_post,
    make_settings,
    status_of,
    track,
)

pytestmark = pytest.mark.both_databases

SLOT_START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)  # a multiple of 900 s since the epoch


@pytest.fixture
async def other(runtime: Runtime, secret_key: str) -> AsyncIterator[Runtime]:
    """A second daemon's runtime on the same database."""
    async with open_runtime(runtime.settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        yield rt


def _at(*runtimes: Runtime, moment: datetime) -> None:
    """The daemons' clock (the engine's and the unpublish pass's, as in the daemon)."""
    for rt in runtimes:
        rt.engine.clock = lambda: moment
        rt.engine.unpublisher.clock = lambda: moment


async def _two_connections(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    sandbox.put("A", "Active")
    sandbox.put("B", "Active")
    await add_connection(runtime, url, "one")
    await add_connection(runtime, url, "two")
    await track(runtime, "one", ["A"])
    await track(runtime, "two", ["B"])


async def test_a_clock_cycle_leaves_the_connections_another_daemon_synced_in_this_slot(
    runtime: Runtime, other: Runtime, mls: Mls
) -> None:
    await _two_connections(runtime, mls)
    _at(runtime, other, moment=SLOT_START + timedelta(seconds=5))
    first = await runtime.engine.sync_all("schedule")
    assert first.run.connections == 2 and first.run.listings_checked == 2

    _at(runtime, other, moment=SLOT_START + timedelta(seconds=20))
    assert not await other.engine.anything_due("schedule")  # its cycle is not even started
    late = await other.engine.sync_all("schedule")
    assert late.run.connections == 0 and late.run.mls_requests == 0

    asked = await other.engine.sync_all("signal")  # a person asked: every connection
    assert asked.run.listings_checked == 2


async def test_the_next_slot_is_synced_again_by_whichever_daemon_comes_first(
    runtime: Runtime, other: Runtime, mls: Mls
) -> None:
    await _two_connections(runtime, mls)
    _at(runtime, other, moment=SLOT_START + timedelta(seconds=5))
    await runtime.engine.sync_all("schedule")
    mls[0].put("A", "Closed")

    _at(runtime, other, moment=SLOT_START + timedelta(seconds=900 + 3))
    assert await other.engine.anything_due("schedule")
    report = await other.engine.sync_all("schedule")
    assert report.run.listings_checked == 2
    assert await status_of(runtime, "A") == "sold"

    _at(runtime, other, moment=SLOT_START + timedelta(seconds=900 + 9))
    assert not await runtime.engine.anything_due("schedule")


async def test_a_connection_left_unsynced_in_the_slot_is_taken_by_the_next_catch_up(
    runtime: Runtime, other: Runtime, mls: Mls
) -> None:
    """A daemon died in its cycle before it synced connection `two`: another daemon's
    catch-up syncs that one, and only that one."""
    await _two_connections(runtime, mls)
    _at(runtime, other, moment=SLOT_START + timedelta(seconds=5))
    await runtime.engine.sync_all("schedule")
    await runtime.db.write_one(  # as if its daemon had died before syncing it
        "UPDATE mls_connections SET last_synced_at = NULL, last_sync_started_at = NULL"
        " WHERE id = 'two'",
        {},
    )

    _at(runtime, other, moment=SLOT_START + timedelta(seconds=20))
    # Not yet: the slot's own cycles may still be waiting out their jitter (30 s).
    assert not await other.engine.anything_due("catch_up")
    _at(runtime, other, moment=SLOT_START + timedelta(seconds=95))
    assert await other.engine.anything_due("catch_up")
    caught = await other.engine.sync_all("catch_up")
    assert (caught.run.connections, caught.run.listings_checked) == (1, 1)
    assert not await other.engine.anything_due("catch_up")


async def test_a_lease_for_a_slot_is_refused_once_the_connection_was_synced_in_it(
    runtime: Runtime, mls: Mls
) -> None:
    """Another daemon read the connections before this one synced them, and reaches one
    after: its lease is refused, in the same statement that would take it."""
    await _two_connections(runtime, mls)
    _at(runtime, moment=SLOT_START + timedelta(seconds=5))
    await runtime.engine.sync_all("schedule")
    now = SLOT_START + timedelta(seconds=10)
    later = iso(now + timedelta(seconds=60))

    slot = slot_bounds(SLOT_START, runtime.settings.cycle_seconds())
    for_the_slot = leases.LeaseRequest("one", "elsewhere:1", iso(now), later, slot)
    assert not await leases.acquire(runtime.db, for_the_slot)
    asked_for = leases.LeaseRequest("one", "elsewhere:1", iso(now), later)
    assert await leases.acquire(runtime.db, asked_for)  # a cycle someone asked for takes it


async def test_posts_a_dead_daemons_unpublish_pass_left_are_taken_down_by_the_next_catch_up(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms
) -> None:
    """A daemon on another VM synced a sale and died in its unpublish pass: every connection
    was synced in the slot, so only the pass is left. While its lease runs, nothing starts,
    even once its process lease ran out (a live pass, paused, would send DELETEs until its
    own lease's time); once it expires, the next catch-up of another daemon takes the post
    down."""
    state, platforms_url = platforms
    settings = make_settings(tmp_path, **platform_env(platforms_url))
    env = {"MLS_SYNC_SECRET_KEY": secret_key}
    async with open_runtime(settings, env) as first, open_runtime(settings, env) as second:
        await _two_connections(first, mls)
        await add_account(first, "acct-fb", "facebook", "fb-token")
        state.publish("facebook", "1000_1", "fb-token")
        await add_post(first, "fb-A", "L-A", "acct-fb", "1000_1")
        _at(first, second, moment=SLOT_START + timedelta(seconds=5))
        await first.engine.sync_all("schedule")
        # What the daemon that died left: A sold, its pass's lease held by it until +60 s.
        mls[0].put("A", "Closed")
        await first.db.write_one("UPDATE listings SET status = 'sold' WHERE id = 'L-A'", {})
        dead_until = iso(SLOT_START + timedelta(seconds=60))
        await first.db.write_one(
            "INSERT INTO sync_leases (connection_id, holder, expires_at) VALUES (:id, :h, :t)",
            {"id": UNPUBLISH_LEASE, "h": "another-vm:4242:0a1b2c3d", "t": dead_until},
        )
        ran_out = iso(SLOT_START + timedelta(seconds=20))
        await leases.put_own(first.db, "~process:another-vm:4242", "another-vm:4242", ran_out)
        second.engine.witness = lambda: Witness(SLOT_START, 15)  # it saw that process die

        _at(first, second, moment=SLOT_START + timedelta(seconds=50))
        assert not await second.engine.anything_due("catch_up")  # its lease still runs
        early = await second.engine.sync_all("signal")  # a cycle someone asked for: no pass
        assert early.run.posts_unpublished == 0 and state.exists("1000_1")
        _at(first, second, moment=SLOT_START + timedelta(seconds=95))
        assert await second.engine.anything_due("catch_up")
        caught = await second.engine.sync_all("catch_up")
        assert (caught.run.connections, caught.run.posts_unpublished) == (0, 1)
        assert not state.exists("1000_1")
        assert not await second.engine.anything_due("catch_up")


async def test_a_sale_synced_while_another_daemons_pass_runs_is_taken_down_by_the_next_catch_up(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms
) -> None:
    """A daemon on another VM is in its unpublish pass (it holds the lease) when this one's
    cycle applies a sale: this pass is refused the lease, and that pass read its posts before
    the sale. Once that pass ends, the next catch-up takes the post down, not the next slot
    (a quarter of an hour later)."""
    state, platforms_url = platforms
    settings = make_settings(tmp_path, **platform_env(platforms_url))
    env = {"MLS_SYNC_SECRET_KEY": secret_key}
    async with open_runtime(settings, env) as first:
        await _two_connections(first, mls)
        await add_account(first, "acct-fb", "facebook", "fb-token")
        state.publish("facebook", "1000_1", "fb-token")
        await add_post(first, "fb-A", "L-A", "acct-fb", "1000_1")
        _at(first, moment=SLOT_START + timedelta(seconds=5))
        await first.engine.sync_all("manual")
        live_pass = "another-vm:4242:0a1b2c3d"
        await first.db.write_one(
            "INSERT INTO sync_leases (connection_id, holder, expires_at) VALUES (:id, :h, :t)",
            {"id": UNPUBLISH_LEASE, "h": live_pass, "t": iso(SLOT_START + HOUR)},
        )
        await leases.put_own(
            first.db, "~process:another-vm:4242", "another-vm:4242", iso(SLOT_START + HOUR)
        )
        mls[0].set_status("A", "Closed")
        _at(first, moment=SLOT_START + timedelta(seconds=910))
        synced = await first.engine.sync_all("schedule")
        assert synced.run.status_changes == 1 and state.exists("1000_1")
        await leases.release(first.db, UNPUBLISH_LEASE, live_pass)  # that pass ends

        _at(first, moment=SLOT_START + timedelta(seconds=1000))
        assert await first.engine.anything_due("catch_up")
        # A catch-up that fails before its pass (the database away, say) is no pass: the
        # next look finds the post due all the same.
        _at(first, moment=SLOT_START + timedelta(seconds=1060))
        assert await first.engine.anything_due("catch_up")
        caught = await first.engine.sync_all("catch_up")
        assert caught.run.posts_unpublished == 1 and not state.exists("1000_1")
        assert not await first.engine.anything_due("catch_up")


async def test_a_post_a_pass_cannot_take_down_makes_no_catch_up_every_minute(
    runtime: Runtime, mls: Mls, platforms: Platforms
) -> None:
    """A sold listing's post whose account's token no configured key decrypts: the cycle's
    pass records the error and leaves the post due. The looks for work left find nothing
    that pass has not read, and start no run (a run a minute would flood the history and
    the alerts)."""
    await _two_connections(runtime, mls)
    await add_account(runtime, "acct-fb", "facebook", "fb-token")
    await add_post(runtime, "fb-A", "L-A", "acct-fb", "1000_1")
    other_key = Fernet(Fernet.generate_key())
    unreadable = other_key.encrypt(b"fb-token").decode("ascii")
    await runtime.db.write_one(
        "UPDATE platform_accounts SET access_token_encrypted = :t WHERE id = 'acct-fb'",
        {"t": unreadable},
    )
    mls[0].set_status("A", "Closed")
    _at(runtime, moment=SLOT_START + timedelta(seconds=5))
    cycle = await runtime.engine.sync_all("schedule")
    assert cycle.run.status_changes >= 1 and cycle.run.errors >= 1  # sold; the token failed

    for later in (95, 155, 215, 275):
        _at(runtime, moment=SLOT_START + timedelta(seconds=later))
        assert not await runtime.engine.anything_due("catch_up")


async def test_another_daemons_empty_cycle_does_not_hide_a_connection_that_fails(
    runtime: Runtime, other: Runtime, mls: Mls
) -> None:
    """One daemon's clock cycle syncs the connection and its MLS fails; the other daemon's
    cycle of the same slot finds it synced, syncs nothing and ends `ok`. The alerting gauges
    still say that the MLS was last read a slot ago, and that the connection fails."""
    sandbox, url = mls
    sandbox.put("A", "Active")
    await add_connection(runtime, url, "one")
    await track(runtime, "one", ["A"])
    _at(runtime, other, moment=SLOT_START + timedelta(seconds=5))
    read = (await runtime.engine.sync_all("schedule")).run
    assert read.outcome == "ok"

    sandbox.faults.add(Fault("status", status=503, times=1000))
    _at(runtime, other, moment=SLOT_START + timedelta(seconds=905))
    failed = (await runtime.engine.sync_all("schedule")).run
    _at(runtime, other, moment=SLOT_START + timedelta(seconds=906))
    empty = (await other.engine.sync_all("schedule")).run

    assert failed.outcome != "ok" and (empty.outcome, empty.connections) == ("ok", 0)
    health = await cycle_health.latest(other.db)
    assert health.last_read_the_mls_at == parse_iso(str(read.finished_at)).timestamp()
    assert health.connection_failing == {"one": True}


async def test_a_run_a_daemon_on_another_vm_left_running_is_ended_once_it_holds_no_lease(
    runtime: Runtime, mls: Mls
) -> None:
    """Two daemons on other VMs each left a run `running`: one died (no lease left), one
    lives (it keeps its process lease). The next run here ends the dead one's as
    `interrupted`, and leaves the live one's."""
    await _two_connections(runtime, mls)
    began = iso(SLOT_START)
    dead = await runs.start(runtime.db, "schedule", "all", "vm-dead:4242", began)
    live = await runs.start(runtime.db, "schedule", "all", "vm-live:4343", began)
    until = iso(SLOT_START + timedelta(seconds=700))
    await leases.put_own(runtime.db, "~process:vm-live:4343", "vm-live:4343", until)

    _at(runtime, moment=SLOT_START + timedelta(seconds=650))  # a lease time (600 s) later
    await runtime.engine.sync_all("manual")

    ended = {r.id: r.outcome for r in await runs.recent(runtime.db, 10)}
    assert (ended[dead], ended[live]) == ("interrupted", "running")


async def test_a_read_between_cycles_counts_as_reading_the_mls_when_the_clock_finds_nothing(
    runtime: Runtime, mls: Mls
) -> None:
    """A change-log poll (a sync of one connection) early in the slot read the MLS; the
    clock's cycle of that slot then has nothing to sync. The MLS was read: the alert that
    says no cycle read it must not count from before."""
    await _two_connections(runtime, mls)
    _at(runtime, moment=SLOT_START + timedelta(seconds=2))
    await runtime.engine.sync_connection("one")
    await runtime.engine.sync_connection("two")
    _at(runtime, moment=SLOT_START + timedelta(seconds=5))
    empty = (await runtime.engine.sync_all("schedule")).run

    assert (empty.outcome, empty.connections) == ("ok", 0)
    health = await cycle_health.latest(runtime.db)
    assert health.last_read_the_mls_at == (SLOT_START + timedelta(seconds=2)).timestamp()


async def test_what_a_dead_daemon_on_another_vm_held_is_taken_once_its_process_lease_runs_out(
    runtime: Runtime, mls: Mls
) -> None:
    """A daemon on another VM died in its clock cycle, holding connection `one` (its lease
    runs for 10 minutes more) and its run. Its own process lease, far shorter, ran out: the
    next catch-up here syncs `one` and ends its run at once. Connection `two`, held by a daemon
    whose process lease is renewed, is left to it."""
    await _two_connections(runtime, mls)
    began = iso(SLOT_START + timedelta(seconds=3))
    dead = await runs.start(runtime.db, "schedule", "all", "vm-dead:4242", began)
    live = await runs.start(runtime.db, "schedule", "all", "vm-live:4343", began)
    held_until = iso(SLOT_START + timedelta(seconds=600))
    for connection_id, holder in (("one", "vm-dead:4242"), ("two", "vm-live:4343")):
        held = leases.LeaseRequest(connection_id, holder, began, held_until)
        assert await leases.acquire(runtime.db, held)
    ran_out, renewed = iso(SLOT_START + timedelta(seconds=20)), held_until
    await leases.put_own(runtime.db, "~process:vm-dead:4242", "vm-dead:4242", ran_out)
    await leases.put_own(runtime.db, "~process:vm-live:4343", "vm-live:4343", renewed)

    _at(runtime, moment=SLOT_START + timedelta(seconds=95))
    # Not by a daemon that did not see it renew (its own renewals broke meanwhile: back
    # from a database outage, say, after which every process lease ran out at once).
    assert not await runtime.engine.anything_due("catch_up")
    runtime.engine.witness = lambda: Witness(SLOT_START + timedelta(seconds=10), 15)
    assert not await runtime.engine.anything_due("catch_up")
    runtime.engine.witness = lambda: Witness(SLOT_START, 15)  # it renewed (at +5) since
    assert await runtime.engine.anything_due("catch_up")
    caught = (await runtime.engine.sync_all("catch_up")).run

    assert (caught.connections, caught.listings_checked) == (1, 1)
    assert await leases.holder_of(runtime.db, "two") == ("vm-live:4343", held_until)
    ended = {r.id: r.outcome for r in await runs.recent(runtime.db, 10)}
    assert (ended[dead], ended[live]) == ("interrupted", "running")
