"""The mail worker: follows the event log into the outbox, and sends the outbox.

Two tasks of their own, so a slow or dead SMTP server never delays syncing or anything else:
- the follower reads events after its cursor and, in ONE transaction with moving the cursor,
  writes what each means for each notified user (a message, a held sale, a digest item). So a
  crash neither loses an event's mail nor writes it twice. Once it has caught up with the log
  and a sale's run has ended, it composes the sale's message from the posts as they are then
  (the post events it planned are the ones the message reports). It also makes the digests
  that are due.
- the sender sends pending messages, at most [email] max_in_flight at once, and marks each
  sent right after the server accepted it. Only a crash between the two sends one again.
  A failed send is tried again after growing, jittered waits until give_up_after_hours.
The database lock is never held across network I/O: rows are read, then sent, then marked.
Reads use the read-only connection when one is given; a transaction checks the cursor it
read before it moves it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import anyio
import structlog

from daemon.config import EmailSettings
from daemon.enums import EventType
from daemon.event_types import matches
from daemon.failures import log_failure
from daemon.mail import compose, smtp
from daemon.mail.timing import digest_day, digest_due
from daemon.outbound import retry
from daemon.store import events, mail
from daemon.store.database import Database
from daemon.store.errors import StoreError
from daemon.store.records import EventRow
from daemon.store.session import Session
from daemon.store.until_written import until_written
from daemon.timestamps import iso, parse_iso, utcnow

log = structlog.get_logger("mls_sync.mail")

BATCH = 500  # events per follower transaction
POLL_SECONDS = 1.0  # how often due digests and retries are looked for when nothing moves
RESTART_SECONDS = 5.0  # after an unexpected error in the worker
# How long the record of a send (or of its failure) waits out a busy database.
MARK_SECONDS = 10.0


class Watch(Protocol):
    async def wait_after(self, event_id: int, seconds: float) -> bool:
        """Returns once an event after `event_id` exists or after `seconds`; False at once
        when the daemon stops."""
        ...


class Hooks(Protocol):
    """What the worker reports (the daemon's metrics)."""

    def mail_sent_one(self) -> None: ...
    def mail_failed_one(self) -> None: ...
    def mail_waiting(self, count: int) -> None: ...


class _NoHooks:
    def mail_sent_one(self) -> None:
        pass

    def mail_failed_one(self) -> None:
        pass

    def mail_waiting(self, count: int) -> None:
        pass


def _waiting() -> None:
    log.info("mail_worker_waiting", note="another process sends the mail for this database")


class MailWorker:
    def __init__(
        self,
        db: Database,
        settings: EmailSettings,
        password: str | None,
        watch: Watch,
        clock: Callable[[], datetime] = utcnow,
        hooks: Hooks | None = None,
        rng: random.Random | None = None,
        poll_seconds: float = POLL_SECONDS,
        reader: Database | None = None,
    ) -> None:
        self._db = db
        # Reads go beside the writer (the daemon's read-only connection) rather than queue
        # behind the sync's writes; only planning and recording take the writer.
        self._reader = reader or db
        self.settings = settings
        self._password = password
        self._watch = watch
        self._clock = clock
        self._hooks = hooks or _NoHooks()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._poll = poll_seconds
        self._cursor = 0
        self._more = anyio.Event()  # something to send may be there
        self._busy: set[int] = set()

    async def run(self) -> None:
        """Until cancelled. A bug in the mail never ends the daemon: it is logged and the
        worker starts again (its state is all in the database)."""
        log.info("mail_worker_started", smtp=f"{self.settings.smtp_host}:{self.settings.smtp_port}")
        while True:
            try:
                # One mail worker per database: a message is composed and sent once.
                async with self._db.alone("mail", _waiting), anyio.create_task_group() as tg:
                    await mail.start_cursor(self._db)
                    tg.start_soon(self._follow_loop)
                    tg.start_soon(self._send_loop)
            except Exception as exc:
                log_failure(
                    log,
                    exc,
                    "mail_worker_crashed",
                    "mail_worker_database_error",
                    note="started again in a few seconds",
                )
                self._busy.clear()
                await anyio.sleep(RESTART_SECONDS)

    # -- following the event log ---------------------------------------------------------

    async def _follow_loop(self) -> None:
        while True:
            try:
                moved = await self.follow_once()
                await self.make_digests()
                self._hooks.mail_waiting(await mail.waiting(self._reader))
            except StoreError as exc:  # busy: the next pass tries again
                log.warning("mail_follow_delayed", error=str(exc))
                moved = False
            if not moved and not await self._watch.wait_after(self._cursor, self._poll):
                await anyio.sleep(self._poll)  # the daemon is stopping: no wake-ups now

    async def follow_once(self) -> bool:
        """One batch of events into the outbox; True when the cursor moved."""
        async with self._reader.reading() as conn:
            self._cursor = await mail.cursor(conn)
        read = await events.after(self._reader, self._cursor, None, None, BATCH)
        upto = read.rows[-1].id if len(read.rows) == BATCH else read.upto
        if upto == self._cursor and not await mail.any_releasable(self._reader):
            return False  # nothing to write: no transaction (the writer is the sync's too)
        now = iso(self._clock())
        async with self._db.transaction() as conn:
            if await mail.cursor(conn) != self._cursor:
                return True  # another worker moved it meanwhile: read again
            to = await mail.recipients(conn) if read.rows else {}
            for row in read.rows:
                await self._plan(conn, row, to, now)
            await mail.move_cursor(conn, upto)
            if upto >= await events.last_id_in(conn):
                # Caught up, under the write lock: every event committed is planned, so the
                # posts as they are now are what those events say, no more and no less.
                await self._release(conn, now)
        moved = upto != self._cursor
        self._cursor = upto
        self._more.set()
        return moved

    async def _plan(
        self,
        conn: Session,
        row: EventRow,
        recipients: dict[str, mail.Recipient],
        now: str,
    ) -> None:
        to = recipients.get(row.user_id or "")
        if to is None or not matches(to.notify_events, row.type):
            return
        if to.digest:
            due = digest_due(parse_iso(row.created_at), to.time_zone, self.settings.digest_hour)
            await mail.add_digest_item(conn, to, row.id, row.type, row.data, iso(due))
            return
        data = json.loads(row.data)
        if row.type == EventType.LISTING_SOLD and row.listing_id and row.run_id is not None:
            # Its posts come down later in the same run: composed when the run has ended.
            held = (row.run_id, row.listing_id, data)
            await mail.enqueue(conn, to, row.type, [row.id], now, held=held)
            return
        if (
            row.type.startswith("post.")
            and row.listing_id
            and await mail.join_held(conn, to.user_id, row.listing_id, row.id)
        ):
            return  # its sale's message will say it
        if row.type == EventType.LISTING_SOLD:
            message = await self._sold(conn, data, row.listing_id)
        else:
            message = compose.for_event(row.type, data, self.settings.public_url)
        await mail.enqueue(conn, to, row.type, [row.id], now, message.subject, message.body)

    async def _release(self, conn: Session, now: str) -> None:
        """Composes the held sales whose run has ended, from their posts as they are now."""
        for message_id, listing_id, facts in await mail.releasable(conn):
            message = await self._sold(conn, facts, listing_id)
            await mail.release(conn, message_id, message.subject, message.body, now)

    async def _sold(
        self, conn: Session, data: compose.Data, listing_id: str | None
    ) -> compose.Message:
        posts = await mail.posts_of_listing(conn, listing_id) if listing_id else []
        states = [compose.post_state(p) for p in posts]
        return compose.sold(data, states, self.settings.public_url)

    async def make_digests(self) -> int:
        """One digest per user whose items are due; returns how many were made."""
        now = self._clock()
        made = 0
        if not await mail.any_digest_due(self._reader, iso(now)):
            return 0
        async with self._db.transaction() as conn:
            items = await mail.due_digest_items(conn, iso(now))
            for user_id in dict.fromkeys(i.user_id for i in items):
                mine = [i for i in items if i.user_id == user_id]
                await self._digest(conn, mine, now)
                made += 1
        if made:
            self._more.set()
        return made

    async def _digest(self, conn: Session, items: list[mail.DigestItemRow], now: datetime) -> None:
        parts = []
        for item in items:
            posts: list[compose.PostState] = []
            if item.type == EventType.LISTING_SOLD:
                listing_id = (item.data.get("listing") or {}).get("id")
                rows = await mail.posts_of_listing(conn, listing_id) if listing_id else []
                posts = [compose.post_state(p) for p in rows]
            parts.append(compose.DigestItem(item.type, item.data, posts))
        last = items[-1]
        time_zone = await mail.time_zone(conn, last.user_id)
        day = digest_day(parse_iso(last.due_at), time_zone)
        message = compose.digest(day, parts, self.settings.public_url)
        to = mail.Recipient(last.user_id, last.recipient, time_zone, (), True)
        ids = [i.event_id for i in items]
        made = await mail.enqueue(conn, to, "digest", ids, iso(now), message.subject, message.body)
        await mail.mark_digested(conn, [i.id for i in items], made)

    # -- sending -------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        async with anyio.create_task_group() as tg:
            while True:
                self._more = anyio.Event()
                try:
                    await self.start_due(tg)
                except StoreError as exc:
                    log.warning("mail_send_delayed", error=str(exc))
                with anyio.move_on_after(self._poll):
                    await self._more.wait()

    async def start_due(self, tg: anyio.abc.TaskGroup) -> None:
        free = self.settings.max_in_flight - len(self._busy)
        if free <= 0:
            return
        for message in await mail.due(self._reader, iso(self._clock()), self._busy, free):
            self._busy.add(message.id)
            tg.start_soon(self._send_one, message)

    async def _send_one(self, message: mail.Outgoing) -> None:
        try:
            try:
                built = smtp.build(
                    self.settings,
                    message.recipient,
                    message.subject,
                    message.body,
                    message.id,
                    message.event_ids,
                )
            except ValueError as exc:  # an address or header the e-mail format cannot hold
                error = f"cannot be built ({type(exc).__name__}): check the user's e-mail address"
                await self._give_up(message, message.attempts, error)
                return
            # A stop is not a crash: a send in flight finishes (within the SMTP timeout) and is
            # marked, or the restarted daemon would send it again.
            deadline = anyio.current_time() + self.settings.timeout_seconds + MARK_SECONDS
            with anyio.CancelScope(shield=True, deadline=deadline):
                try:
                    await smtp.send(self.settings, self._password, built)
                except smtp.SEND_ERRORS as exc:
                    await self._failed(message, _describe(exc))
                    return
                await self._mark_sent(message)
            self._hooks.mail_sent_one()
            log.info("mail_sent", message_id=message.id, user_id=message.user_id, kind=message.kind)
        finally:
            self._busy.discard(message.id)
            self._more.set()

    async def _mark_sent(self, message: mail.Outgoing) -> None:
        """Right after the server's acceptance: only a crash in between resends it. Until the
        mark is written the message stays busy, so a busy database never sends it twice; a
        database that stays unwritable is given up on after a while (logged: the message may
        go again)."""

        async def mark() -> None:
            await mail.mark_sent(self._db, message.id, iso(self._clock()))

        await until_written(mark, f"the send of mail message {message.id}", MARK_SECONDS)

    async def _failed(self, message: mail.Outgoing, error: str) -> None:
        attempts = message.attempts + 1
        now = self._clock()
        give_up_at = parse_iso(message.created_at) + timedelta(
            hours=self.settings.give_up_after_hours
        )
        if now >= give_up_at:
            await self._give_up(message, attempts, error)
            return
        # The webhooks' schedule: one rule for every message that leaves the daemon.
        wait = retry.backoff(attempts, self._rng.random())
        next_at = iso(min(now + wait, give_up_at))

        async def mark() -> None:
            await mail.mark_retry(self._db, message.id, attempts, next_at, error)

        # Not recorded (a database that stays busy): the message stays due and is tried again.
        await until_written(mark, f"the failed send of mail message {message.id}", MARK_SECONDS)
        log.warning(
            "mail_send_failed",
            message_id=message.id,
            user_id=message.user_id,
            attempts=attempts,
            next_attempt_at=next_at,
            error=error,
        )

    async def _give_up(self, message: mail.Outgoing, attempts: int, error: str) -> None:
        async def mark() -> None:
            await mail.mark_failed(self._db, message.id, attempts, error)

        await until_written(mark, f"giving up mail message {message.id}", MARK_SECONDS)
        self._hooks.mail_failed_one()
        log.error(
            "mail_given_up",
            message_id=message.id,
            user_id=message.user_id,
            kind=message.kind,
            attempts=attempts,
            error=error,
            note="the message is marked failed and not tried again",
        )


def _describe(exc: BaseException) -> str:
    """The kind of failure and the server's code and text (never our message or password)."""
    code = getattr(exc, "code", None)
    text = getattr(exc, "message", None) or str(exc)
    return (
        f"{type(exc).__name__}: {code} {text}"[:300]
        if code
        else f"{type(exc).__name__}: {text}"[:300]
    )
