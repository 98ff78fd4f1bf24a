"""The event log as a feed: the events after an id, long polled (docs/events.md).

A reader keeps the `next_after` of each answer and sends it back: it sees every event its
filters pass exactly once, in order, across restarts of either side. Events pruned before it
read them are reported (Gone), never skipped in silence.
"""

from __future__ import annotations

import anyio

from daemon import event_types
from daemon.errors import Conflict, Gone
from daemon.ops.context import Topic
from daemon.ops.queries import EventQuery
from daemon.ops.views import View
from daemon.outbound.payload import event_view
from daemon.specs import SpecError
from daemon.store import events as store


class EventOps(Topic):
    async def feed(self, query: EventQuery, wait_after: store.Waiter | None = None) -> View:
        """The events after `query.after`. With `query.wait`, an empty answer waits (through
        `wait_after`, or by polling the database) until one arrives or the time is up."""
        types = _types(query.types)
        await self._refuse_unknown(query.after)
        wait = wait_after or store.polling_wake(self.ctx.db)
        deadline = anyio.current_time() + query.wait
        after = query.after
        while True:
            read = await store.after(self.ctx.db, after, types, query.user, query.limit)
            full = len(read.rows) == query.limit
            after = read.rows[-1].id if full else max(after, read.upto)
            left = deadline - anyio.current_time()
            if read.rows or left <= 0 or not await wait(after, left):
                return {"items": [event_view(r) for r in read.rows], "next_after": after}

    async def recent(self, limit: int) -> list[View]:
        """The last `limit` events, newest first (ids have no gaps but pruned ones)."""
        last = await store.last_id(self.ctx.db)
        first = await store.first_id(self.ctx.db) or last + 1
        read = await store.after(self.ctx.db, max(first - 1, last - limit), None, None, limit)
        return [event_view(r) for r in reversed(read.rows)]

    async def _refuse_unknown(self, after: int) -> None:
        """Gone when events after `after` were pruned; Conflict when `after` is past the last
        event ever given (a database restored from a backup, an id from elsewhere): the
        reader would skip every event up to it."""
        last = await store.last_id(self.ctx.db)
        if after > last:
            raise Conflict(
                f"after is past the last event ({last}): read the current state (GET "
                f"/v1/listings, /v1/posts), then follow from after={last}"
            )
        # Ids have no gaps but pruned ones: the first kept (or the next to come, when every
        # event was pruned) tells whether any after `after` is gone.
        first = await store.first_id(self.ctx.db) or last + 1
        if after < first - 1:
            raise Gone(
                "events after this id were pruned ([events] retention_days): the oldest kept "
                f"is {first}; read the current state (GET /v1/listings, /v1/posts), then "
                f"follow from after={first - 1}"
            )


def _types(text: str | None) -> list[str] | None:
    if text is None:
        return None
    try:
        return sorted(event_types.expand(t.strip() for t in text.split(",")))
    except event_types.UnknownEventType as exc:
        raise SpecError(f"types: {exc}") from None
