"""E-mail notifications through a real SMTP server on loopback (aiosmtpd): a sale's message
says what sold, which posts came down and which need the person; only notified users get mail;
digests go out at their hour; a refused message is sent later; nothing is sent twice."""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from daemon.mail.worker import MailWorker
from daemon.sandbox.faults import Fault
from daemon.sandbox.smtp_sink import SmtpSink, smtp_sink_running
from daemon.service.event_watch import EventWatch
from daemon.store import events, mail, meta
from daemon.timestamps import utcnow
from tests.certificates import loopback_certificate
from tests.helpers import (
    Clock,
    Live,
    Mls,
    Platforms,
    open_live,
    wait_until,
    write_locked,
)
from tests.integration.test_unpublish import _listing_with_posts, _sell, post_ids
from tests.mail_helpers import PUBLIC_URL, email_settings, notify
from tests.ports import free_port

pytestmark = [pytest.mark.both_databases, pytest.mark.slow]

AGENT = "agent@example.test"


@pytest.fixture
def sink() -> Iterator[tuple[SmtpSink, int]]:
    server = SmtpSink()
    with smtp_sink_running(server, free_port()) as port:
        yield server, port


@pytest.fixture
def clock() -> Clock:
    return Clock(utcnow())


async def _until_worker_has_its_cursor(live: Live) -> None:
    """Ready once the worker has its turn and its first cursor, at the end of the log as it
    was: a sale committed before that is history to it (seen on PostgreSQL under load, where
    its turn takes a connection of its own)."""
    with anyio.fail_after(30):
        while await meta.get(live.rt.db, mail.CURSOR_KEY) is None:
            await anyio.sleep(0.01)


@asynccontextmanager
async def running(live: Live, port: int, clock: Clock, **settings: object) -> AsyncIterator[None]:
    """The mail worker (and the event watch that wakes it) for the test's body."""
    watch = EventWatch(live.rt.db, 0.02)
    config = email_settings(port, **settings)
    async with live.rt.db.reader() as reader, anyio.create_task_group() as tg:
        worker = MailWorker(
            live.rt.db, config, None, watch, clock=clock, poll_seconds=0.05, reader=reader
        )
        tg.start_soon(watch.run)
        tg.start_soon(worker.run)
        await _until_worker_has_its_cursor(live)
        yield
        tg.cancel_scope.cancel()


async def _event_ids(live: Live, *types: str) -> list[int]:
    read = await events.after(live.rt.db, 0, types, None, 10_000)
    return [e.id for e in read.rows]


async def _settle() -> None:
    await anyio.sleep(0.5)  # long enough for a second message, if one were coming


async def test_a_sold_listing_sends_its_user_one_message_with_what_came_down_and_what_needs_them(
    live: Live, sink: tuple[SmtpSink, int], clock: Clock
) -> None:
    server, port = sink
    async with running(live, port, clock):
        await notify(live.rt.db)
        await _listing_with_posts(live)
        live.platforms.posts[post_ids("K1")["facebook"]].kind = "story"  # only a person can
        await _sell(live)

        await wait_until(lambda: len(server.received) >= 1)
        await _settle()
        assert len(server.received) == 1
        (got,) = server.received
        assert got.recipients == [AGENT]
        assert got.subject == "Sold: listing K1"
        body = got.body
        assert "Listing K1 sold (MLS status: Closed" in body
        assert f"{PUBLIC_URL}/v1/listings/L-K1" in body
        came_down, rest = body.split("Taken down:", 1)[1].split("Only you can take these down", 1)
        assert post_ids("K1")["instagram"] in came_down and post_ids("K1")["linkedin"] in came_down
        assert post_ids("K1")["facebook"] in rest
        assert "https://www.facebook.com/" in rest, "the post's link, for the person to open"
        sold_and_person = await _event_ids(live, "listing.sold", "post.needs_person")
        assert sorted(got.event_ids) == sold_and_person, "one message reports both events"
        assert "token" not in body


async def test_mail_turned_on_for_the_first_time_starts_from_now_not_from_old_events(
    live: Live, sink: tuple[SmtpSink, int], clock: Clock
) -> None:
    """An install that ran without e-mail has weeks of events: none of them is mailed."""
    server, port = sink
    await notify(live.rt.db)
    await _listing_with_posts(live, "K1")
    await _listing_with_posts(live, "K2")
    await _sell(live)  # K1 sold before mail was on
    async with running(live, port, clock):
        await _settle()
        live.mls.set_status("K2", "Closed")
        await live.rt.engine.sync_all()
        await wait_until(lambda: len(server.received) >= 1)
        await _settle()
    assert [m.subject for m in server.received] == ["Sold: listing K2"]


async def test_a_user_who_did_not_ask_for_the_event_type_gets_nothing(
    live: Live, sink: tuple[SmtpSink, int], clock: Clock
) -> None:
    server, port = sink
    async with running(live, port, clock):
        await notify(live.rt.db, events=["listing.restored"])
        await _listing_with_posts(live)
        await _sell(live)
        assert await _event_ids(live, "listing.sold")
        await _settle()
        assert server.received == []


async def test_a_digest_user_gets_one_digest_at_their_hour_with_the_days_items(
    live: Live, sink: tuple[SmtpSink, int], clock: Clock
) -> None:
    server, port = sink
    async with running(live, port, clock):
        await notify(live.rt.db, mode="daily_digest", time_zone="America/New_York")
        await _listing_with_posts(live)
        live.platforms.posts[post_ids("K1")["facebook"]].kind = "story"
        await _sell(live)
        await _settle()
        assert server.received == [], "nothing before the digest hour"

        clock.now += timedelta(hours=25)  # past 08:00 in New York, whenever the test runs
        await wait_until(lambda: len(server.received) >= 1)
        clock.now += timedelta(hours=1)
        await _settle()
        assert len(server.received) == 1
        (got,) = server.received
        assert got.subject.startswith("Your mls-sync digest for ")
        assert "Listing K1 sold" in got.body
        assert "Only you can take down the facebook post" in got.body
        assert sorted(got.event_ids) == await _event_ids(live, "listing.sold", "post.needs_person")


async def test_a_message_the_server_refuses_is_sent_later_once_it_accepts(
    live: Live, sink: tuple[SmtpSink, int], clock: Clock
) -> None:
    server, port = sink
    async with running(live, port, clock):
        server.refuse_next = 1  # 451: try again later
        await notify(live.rt.db)
        await _listing_with_posts(live)
        await _sell(live)
        await wait_until(lambda: server.refused == 1)
        await _settle()
        assert server.received == [], "not tried again before its time"

        clock.now += timedelta(minutes=5)  # past the first retry's wait (30 s, jittered)
        await wait_until(lambda: len(server.received) == 1)
        await _settle()
        assert len(server.received) == 1


async def _attempts_recorded(live: Live, count: int) -> None:
    """Until the outbox shows `count` attempts. The server counts a refusal before the worker
    records it: a clock moved in between would date that attempt, and its retry, from the
    new time."""
    with anyio.fail_after(10):
        while True:
            row = await live.rt.db.fetch_one("SELECT attempts FROM mail_outbox")
            if row is not None and row["attempts"] >= count:
                return
            await anyio.sleep(0.01)


async def test_a_message_refused_until_give_up_time_is_marked_failed_and_not_sent(
    live: Live, sink: tuple[SmtpSink, int], clock: Clock
) -> None:
    server, port = sink
    server.refuse_next = 1000
    await notify(live.rt.db)
    await _listing_with_posts(live)
    async with running(live, port, clock, give_up_after_hours=1):
        await _sell(live)
        await wait_until(lambda: server.refused >= 1)
        await _attempts_recorded(live, 1)
        clock.now += timedelta(hours=2)
        await wait_until(lambda: server.refused >= 2)
        await _settle()
    row = await live.rt.db.fetch_one("SELECT status, attempts FROM mail_outbox")
    assert row is not None and (row["status"], row["attempts"]) == ("failed", 2)
    assert server.received == []


async def test_many_sales_over_many_cycles_each_go_out_exactly_once(
    live: Live, sink: tuple[SmtpSink, int], clock: Clock
) -> None:
    """Sends overlap (max_in_flight 3) while cycles commit: the server sees each message once."""
    server, port = sink
    await notify(live.rt.db)
    keys = [f"K{n}" for n in range(1, 10)]
    for key in keys:
        await _listing_with_posts(live, key)
    async with running(live, port, clock, max_in_flight=3):
        for key in keys:
            live.mls.set_status(key, "Closed")
            await live.rt.engine.sync_all()
        await wait_until(lambda: len(server.received) >= len(keys))
        await _settle()
    ids = Counter(str(r.message["Message-ID"]) for r in server.received)
    assert len(ids) == len(keys) and set(ids.values()) == {1}
    assert sorted(r.subject for r in server.received) == sorted(f"Sold: listing {k}" for k in keys)


async def test_an_account_whose_token_is_refused_tells_its_user_to_sign_in_again(
    live: Live, sink: tuple[SmtpSink, int], clock: Clock
) -> None:
    server, port = sink
    await notify(live.rt.db, "agent-1", events=["account.*"])  # the accounts' user
    await _listing_with_posts(live)
    live.platforms.tokens["fb-page-token"] = "revoked"
    async with running(live, port, clock):
        await _sell(live)
        await wait_until(lambda: len(server.received) >= 1)
        await _settle()
    (got,) = server.received
    assert got.subject == "Sign in again: facebook account fb-page"
    assert "What to do: the platform refused this account's token" in got.body
    assert f"{PUBLIC_URL}/v1/accounts/fb-page" in got.body
    assert "fb-page-token" not in got.body


async def test_starttls_sends_over_an_encrypted_verified_connection(
    live: Live, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server requires STARTTLS; the daemon verifies its certificate (trusted here through
    SSL_CERT_FILE, as an operator's CA bundle would be)."""
    cert, key = loopback_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpSink()
    with smtp_sink_running(server, free_port(), tls_context=context, require_starttls=True) as port:
        await notify(live.rt.db)
        await _listing_with_posts(live)
        async with running(live, port, clock, security="starttls"):
            await _sell(live)
            await wait_until(lambda: len(server.received) >= 1)
    assert [r.subject for r in server.received] == ["Sold: listing K1"]


async def test_a_database_too_busy_to_record_a_send_does_not_send_it_twice(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms, sink: tuple[SmtpSink, int]
) -> None:
    """Another process holds the write lock as the server accepts: the mark waits for it, and
    the message, still pending in the database, is not sent again meanwhile."""
    server, port = sink
    clock = Clock(utcnow())
    async with open_live(
        tmp_path, secret_key, mls, platforms, MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100"
    ) as live:
        await notify(live.rt.db)
        await mail.start_cursor(live.rt.db)  # mail was on before: the sale is news
        await _listing_with_posts(live)
        await _sell(live)
        server.answer_delay = 0.5
        async with running(live, port, clock):
            await wait_until(lambda: len(server.received) == 1)  # kept, 250 not sent yet
            async with write_locked(live.rt.settings):
                await anyio.sleep(2.5)  # the 250 arrives; the mark cannot be written
            await _settle()
        row = await live.rt.db.fetch_one("SELECT status FROM mail_outbox")
    assert len(server.received) == 1
    assert row is not None and row["status"] == "sent"


async def test_a_worker_behind_the_log_reports_each_post_in_one_message_only(
    live: Live, sink: tuple[SmtpSink, int], clock: Clock
) -> None:
    """The sale's run fails to take the Facebook post down; a later run finds only a person
    can. A worker that reads both runs at once (it was down) writes one message: the sale
    with that post as it is now, and the post's event reported in it, not again on its own."""
    server, port = sink
    await notify(live.rt.db)
    await mail.start_cursor(live.rt.db)  # mail was on, then its worker was down
    await _listing_with_posts(live)
    live.platforms.inject("facebook", Fault("status", status=500))
    await _sell(live)
    live.platforms.posts[post_ids("K1")["facebook"]].kind = "story"
    live.rt.engine.unpublisher.clock = lambda: utcnow() + timedelta(days=1)
    await live.rt.engine.sync_all()
    assert len(await _event_ids(live, "post.needs_person")) == 1

    async with running(live, port, clock):
        await wait_until(lambda: len(server.received) >= 1)
        await _settle()
    (got,) = server.received
    assert sorted(got.event_ids) == await _event_ids(live, "listing.sold", "post.needs_person")
    assert "Only you can take these down" in got.body
    assert "https://www.facebook.com/" in got.body


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback only
async def test_the_smtp_login_uses_the_password_given_as_a_secret_and_nothing_else_shows_it(
    live: Live, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that wants a login gets it; the password is in no message and no log line."""
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, data: LoginPassword
    ) -> AuthResult:
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret-smtp")

    server = SmtpSink()
    options = {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}
    with smtp_sink_running(server, free_port(), **options) as port:
        await notify(live.rt.db)
        await _listing_with_posts(live)
        watch = EventWatch(live.rt.db, 0.02)
        config = email_settings(port, username="mls-sync")
        worker = MailWorker(
            live.rt.db, config, "s3cret-smtp", watch, clock=clock, poll_seconds=0.05
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.run)
            tg.start_soon(worker.run)
            await _until_worker_has_its_cursor(live)
            await _sell(live)
            await wait_until(lambda: len(server.received) >= 1)
            tg.cancel_scope.cancel()
    assert logins == [(b"mls-sync", b"s3cret-smtp")]
    assert "s3cret" not in server.received[0].message.as_string()
    assert "s3cret" not in capsys.readouterr().out
