"""Signed webhooks through the real parts: a real SQLite file, the delivery worker, a real
receiver on 127.0.0.1 that verifies every request with the `standardwebhooks` library. Time
beyond seconds is a clock the test moves, never a sleep."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from daemon.composition import Runtime, open_runtime
from daemon.enums import DeliveryState, EventType
from daemon.errors import Conflict
from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.ops.webhooks import EndpointSpec
from daemon.outbound.recording import MAX_UNRECORDED
from daemon.outbound.worker import READ_BATCH, URL_CHECKED_FOR, Deliveries
from daemon.sandbox.webhook_sink import Receiver, Reply, receiving
from daemon.specs import SpecError
from daemon.store import events
from daemon.store import webhooks as store
from daemon.store.database import Database
from daemon.timestamps import iso, parse_iso, utcnow
from tests.helpers import (
    Clock,
    Live,
    OtherWriter,
    add_sandbox_connection,
    everything_stored,
    make_settings,
    open_live,
    sqlite_reader,
    write_locked,
)

pytestmark = pytest.mark.both_databases


@pytest.fixture
async def rt(tmp_path: Path, secret_key: str) -> AsyncIterator[Runtime]:
    """The runtime with http:// loopback endpoints allowed, as in sandbox mode."""
    settings = make_settings(tmp_path, MLS_SYNC_WEBHOOKS__ALLOW_HTTP_LOOPBACK="true")
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as runtime:
        yield runtime


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as r:
        yield r


def ops_of(rt: Runtime, clock: Clock | None = None) -> Operations:
    ctx = OpsContext(rt.db, rt.box, webhooks=rt.settings.effective_webhooks())
    if clock is not None:
        ctx.clock = clock
    return Operations.on(ctx)


async def write_events(
    db: Database, count: int, kind: str = "listing.sold", user_id: str = "default"
) -> list[int]:
    """`count` events, as the sync's writers leave them (one row each, JSON data)."""
    ids = []
    async with db.transaction() as conn:
        for n in range(count):
            row = await conn.fetch_one(
                "INSERT INTO events (type, user_id, data, created_at) VALUES (?, ?, ?, ?) "
                "RETURNING id",
                (kind, user_id, json.dumps({"listing": {"id": f"L-{n}"}}), iso(utcnow())),
            )
            assert row is not None
            ids.append(int(row[0]))
    return ids


async def add_agent_2(rt: Runtime) -> None:
    """A second user, `agent-2`, beside the default one."""
    await rt.db.write_one(
        "INSERT INTO users (id, display_name, created_at, updated_at) VALUES "
        "('agent-2', 'Agent 2', :now, :now)",
        {"now": iso(utcnow())},
    )


async def add_endpoint(
    rt: Runtime, receiver: Receiver, path: str, clock: Clock | None = None, **fields: object
) -> tuple[int, str]:
    """An endpoint at `path` of the receiver; the receiver checks its requests' signatures."""
    made, secret = await ops_of(rt, clock).webhooks.create(
        EndpointSpec(f"{receiver.url}{path}", **fields)  # type: ignore[arg-type]
    )
    receiver.secrets[path] = [secret]
    return int(made["id"]), secret


async def wait_delivered(db: Database, endpoint_id: int, count: int) -> None:
    """Until `count` deliveries of the endpoint are recorded as delivered."""
    with anyio.fail_after(10):
        while True:
            found = await store.deliveries(db, endpoint_id, 2**62, 1000)
            if sum(d.state == DeliveryState.DELIVERED for d in found) >= count:
                return
            await anyio.sleep(0.02)


async def drive(worker: Deliveries, endpoint_id: int, clock: Clock, steps: int = 1) -> None:
    """Takes `steps` steps of the endpoint, moving the clock to each retry when one waits."""
    for _ in range(steps):
        wait = await worker.step(endpoint_id)
        if wait is None:
            return
        if wait > 0:
            clock.now += timedelta(seconds=wait)


async def test_events_arrive_in_order_with_valid_signatures(
    rt: Runtime, receiver: Receiver
) -> None:
    """Every event reaches the endpoint once, in event order, its body the event's JSON and
    its signature valid for the library a receiver uses."""
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
    ids = await write_events(rt.db, 30)
    async with (
        rt.db.reader() as reader,  # reads beside the writer, as in the daemon
        anyio.create_task_group() as tg,
    ):
        worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks(), reader=reader)
        tg.start_soon(worker.run)
        got = await receiver.wait_for("/hooks", 30)
        await wait_delivered(rt.db, endpoint_id, 30)
        tg.cancel_scope.cancel()
    assert [r.webhook_id for r in got] == [f"evt_{i}" for i in ids]
    assert receiver.unverified() == []
    first = got[0].event
    assert first == {
        "id": ids[0],
        "type": "listing.sold",
        "timestamp": first["timestamp"],
        "user_id": "default",
        "data": {"listing": {"id": "L-0"}},
    }
    states = {d.state for d in await store.deliveries(rt.db, endpoint_id, 2**62, 100)}
    assert states == {DeliveryState.DELIVERED}


async def test_an_endpoint_gets_only_its_types_and_its_user(
    rt: Runtime, receiver: Receiver
) -> None:
    """An endpoint for one user's sales gets those, in order, and nothing else; a user that
    does not exist is refused."""
    await add_agent_2(rt)
    with pytest.raises(SpecError, match="no user has this id"):
        await ops_of(rt).webhooks.create(EndpointSpec(f"{receiver.url}/x", user_id="nobody"))
    endpoint_id, _ = await add_endpoint(
        rt, receiver, "/hooks", event_types=["listing.sold"], user_id="agent-2"
    )
    await write_events(rt.db, 2, user_id="default")
    wanted = await write_events(rt.db, 2, user_id="agent-2")
    await write_events(rt.db, 2, kind="run.finished", user_id="agent-2")
    wanted += await write_events(rt.db, 1, user_id="agent-2")
    clock = Clock(utcnow())
    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks(), clock=clock)
    async with worker.opened():
        await drive(worker, endpoint_id, clock, steps=20)
    assert [r.event["id"] for r in receiver.at("/hooks")] == wanted
    assert receiver.at("/x") == []


async def test_an_endpoint_waits_quietly_when_only_other_users_events_come(
    rt: Runtime, receiver: Receiver
) -> None:
    """Events of other users move the endpoint's cursor on: its worker then waits for the
    next event instead of looking at the log again and again."""
    await add_agent_2(rt)
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks", user_id="agent-2")
    await write_events(rt.db, 1, user_id="agent-2")
    await write_events(rt.db, 3, user_id="default")
    woken = 0
    watch = events.polling_wake(rt.db)

    async def counted(after_id: int, seconds: float) -> bool:
        nonlocal woken
        woken += 1
        return await watch(after_id, seconds)

    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks(), wake=counted)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await receiver.wait_for("/hooks", 1)
        await anyio.sleep(1.5)
        tg.cancel_scope.cancel()
    endpoint = await store.get(rt.db, endpoint_id)
    assert endpoint is not None and endpoint.cursor == await events.last_id(rt.db)
    assert woken <= 3


async def test_events_an_endpoint_does_not_take_move_its_cursor_on_while_they_keep_coming(
    rt: Runtime, receiver: Receiver
) -> None:
    """During a cycle the log grows without a pause. An endpoint for one user's events,
    while other users' keep coming, has its cursor moved past them as they come, not only
    once the log stops growing: its lag (mls_sync_webhook_oldest_undelivered_seconds, read
    from the cursor) stays that of its own events."""
    await add_agent_2(rt)
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks", user_id="agent-2")
    await write_events(rt.db, 1, user_id="agent-2")
    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks())
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await receiver.wait_for("/hooks", 1)
        for _ in range(30):  # 3 s of other users' events, a few every 0.1 s
            [written] = await write_events(rt.db, 1, user_id="default")
            await anyio.sleep(0.1)
        endpoint = await store.get(rt.db, endpoint_id)
        tg.cancel_scope.cancel()
    assert endpoint is not None and endpoint.cursor >= written - 10


async def test_a_failed_delivery_is_tried_again_and_every_attempt_recorded(
    rt: Runtime, receiver: Receiver
) -> None:
    """A 500 is recorded (status, latency, error, the answer's start) and the same event is
    sent again, with the same webhook-id, until a 200."""
    clock = Clock(utcnow())
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
    await write_events(rt.db, 2)
    receiver.reply("/hooks", Reply(500, body="database down " + "x" * 1000), Reply(200))
    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks(), clock=clock)
    async with worker.opened():
        await drive(worker, endpoint_id, clock, steps=4)
    got = receiver.at("/hooks")
    assert [r.webhook_id for r in got][:2] == [got[0].webhook_id] * 2
    assert receiver.unverified() == []
    delivery = (await store.deliveries(rt.db, endpoint_id, 2**62, 100))[-1]
    assert delivery.state == DeliveryState.DELIVERED
    seen = await ops_of(rt).webhooks.attempts(delivery.id)
    assert [a["status_code"] for a in seen["items"]] == [500, 200]
    failed = seen["items"][0]
    assert failed["error"] == "answered 500"
    assert failed["response_excerpt"].startswith("database down")
    assert len(failed["response_excerpt"]) == 256
    assert failed["latency_ms"] >= 0


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(429, "120"), (503, "120"), (503, "<date in 120 s>")],
)
async def test_retry_after_of_a_429_or_503_sets_the_next_attempt(
    rt: Runtime, receiver: Receiver, status: int, retry_after: str
) -> None:
    """Retry-After, in seconds or as an HTTP date, is when the delivery is tried again."""
    clock = Clock(utcnow().replace(microsecond=0))
    if retry_after.startswith("<"):
        retry_after = format_datetime(clock.now + timedelta(seconds=120), usegmt=True)
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
    await write_events(rt.db, 1)
    receiver.reply("/hooks", Reply(status, {"Retry-After": retry_after}))
    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks(), clock=clock)
    async with worker.opened():
        await worker.step(endpoint_id)  # takes the event
        await worker.step(endpoint_id)  # sends it: the 429 or 503
        pending = await store.pending(rt.db, endpoint_id)
        assert pending is not None and pending.next_attempt_at is not None
        assert parse_iso(pending.next_attempt_at) == clock.now + timedelta(seconds=120)
        assert await worker.step(endpoint_id) == pytest.approx(120)  # nothing sent before
    assert len(receiver.at("/hooks")) == 1


@pytest.mark.parametrize("retry_after", ["99999999999999", "\u00b2", "-5", "1e9"])
async def test_a_retry_after_no_one_can_wait_for_is_recorded_and_capped_not_a_crash(
    rt: Runtime, receiver: Receiver, retry_after: str
) -> None:
    """A receiver's header is input: one too large or not a number still leaves its attempt
    recorded and the delivery due again within the longest wait honoured."""
    clock = Clock(utcnow().replace(microsecond=0))
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
    await write_events(rt.db, 1)
    receiver.reply("/hooks", Reply(429, {"Retry-After": retry_after}))
    settings = rt.settings.effective_webhooks()
    worker = Deliveries(rt.db, rt.box, settings, clock=clock)
    async with worker.opened():
        await worker.step(endpoint_id)  # takes the event
        await worker.step(endpoint_id)  # sends it: the 429
    pending = await store.pending(rt.db, endpoint_id)
    assert pending is not None and pending.attempts == 1 and pending.next_attempt_at
    wait = parse_iso(pending.next_attempt_at) - clock.now
    assert timedelta(0) < wait <= timedelta(seconds=settings.max_retry_after_seconds)


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    rt: Runtime, receiver: Receiver
) -> None:
    """A 3xx is a failed attempt; its Location is never called."""
    clock = Clock(utcnow())
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
    await write_events(rt.db, 1)
    receiver.reply("/hooks", Reply(307, {"Location": f"{receiver.url}/elsewhere"}))
    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks(), clock=clock)
    async with worker.opened():
        await drive(worker, endpoint_id, clock, steps=2)
    assert receiver.at("/elsewhere") == []
    pending = await store.pending(rt.db, endpoint_id)
    assert pending is not None and pending.last_status == 307
    assert pending.last_error == "answered 307: redirects are not followed"


async def test_a_410_disables_the_endpoint_with_an_event_it_is_not_sent(
    rt: Runtime, receiver: Receiver
) -> None:
    """410 Gone: the endpoint is disabled at once, a `webhook.endpoint_disabled` event is
    written, and that event never goes to the endpoint it is about (even once re-enabled)."""
    clock = Clock(utcnow())
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
    await write_events(rt.db, 2)
    receiver.reply("/hooks", Reply(410))
    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks(), clock=clock)
    with capture_logs() as logs:
        async with worker.opened():
            await drive(worker, endpoint_id, clock, steps=5)
    endpoint = await store.get(rt.db, endpoint_id)
    assert endpoint is not None and not endpoint.enabled
    assert endpoint.disabled_reason is not None and "410" in endpoint.disabled_reason
    assert len(receiver.at("/hooks")) == 1
    disabled = (await events.after(rt.db, 0, [EventType.WEBHOOK_ENDPOINT_DISABLED], None, 10)).rows
    assert [json.loads(e.data)["endpoint"]["id"] for e in disabled] == [endpoint_id]
    assert [e["log_level"] for e in logs if e["event"] == "webhook_endpoint_disabled"] == ["error"]
    # What needs a person says so, with why.
    todo = await ops_of(rt).sync.manual_actions()
    assert [e["id"] for e in todo["webhook_endpoints_disabled"]] == [endpoint_id]
    assert "410" in todo["webhook_endpoints_disabled"][0]["disabled_reason"]
    assert todo["totals"]["webhook_endpoints_disabled"] == 1
    # Enabled again: the second event is sent, the disabling event is not.
    await ops_of(rt).webhooks.enable(endpoint_id)
    async with worker.opened():
        await drive(worker, endpoint_id, clock, steps=6)
    assert [r.event["type"] for r in receiver.at("/hooks")] == ["listing.sold"] * 2


async def test_an_endpoint_failing_for_three_days_is_disabled_with_an_event(
    rt: Runtime, receiver: Receiver
) -> None:
    """Retries grow from seconds to hours; three days after the first failure the endpoint
    is disabled, with its event and an error line for the operator."""
    clock = Clock(utcnow())
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
    await write_events(rt.db, 1)
    receiver.slow["/hooks"] = 0
    for _ in range(100):
        receiver.reply("/hooks", Reply(500))
    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks(), clock=clock)
    started = clock.now
    waits: list[float] = []
    with capture_logs() as logs:
        async with worker.opened():
            for _ in range(100):
                wait = await worker.step(endpoint_id)
                if wait is None:
                    break
                if wait > 0:
                    waits.append(wait)
                    clock.now += timedelta(seconds=wait)
    endpoint = await store.get(rt.db, endpoint_id)
    assert endpoint is not None and not endpoint.enabled
    assert clock.now - started >= timedelta(days=3)
    assert clock.now - started < timedelta(days=3, hours=1)
    assert 4 <= waits[0] <= 6 and max(waits) <= 86_400 * 1.2  # seconds to hours
    assert waits[1] > waits[0] * 10
    assert len(receiver.at("/hooks")) == len(waits) + 1
    disabled = (await events.after(rt.db, 0, [EventType.WEBHOOK_ENDPOINT_DISABLED], None, 10)).rows
    assert len(disabled) == 1
    assert "3 days" in json.loads(disabled[0].data)["reason"]
    delivery = (await store.deliveries(rt.db, endpoint_id, 2**62, 10))[0]
    assert delivery.state == DeliveryState.FAILED
    assert any(e["event"] == "webhook_endpoint_disabled" for e in logs)


async def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(
    rt: Runtime, receiver: Receiver
) -> None:
    """During the overlap a receiver with the old secret or the new one verifies; after it,
    only the new one does."""
    clock = Clock(utcnow())
    endpoint_id, old = await add_endpoint(rt, receiver, "/hooks", clock=clock)
    _, new = await ops_of(rt, clock).webhooks.rotate_secret(endpoint_id)
    assert new != old and new.startswith("whsec_")
    receiver.secrets["/hooks"] = [old, new]
    await write_events(rt.db, 1)
    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks())
    async with worker.opened():
        await drive(worker, endpoint_id, clock, steps=2)
    during = receiver.at("/hooks")[-1]
    assert during.verified == (True, True)
    assert len(during.headers["webhook-signature"].split(" ")) == 2

    # Rotated again 25 hours ago (overlap 24 h): the secret before it no longer signs.
    past = Clock(utcnow() - timedelta(hours=25))
    _, newest = await ops_of(rt, past).webhooks.rotate_secret(endpoint_id)
    receiver.secrets["/hooks"] = [new, newest]
    await write_events(rt.db, 1)
    async with worker.opened():
        await drive(worker, endpoint_id, clock, steps=2)
    after = receiver.at("/hooks")[-1]
    assert after.verified == (False, True)
    assert len(after.headers["webhook-signature"].split(" ")) == 1


async def test_a_slow_endpoint_delays_neither_another_endpoint_nor_a_sync_cycle(
    tmp_path: Path, secret_key: str, mls: tuple[object, str], platforms: tuple[object, str]
) -> None:
    """While one receiver takes 20 s to answer, another gets every event at once and a
    cycle runs at its usual pace."""
    async with (
        open_live(
            tmp_path,
            secret_key,
            mls,  # type: ignore[arg-type]
            platforms,  # type: ignore[arg-type]
            MLS_SYNC_WEBHOOKS__ALLOW_HTTP_LOOPBACK="true",
            MLS_SYNC_WEBHOOKS__TIMEOUT_SECONDS="60",
        ) as live,
        receiving() as receiver,
    ):
        await _slow_and_fast(live, receiver)


async def _slow_and_fast(live: Live, receiver: Receiver) -> None:
    rt = live.rt
    keys = [f"K{i}" for i in range(20)]
    await add_sandbox_connection(rt, (live.mls, live.mls_url), keys)
    await rt.engine.sync_all("test")  # first seen: events
    receiver.slow["/slow"] = 20
    await add_endpoint(rt, receiver, "/slow", after_event=0)
    await add_endpoint(rt, receiver, "/fast", after_event=0)
    written = await events.last_id(rt.db)
    async with rt.db.reader() as reader, anyio.create_task_group() as tg:
        worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks(), reader=reader)
        tg.start_soon(worker.run)
        await receiver.wait_for("/slow", 1)  # the slow one is stuck on its first event
        for key in keys[:10]:
            live.mls.put(key, "Closed")
        started = time.monotonic()
        await rt.engine.sync_all("test")
        cycle_seconds = time.monotonic() - started
        after_cycle = await events.last_id(rt.db)
        fast = await receiver.wait_for("/fast", after_cycle, seconds=10)
        tg.cancel_scope.cancel()
    assert cycle_seconds < 5
    assert after_cycle > written
    assert [r.event["id"] for r in fast] == list(range(1, after_cycle + 1))
    assert len(receiver.at("/slow")) == 1
    assert receiver.unverified() == []


async def test_deliveries_in_flight_are_bounded_overall_and_one_per_endpoint(
    tmp_path: Path, secret_key: str, receiver: Receiver
) -> None:
    """With [webhooks] max_in_flight = 2 and four slow endpoints, never more than two
    requests are out at once, and never two to one endpoint."""
    settings = make_settings(
        tmp_path,
        MLS_SYNC_WEBHOOKS__ALLOW_HTTP_LOOPBACK="true",
        MLS_SYNC_WEBHOOKS__MAX_IN_FLIGHT="2",
    )
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        for n in range(4):
            await add_endpoint(rt, receiver, f"/slow-{n}")
            receiver.slow[f"/slow-{n}"] = 0.2
        await write_events(rt.db, 3)
        async with anyio.create_task_group() as tg:
            tg.start_soon(Deliveries(rt.db, rt.box, rt.settings.effective_webhooks()).run)
            with anyio.fail_after(20):
                while len(receiver.received) < 12:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    assert receiver.most_at_once == 2
    assert receiver.most_at_once_per_path == 1


async def test_an_endpoint_removed_while_its_request_is_out_ends_quietly(
    rt: Runtime, receiver: Receiver
) -> None:
    """The answer that comes back after the endpoint was removed is dropped with it: no
    error, and its worker ends. Answers are recorded while the next event goes out
    (daemon/outbound/recording.py), so the one request sent meanwhile may still reach the
    receiver, and nothing after it."""
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
    receiver.slow["/hooks"] = 1.0
    await write_events(rt.db, 3)
    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks())
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await receiver.wait_for("/hooks", 1)
            await ops_of(rt).webhooks.remove(endpoint_id)
            with anyio.fail_after(5):
                while endpoint_id in worker.following:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    assert [e for e in logs if e["log_level"] == "error"] == []
    assert len(receiver.at("/hooks")) <= 2
    assert await rt.db.fetch_all("SELECT * FROM webhook_deliveries") == []


BAD_URLS = [
    ("http://example.com/hooks", "https://"),
    ("https://user:pass@example.com/hooks", "user or password"),
    ("https://10.1.2.3/hooks", "private"),
    ("https://169.254.169.254/latest", "private"),
    ("https://[fd00::1]/hooks", "private"),
    ("https://2130706433/hooks", "unusual form"),
    ("https://0x7f.1/hooks", "unusual form"),
    ("ftp://example.com/hooks", "https://"),
    ("https:///hooks", "no host"),
    ("https://example.com:99999/hooks", "port"),
    ("https://example.com/a b", "spaces"),
]


@pytest.mark.parametrize(("url", "named"), BAD_URLS)
async def test_a_bad_endpoint_url_is_refused_naming_why_and_nothing_is_stored(
    tmp_path: Path, secret_key: str, url: str, named: str
) -> None:
    """https only, no user:password, no private, link-local or numeric-trick hosts; the
    refusal names the problem, never the URL."""
    async with open_runtime(make_settings(tmp_path), {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        with pytest.raises(SpecError) as refused:
            await ops_of(rt).webhooks.create(EndpointSpec(url))
        assert named in str(refused.value)
        assert url not in str(refused.value)
        assert await store.list_all(rt.db) == []


async def test_an_endpoint_starting_past_the_last_event_is_refused(
    tmp_path: Path, secret_key: str
) -> None:
    """It would wait, silently, for events that are not there yet and skip them all."""
    async with open_runtime(make_settings(tmp_path), {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        last = await events.last_id(rt.db)
        for after in (last + 1, 2**63 - 1):
            spec = EndpointSpec("https://hooks.example.com/in", after_event=after)
            with pytest.raises(SpecError, match="past the last event"):
                await ops_of(rt).webhooks.create(spec)
        assert await store.list_all(rt.db) == []


async def test_loopback_is_refused_unless_allowed(tmp_path: Path, secret_key: str) -> None:
    """http://127.0.0.1 and https://[::1] need [webhooks] allow_http_loopback."""
    async with open_runtime(make_settings(tmp_path), {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        for url in ("http://127.0.0.1:8080/hooks", "https://[::1]/hooks", "http://localhost/"):
            with pytest.raises(SpecError, match="loopback"):
                await ops_of(rt).webhooks.create(EndpointSpec(url))
        assert await store.list_all(rt.db) == []


async def test_the_secret_is_shown_once_stored_encrypted_and_never_logged(
    rt: Runtime, receiver: Receiver
) -> None:
    """Only the answer that makes an endpoint (or rotates its secret) holds the secret: not
    its views, not the database in plain text, not a log line."""
    with capture_logs() as logs:
        endpoint_id, secret = await add_endpoint(rt, receiver, "/hooks")
        ops = ops_of(rt)
        shown = [await ops.webhooks.get(endpoint_id), *await ops.webhooks.list()]
        _, rotated = await ops.webhooks.rotate_secret(endpoint_id)
        shown.append(await ops.webhooks.get(endpoint_id))
    assert secret.startswith("whsec_")
    for view in shown:
        assert view["secret"] == "<set>"
        assert secret not in json.dumps(view) and rotated not in json.dumps(view)
    assert secret not in repr(logs) and rotated not in repr(logs)
    raw = await everything_stored(rt.db)
    assert secret.encode() not in raw and secret.removeprefix("whsec_").encode() not in raw


@pytest.mark.sqlite_only  # a file of its own, tables not there yet
async def test_the_worker_outlives_a_read_of_its_endpoints_that_fails(
    tmp_path: Path, rt: Runtime
) -> None:
    """A failed read (here: the tables not there yet) is tried again; the daemon goes on."""
    path = tmp_path / "later.db"
    sqlite3.connect(path).close()
    async with sqlite_reader(path) as reader, anyio.create_task_group() as tg:
        worker = Deliveries(reader, rt.box, rt.settings.effective_webhooks(), reader=reader)
        tg.start_soon(worker.run)
        await anyio.sleep(1.5)  # looks at its endpoints every second: both reads fail
        tg.cancel_scope.cancel()


async def test_a_database_too_busy_to_record_a_delivery_does_not_send_it_twice(
    tmp_path: Path, secret_key: str, receiver: Receiver
) -> None:
    """Another process holds the write lock as the receiver answers 200: the record waits
    for the lock, and the event is not sent again meanwhile."""
    settings = make_settings(
        tmp_path,
        MLS_SYNC_WEBHOOKS__ALLOW_HTTP_LOOPBACK="true",
        MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100",
    )
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
        ids = await write_events(rt.db, 2)
        receiver.slow["/hooks"] = 0.3
        async with anyio.create_task_group() as tg:
            worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks())
            tg.start_soon(worker.run)
            await receiver.wait_for("/hooks", 1)  # its answer comes in 0.3 s
            async with write_locked(rt.settings):
                await anyio.sleep(1.5)  # the 200 arrives; the record cannot be written
            await wait_delivered(rt.db, endpoint_id, 2)
            await anyio.sleep(6)  # long enough for a second send, were one coming
            tg.cancel_scope.cancel()
    assert [r.webhook_id for r in receiver.at("/hooks")] == [f"evt_{i}" for i in ids]


async def test_deliveries_go_on_past_a_read_of_the_log_while_the_sync_holds_the_write_lock(
    tmp_path: Path, secret_key: str, receiver: Receiver
) -> None:
    """The sync's group commits hold SQLite's one write lock again and again during a cycle.
    The sending never waits for the records of what was answered: it goes on through the
    next read of the log (READ_BATCH events each) while those wait for the lock, up to
    MAX_UNRECORDED events answered and not yet written."""
    settings = make_settings(
        tmp_path,
        MLS_SYNC_WEBHOOKS__ALLOW_HTTP_LOOPBACK="true",
        MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100",
    )
    count = READ_BATCH * 2  # under MAX_UNRECORDED: all of them may wait for their record
    assert count < MAX_UNRECORDED
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
        ids = await write_events(rt.db, count)
        other = OtherWriter(rt.settings)
        async with rt.db.reader() as reader, anyio.create_task_group() as tg:
            await other.hold()  # the sync, writing
            worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks(), reader=reader)
            tg.start_soon(worker.run)
            try:
                got = await receiver.wait_for("/hooks", count, seconds=10)
                assert await store.deliveries(rt.db, endpoint_id, 2**62, 10) == []
            finally:  # else the worker's last record, written as it stops, waits forever
                other.release()
            await wait_delivered(rt.db, endpoint_id, count)
            tg.cancel_scope.cancel()
    assert [r.webhook_id for r in got] == [f"evt_{i}" for i in ids]
    assert receiver.unverified() == []


async def test_a_secret_rotated_while_a_slow_receiver_takes_its_events_signs_within_seconds(
    rt: Runtime, receiver: Receiver
) -> None:
    """A stream looks at its endpoint again every URL_CHECKED_FOR seconds, not only between
    reads of the log: a read of 200 events to a receiver that takes 50 ms each lasts 10 s,
    and a receiver given the new secret at a rotation must see it used within seconds."""
    endpoint_id, old = await add_endpoint(rt, receiver, "/hooks")
    await write_events(rt.db, READ_BATCH)
    receiver.slow["/hooks"] = 0.05
    worker = Deliveries(rt.db, rt.box, rt.settings.effective_webhooks())
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await receiver.wait_for("/hooks", 1)
        _, new = await ops_of(rt).webhooks.rotate_secret(endpoint_id)
        rotated = time.monotonic()
        receiver.secrets["/hooks"] = [old, new]
        await anyio.sleep(URL_CHECKED_FOR + 2)
        tg.cancel_scope.cancel()
    later = [r for r in receiver.at("/hooks") if r.at > rotated + URL_CHECKED_FOR + 1]
    assert later and all(r.verified == (True, True) for r in later)


async def test_an_endpoint_the_url_rules_no_longer_allow_is_not_called(
    rt: Runtime, receiver: Receiver
) -> None:
    """Made while loopback was allowed (sandbox mode), then the rule changed: each delivery
    checks the URL again, and the attempt says why it was not sent."""
    endpoint_id, _ = await add_endpoint(rt, receiver, "/hooks")
    await write_events(rt.db, 1)
    stricter = rt.settings.effective_webhooks().model_copy(update={"allow_http_loopback": False})
    worker = Deliveries(rt.db, rt.box, stricter, clock=Clock(utcnow()))
    async with worker.opened():
        await worker.step(endpoint_id)  # takes the event
        await worker.step(endpoint_id)  # would send it
    pending = await store.pending(rt.db, endpoint_id)
    assert pending is not None and pending.last_error and "loopback" in pending.last_error
    assert receiver.received == []


async def test_a_user_whose_events_an_endpoint_takes_is_not_removed(rt: Runtime) -> None:
    """The endpoint would go on filtering on a user that is gone, and get nothing."""
    ops = ops_of(rt)
    await ops.users.put("agent-9", {"display_name": "Agent 9"})
    await ops.webhooks.create(EndpointSpec("https://hooks.example.com/in", user_id="agent-9"))
    with pytest.raises(Conflict, match="1 webhook endpoint"):
        await ops.users.remove("agent-9")
