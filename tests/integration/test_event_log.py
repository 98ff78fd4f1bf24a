"""The event log holds one event for each change that committed, and none for one that did
not: refusals, retries of a failure already reported, and states that did not change write
nothing. Old events are pruned, and a reader behind the pruning is told, not skipped ahead."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest

from daemon.composition import Runtime
from daemon.errors import Conflict, Gone
from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.ops.queries import EventQuery
from daemon.ops.webhooks import EndpointSpec
from daemon.sandbox.faults import Fault
from daemon.service.event_watch import EventWatch
from daemon.store import events, mail, runs, webhooks
from daemon.store.database import Database
from daemon.store.sqlite import SqliteDatabase
from daemon.timestamps import iso, utcnow
from tests.helpers import Live, Mls, add_connection, sqlite_reader, track
from tests.integration.test_unpublish import _listing_with_posts, _sell

pytestmark = pytest.mark.both_databases


async def _types(rt: Runtime, **where: str) -> Counter[str]:
    read = await events.after(rt.db, 0, None, None, 10_000)
    return Counter(e.type for e in read.rows if all(getattr(e, k) == v for k, v in where.items()))


def _at(when: datetime) -> Callable[[], datetime]:
    return lambda: when


def _ops(rt: Runtime) -> Operations:
    return Operations.on(OpsContext(rt.db, rt.box, rt.engine, actor="cli:tester"))


async def test_a_delete_that_keeps_failing_is_reported_once_then_once_when_it_comes_down(
    live: Live,
) -> None:
    await _listing_with_posts(live)
    live.platforms.inject("facebook", Fault("status", status=500, times=100))
    await _sell(live)
    later = utcnow()
    for hours in (1, 2):  # two more failed tries
        later += timedelta(hours=hours)
        live.rt.engine.unpublisher.clock = _at(later)
        await live.rt.engine.sync_all()
    live.platforms.faults["facebook"].clear()
    live.rt.engine.unpublisher.clock = _at(later + timedelta(days=1))
    await live.rt.engine.sync_all()

    about_the_post = await _types(live.rt, post_id="facebook-K1")
    assert about_the_post == {"post.retry_scheduled": 1, "post.unpublished": 1}


async def test_an_account_whose_token_is_refused_is_reported_once(live: Live) -> None:
    await _listing_with_posts(live, "K1")
    await _listing_with_posts(live, "K2")
    live.platforms.tokens["fb-page-token"] = "revoked"
    live.mls.set_status("K1", "Closed")
    await live.rt.engine.sync_all()
    live.mls.set_status("K2", "Closed")
    await live.rt.engine.sync_all()

    assert (await _types(live.rt, account_id="fb-page"))["account.needs_reauth"] == 1


async def test_a_connection_whose_token_is_refused_is_reported_once(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    sandbox.put("A", "Active")
    await add_connection(runtime, url, "locked-out", secret="a-token-the-mls-refuses")
    await track(runtime, "locked-out", ["A"])
    for _ in range(2):
        await runtime.engine.sync_all()

    reported = await _types(runtime, connection_id="locked-out")
    assert reported == {"connection.needs_reauth": 1}
    read = await events.after(runtime.db, 0, ["connection.needs_reauth"], None, 10)
    assert "credentials" in read.rows[0].data and "a-token-the-mls-refuses" not in read.rows[0].data


async def test_a_removal_refused_reports_nothing_and_one_that_commits_reports_each_listing(
    live: Live,
) -> None:
    await _listing_with_posts(live, "K1")
    await _listing_with_posts(live, "K2")
    ops = _ops(live.rt)
    before = await _types(live.rt)

    with pytest.raises(Conflict):
        await ops.listings.remove("L-K1", force=False)
    assert await _types(live.rt) == before
    await ops.listings.remove("L-K1", force=True)
    await ops.connections.remove("mls-1", with_listings=True, force=True)

    removed = await events.after(live.rt.db, 0, ["listing.removed"], None, 10)
    assert [(e.listing_id, e.type) for e in removed.rows] == [
        ("L-K1", "listing.removed"),
        ("L-K2", "listing.removed"),
    ]
    assert all(json.loads(e.data)["by"] == "cli:tester" for e in removed.rows)


async def test_pruned_events_are_gone_and_a_reader_behind_them_is_told_where_to_start(
    live: Live,
) -> None:
    await _listing_with_posts(live, "K1")
    ops = _ops(live.rt)
    first = await ops.events.feed(EventQuery())
    last = first["next_after"]
    assert last > 0

    assert await events.prune(live.rt.db, iso(utcnow() - timedelta(days=1))) == 0
    # All but the newest: it stays, and says where the log stands (docs/events.md).
    assert await events.prune(live.rt.db, iso(utcnow() + timedelta(seconds=1)), batch=2) == (
        last - 1
    )
    with pytest.raises(Gone, match=f"after={last - 1}"):
        await ops.events.feed(EventQuery(after=0))
    assert [e["id"] for e in (await ops.events.feed(EventQuery(after=last - 1)))["items"]] == [last]
    assert (await ops.events.feed(EventQuery(after=last)))["items"] == []

    await _sell(live)  # new events carry on from the last id ever given
    again = await ops.events.feed(EventQuery(after=last))
    assert again["items"] and again["items"][0]["id"] == last + 1
    with pytest.raises(Gone, match=f"oldest kept is {last}"):
        await ops.events.feed(EventQuery(after=last - 2))


async def test_events_a_webhook_endpoint_has_not_delivered_are_kept_past_their_retention(
    live: Live,
) -> None:
    """Retention frees disk, never an event still owed: an endpoint down (or disabled) for
    longer than retention_days gets every event once it is back."""
    await _listing_with_posts(live, "K1")
    ops = _ops(live.rt)
    made, _ = await ops.webhooks.create(EndpointSpec("https://hooks.example.com/in", after_event=0))
    owed = (await ops.events.feed(EventQuery()))["next_after"]
    await ops.webhooks.disable(made["id"])
    future = iso(utcnow() + timedelta(days=1))

    assert await events.prune(live.rt.db, future) == 0
    assert len((await ops.events.feed(EventQuery(limit=1000)))["items"]) == owed
    assert await events.held_for(live.rt.db, future) == [made["id"]]  # what the log names
    await ops.webhooks.remove(made["id"])
    assert await events.prune(live.rt.db, future) == owed - 1  # the newest stays
    assert await events.held_for(live.rt.db, future) == []


async def test_events_the_mail_worker_has_not_read_are_kept_while_mail_is_on(live: Live) -> None:
    await _listing_with_posts(live, "K1")
    await mail.start_cursor(live.rt.db)  # mail turned on: its worker starts at the end
    read = await mail_cursor(live.rt.db)
    await _listing_with_posts(live, "K2")  # news the worker has not read yet
    future = iso(utcnow() + timedelta(days=1))

    assert read > 0
    assert await events.prune(live.rt.db, future, mail_on=True) == read
    assert await events.prune(live.rt.db, future, mail_on=False) > 0


async def mail_cursor(db: Database) -> int:
    async with db.reading() as conn:
        return await mail.cursor(conn)


async def test_a_run_ended_twice_by_two_sweeps_is_reported_finished_once(runtime: Runtime) -> None:
    """Two processes starting together may both find a dead process's run and end it."""
    orphan = await runs.start(runtime.db, "schedule", "all", "gone-host:1", iso(utcnow()))
    for _ in range(2):
        await runs.interrupt(runtime.db, [orphan], iso(utcnow()))
    assert (await _types(runtime))["run.finished"] == 1


async def test_pruning_takes_only_the_oldest_ids_even_when_times_disagree(runtime: Runtime) -> None:
    """An event's time is when its change was written, and a later id may carry an earlier
    time (a run's end, written with when it started): pruning by time alone would leave a
    hole that a reader could skip without being told."""
    older, newer = iso(utcnow() - timedelta(days=40)), iso(utcnow())
    async with runtime.db.transaction() as conn:
        for at in (newer, older, newer):
            await conn.execute(
                "INSERT INTO events (type, data, created_at) VALUES ('run.finished', '{}', ?)",
                (at,),
            )
    await events.prune(runtime.db, iso(utcnow() - timedelta(days=30)))
    kept = [e.id for e in (await events.after(runtime.db, 0, None, None, 10)).rows]
    assert kept == [1, 2, 3]


@pytest.mark.sqlite_only  # a file of its own, tables not there yet
async def test_the_event_watch_outlives_a_read_that_fails(tmp_path: Path) -> None:
    """A failed read (here: the tables not there yet) is retried, not the end of the daemon."""
    path = tmp_path / "later.db"
    sqlite3.connect(path).close()
    async with sqlite_reader(path) as reader, anyio.create_task_group() as tg:
        watch = EventWatch(reader, interval=0.01)
        tg.start_soon(watch.run)
        await anyio.sleep(0.1)  # reads fail meanwhile
        db = await SqliteDatabase.open(path)
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO events (type, data, created_at) VALUES ('run.finished', '{}', ?)",
                    (iso(utcnow()),),
                )
            with anyio.fail_after(5):
                assert await watch.wait_after(0, 5)
        finally:
            await db.close()
        tg.cancel_scope.cancel()


async def test_retention_also_frees_delivery_records_and_mail_done_with_but_not_what_waits(
    live: Live,
) -> None:
    """What nothing needs any more goes with the events; what is still owed stays, however
    old."""
    await _listing_with_posts(live, "K1")
    old, new = iso(utcnow() - timedelta(days=40)), iso(utcnow())
    async with live.rt.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO webhook_endpoints (url, event_types, secret_encrypted, cursor, "
            "created_at, updated_at) VALUES ('https://hooks.example.com/in', '[]', 'x', 0, ?, ?)",
            (old, old),
        )
        for event_id, state, at in ((1, "delivered", old), (2, "failed", old), (3, "pending", old)):
            await conn.execute(
                "INSERT INTO webhook_deliveries (endpoint_id, event_id, state, created_at, "
                "updated_at) VALUES (1, ?, ?, ?, ?)",
                (event_id, state, at, at),
            )
        for status, at in (("sent", old), ("failed", old), ("pending", old), ("sent", new)):
            await conn.execute(
                "INSERT INTO mail_outbox (user_id, recipient, kind, status, facts, event_ids, "
                "next_attempt_at, created_at, sent_at) VALUES ('default', 'a@example.test', "
                "'listing.sold', ?, '{}', '[]', ?, ?, ?)",
                (status, at, at, at if status == "sent" else None),
            )
    before = iso(utcnow() - timedelta(days=30))

    assert await webhooks.prune(live.rt.db, before) == 2
    assert await mail.prune(live.rt.db, before) == 2
    left = await live.rt.db.fetch_all("SELECT state FROM webhook_deliveries")
    assert [r[0] for r in left] == ["pending"]
    kept = await live.rt.db.fetch_all("SELECT status, sent_at FROM mail_outbox ORDER BY id")
    assert [(r[0], r[1] == new) for r in kept] == [("pending", False), ("sent", True)]
