"""RESO push (RCP-28): the MLS POSTs change-log events to `mls-sync run`, which queues them
durably, answers, and applies them in seconds (docs/mls-reso.md "Push"). The daemon runs as a
subprocess; the MLS is the sandbox's, on loopback.

A change the tests push is made in the sandbox MLS without an event in its own change log:
only the push can tell the daemon about it (the log's poll is an hour away), so what the test
sees is the push's doing."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from tests.e2e.daemon_process import API_TOKEN, Daemon, DaemonConfig
from tests.helpers import Mls, Platforms, add_account, add_post, add_sandbox_connection
from tests.ports import free_port

pytestmark = pytest.mark.slow

KEYS = ["K1", "K2", "K3"]
CONTEXT = "urn:reso:metadata:2.0:resource:entityevent"
PUSH = "/v1/mls-connections/mls-1/entity-events"


@pytest.fixture
async def prepared(daemon_config: DaemonConfig, mls: Mls, platforms: Platforms) -> DaemonConfig:
    """An events-mode connection whose change log is read once an hour, tracking K1-K3; K1
    advertised in a Facebook post."""
    platforms[0].publish("facebook", "1093_4417", "fb-token")
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, KEYS, mode="events", poll_seconds=3600)
        await add_account(rt, "fb-page", "facebook", "fb-token")
        await add_post(rt, "p-1", "L-K1", "fb-page", "1093_4417")
    return daemon_config


@pytest.fixture
async def daemon(prepared: DaemonConfig) -> AsyncIterator[Daemon]:
    started = prepared.start()
    try:
        await started.wait_notify("READY=1")
        await started.wait_for_run(1)  # the cycle at start: the full pass
        yield started
    finally:
        started.stop()


async def _push_token(daemon: Daemon) -> str:
    made = await daemon.call("POST", "/v1/mls-connections/mls-1/push-token")
    assert made.status_code == 200, made.text
    return str(made.json()["push_token"])


def _event(sequence: int, key: str, resource: str = "Property") -> dict[str, Any]:
    return {
        "EntityEventSequence": sequence,
        "ResourceName": resource,
        "ResourceRecordKey": key,
    }


async def _push(daemon: Daemon, token: str | None, body: Any, **headers: str) -> httpx.Response:
    return await daemon.call("POST", PUSH, token=token, json=body, headers=headers)


async def _status(daemon: Daemon, key: str) -> str:
    return str((await daemon.call("GET", f"/v1/listings/L-{key}")).json()["status"])


async def _until_status(daemon: Daemon, key: str, wanted: str, seconds: float = 10) -> None:
    with anyio.fail_after(seconds):
        while await _status(daemon, key) != wanted:
            await anyio.sleep(0.05)


def _queued(config: DaemonConfig) -> int:
    with sqlite3.connect(config.database) as db:
        return int(db.execute("SELECT count(*) FROM pushed_events").fetchone()[0])


async def test_a_pushed_sale_is_applied_and_the_listings_post_comes_down_in_seconds(
    daemon: Daemon, mls: Mls, platforms: Platforms
) -> None:
    token = await _push_token(daemon)
    sequence = mls[0].change_unlogged("K1", "Closed")

    answer = await _push(
        daemon, token, {"@reso.context": CONTEXT, "value": [_event(sequence, "K1")]}
    )

    assert answer.status_code == 200 and answer.json() == {"queued": 1, "ignored": 0}
    await _until_status(daemon, "K1", "sold", seconds=5)
    with anyio.fail_after(5):
        while platforms[0].exists("1093_4417"):
            await anyio.sleep(0.05)
    runs = (await daemon.call("GET", "/v1/runs")).json()["items"]
    assert (runs[0]["trigger"], runs[0]["scope"]) == ("push", "push:mls-1")


async def test_one_event_without_a_batch_and_events_of_other_resources_are_accepted(
    daemon: Daemon, mls: Mls
) -> None:
    token = await _push_token(daemon)
    sequence = mls[0].change_unlogged("K2", "Pending")

    member = await _push(daemon, token, {"@reso.context": CONTEXT, **_event(7, "M1", "Member")})
    single = await _push(daemon, token, {"@reso.context": CONTEXT, **_event(sequence, "K2")})

    assert member.json() == {"queued": 0, "ignored": 1}
    assert single.json() == {"queued": 1, "ignored": 0}
    await _until_status(daemon, "K2", "pending")


async def test_a_pushed_event_naming_property_in_another_case_is_applied(
    daemon: Daemon, mls: Mls
) -> None:
    """`property` is no other resource than `Property` (no two RESO resources differ by case
    alone): ignoring it would miss the sale while the push said 200."""
    token = await _push_token(daemon)
    sequence = mls[0].change_unlogged("K3", "Closed")

    answer = await _push(
        daemon, token, {"@reso.context": CONTEXT, **_event(sequence, "K3", "property")}
    )

    assert answer.json() == {"queued": 1, "ignored": 0}
    await _until_status(daemon, "K3", "sold")


async def test_duplicated_and_out_of_order_pushes_change_a_listing_once(
    daemon: Daemon, prepared: DaemonConfig, mls: Mls
) -> None:
    token = await _push_token(daemon)
    sandbox = mls[0]
    first = sandbox.change_unlogged("K3", "Pending")
    second = sandbox.change_unlogged("K3", "Closed")

    for sequence in (second, first, second):  # the later one, the earlier one late, again
        answer = await _push(daemon, token, {"value": [_event(sequence, "K3")]})
        assert answer.status_code == 200
        await _until_status(daemon, "K3", "sold")
        with anyio.fail_after(5):  # each applied before the next is pushed
            while _queued(prepared) > 0:
                await anyio.sleep(0.05)
    changes = (await daemon.call("GET", "/v1/listings/L-K3")).json()["status_changes"]
    assert [c["event"] for c in changes] == ["first_seen", "changed"]


async def test_a_push_without_the_connections_token_is_refused_and_queues_nothing(
    daemon: Daemon, prepared: DaemonConfig
) -> None:
    await _push_token(daemon)
    body = {"value": [_event(5000, "K1")]}
    answers = [
        await _push(daemon, None, body),
        await _push(daemon, "mlspush_not-the-token", body),
        await daemon.call("POST", "/v1/mls-connections/other/entity-events", json=body),
    ]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert len({a.json()["detail"] for a in answers}) == 1  # an unknown connection says no more
    assert answers[0].headers["WWW-Authenticate"] == "Bearer"
    # The API's own token is not a push token either.
    assert (await daemon.call("POST", PUSH, json=body)).status_code == 401
    assert _queued(prepared) == 0


async def test_bad_push_bodies_are_refused_whole_without_repeating_them_and_queue_nothing(
    daemon: Daemon, prepared: DaemonConfig
) -> None:
    token = await _push_token(daemon)
    not_json = await daemon.call(
        "POST", PUSH, token=token, content=b"{not json", headers={"content-type": "text/plain"}
    )
    secret_key = "SECRET-LOOKING-KEY-9f2"
    half_bad = {"value": [_event(5001, "K1"), {"EntityEventSequence": "12", "X": secret_key}]}
    bad = await _push(daemon, token, half_bad)
    empty = await _push(daemon, token, {"value": []})
    negative = await _push(daemon, token, _event(-3, "K1"))
    # Past a signed 64-bit number (no database column holds it), and a key with a NUL in it
    # (which PostgreSQL refuses in text): each named, not a server error.
    too_large = await _push(daemon, token, {"value": [_event(2**63, "K1"), _event(5002, "K2")]})
    nul_key = await _push(daemon, token, _event(5003, "K\x00"))
    # Valid JSON nested past what a parser reads.
    deep = await daemon.call(
        "POST",
        PUSH,
        token=token,
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={"content-type": "application/json"},
    )

    assert (not_json.status_code, deep.status_code) == (400, 400)
    assert (bad.status_code, empty.status_code, negative.status_code) == (422, 422, 422)
    assert (too_large.status_code, nul_key.status_code) == (422, 422)
    assert "value.0.EntityEventSequence" in too_large.json()["detail"]
    assert "ResourceRecordKey" in nul_key.json()["detail"]
    assert "value.1.EntityEventSequence" in bad.json()["detail"]
    assert "value.1.ResourceRecordKey" in bad.json()["detail"]
    assert secret_key not in bad.text and "12" not in bad.json()["detail"]
    assert _queued(prepared) == 0


async def test_a_full_queue_answers_429_with_retry_after_and_queues_nothing_more(
    prepared: DaemonConfig, mls: Mls
) -> None:
    prepared.add("push", queue_limit=2, retry_after_seconds=7)
    daemon = prepared.start()
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1)
        token = await _push_token(daemon)
        assert (await daemon.call("POST", "/v1/mls-connections/mls-1/pause")).status_code == 200

        kept = await _push(
            daemon,
            token,
            {"value": [_event(6001, "K1"), _event(6002, "K2")]},
            EntityEventSource="feed-a",
        )
        refused = await _push(daemon, token, {"value": [_event(6003, "K3")]})

        assert kept.status_code == 200
        assert (refused.status_code, refused.headers["Retry-After"]) == (429, "7")
        assert _queued(prepared) == 2
        with sqlite3.connect(prepared.database) as db:
            assert db.execute("SELECT DISTINCT source FROM pushed_events").fetchall() == [
                ("feed-a",)
            ]
    finally:
        daemon.stop()


async def test_pushed_events_queued_before_a_crash_are_applied_after_the_restart(
    prepared: DaemonConfig, mls: Mls
) -> None:
    """Paused, the connection queues what is pushed without applying it; the daemon is killed
    (SIGKILL: nothing runs on the way out) and started again, and once the connection is
    resumed the queued event is applied."""
    daemon = prepared.start()
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1)
        token = await _push_token(daemon)
        await daemon.call("POST", "/v1/mls-connections/mls-1/pause")
        sequence = mls[0].change_unlogged("K2", "Closed")
        assert (await _push(daemon, token, {"value": [_event(sequence, "K2")]})).status_code == 200
        daemon.send(signal.SIGKILL)
        await daemon.wait_exit(10)
    finally:
        daemon.stop()
    assert _queued(prepared) == 1

    again = prepared.start()
    try:
        await again.wait_notify("READY=1")
        assert await _status(again, "K2") == "active"
        await again.call("POST", "/v1/mls-connections/mls-1/resume")
        await _until_status(again, "K2", "sold")
        assert _queued(prepared) == 0
    finally:
        again.stop()


async def test_push_may_listen_on_an_address_of_its_own_that_serves_nothing_else(
    prepared: DaemonConfig, mls: Mls
) -> None:
    push_port = free_port()
    prepared.add("push", http_host="127.0.0.1", http_port=push_port)
    daemon = prepared.start()
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1)
        token = await _push_token(daemon)
        sequence = mls[0].change_unlogged("K1", "Closed")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{push_port}") as push_only:
            pushed = await push_only.post(
                PUSH,
                json={"value": [_event(sequence, "K1")]},
                headers={"Authorization": f"Bearer {token}", "EntityEventSource": "crmls-feed"},
            )
            assert pushed.status_code == 200
            admin = {"Authorization": f"Bearer {API_TOKEN}"}
            for path in ("/status", "/metrics", "/ui", "/v1/listings", "/v1/runs", "/openapi.json"):
                assert (await push_only.get(path, headers=admin)).status_code == 404, path
            big = b'{"value": [' + b" " * 2_000_000 + b"]}"
            with_token = {"Authorization": f"Bearer {token}"}
            assert (await push_only.post(PUSH, content=big, headers=with_token)).status_code == 413
            # Without the token, refused before the body is read.
            refused = await push_only.post(PUSH, content=big)
            assert refused.status_code == 401
        await _until_status(daemon, "K1", "sold")
        assert f"127.0.0.1:{push_port}" in daemon.log()  # push_listening names its address
    finally:
        daemon.stop()


async def test_the_sandbox_mls_pushes_to_its_events_connection_in_mls_sync_run(
    sandbox_daemon: Daemon,
) -> None:
    """The shipped sandbox: its events-mode connection gets the sandbox MLS's pushes (with
    their faults), each applied in a run of its own."""
    with anyio.fail_after(60):
        while True:
            items = (await sandbox_daemon.call("GET", "/v1/runs?limit=100")).json()["items"]
            # Any that ended: on a loaded machine the newest may still run at every look.
            pushed = [r for r in items if r["trigger"] == "push" and r["finished_at"]]
            if pushed:
                break
            await anyio.sleep(0.5)
    assert pushed[0]["scope"] == "push:sandbox-4" and pushed[0]["outcome"] == "ok"
    connection = (await sandbox_daemon.call("GET", "/v1/mls-connections/sandbox-4")).json()
    assert (connection["mode"], connection["push"]) == ("events", True)
    assert "sandbox-4" in (await sandbox_daemon.get("/status")).json()["change_log_polls"]
