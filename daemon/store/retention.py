"""What is kept, and for how long: after each cycle, events past `[events] retention_days` go,
and with them the records of webhook deliveries and mail done with before then.

Each prune finds its rows through an index on the time it prunes by (migration 0014): it runs
after every cycle, and a read of a whole history table there costs more with every day the
daemon runs, though nothing is old enough to go (docs/benchmarks.md "Scenario L").
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.store import events, mail, webhooks
from daemon.store.database import Database


@dataclass(frozen=True)
class Pruned:
    events: int
    deliveries: int
    mail: int  # rows of the mail outbox and of digests' items
    held_for: list[int]  # the webhook endpoints that keep older events from going


async def prune(db: Database, before: str, mail_on: bool) -> Pruned:
    """Deletes what is older than `before` and no longer needed: events no endpoint (nor the
    mail worker, when `mail_on`) still owes, deliveries settled, mail sent or given up."""
    return Pruned(
        events=await events.prune(db, before, mail_on),
        deliveries=await webhooks.prune(db, before),
        mail=await mail.prune(db, before),
        held_for=await events.held_for(db, before),
    )
