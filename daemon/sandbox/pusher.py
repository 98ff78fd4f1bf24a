"""The sandbox MLS's push feed (RESO RCP-28, docs/mls-reso.md "Push"): its new change-log
events, POSTed to the daemon with the connection's push token, as an MLS that pushes would.

Between cycles it also moves the market of the connection it pushes for a little, so that a
sale reaches the daemon by push, seconds after it happened, rather than at the next cycle.

It misbehaves now and then, as a real feed does: a push lost on the way (the daemon's poll of
the log finds the events), a push sent twice, a batch sent in two halves, the later half
first, and a daemon that answers too slowly for its patience (the push is sent again).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import structlog

from daemon.ops.push import CONTEXT
from daemon.sandbox import market
from daemon.sandbox.mls_server import SandboxMls

log = structlog.get_logger("mls_sync.sandbox.pusher")

BATCH = 500  # events per push at most


@dataclass(frozen=True)
class PushFaults:
    """How often each misbehaviour happens, per push (0 to 1)."""

    drop: float = 0.1
    duplicate: float = 0.1
    reorder: float = 0.1
    patience_seconds: float = 2.0  # a slower answer counts as none: the push is sent again


@dataclass
class SandboxPusher:
    mls: SandboxMls
    url: str  # the daemon's push route for the connection
    token: str
    keys: list[str]  # the connection's listings: the ones it moves between cycles
    rng: random.Random
    faults: PushFaults = field(default_factory=PushFaults)
    pushed_through: int = 0  # the last sequence the daemon accepted (or that was lost)
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        # Only what happens from now on is pushed: what came before, the daemon reads from
        # the log (its full pass, its polls).
        self.pushed_through = self.mls.next_sequence - 1

    async def run(self, every: float, moves_per_tick: int = 1) -> None:
        """Forever: every `every` seconds, move the market a little and push what is new."""
        async with httpx.AsyncClient(timeout=self.faults.patience_seconds) as client:
            while True:
                await anyio.sleep(every)
                self.move(moves_per_tick)
                await self.push_new(client)

    def move(self, count: int) -> list[market.Move]:
        moves = market.move(self.mls, count, self.rng, among=self.keys)
        for m in moves:
            log.info("sandbox_moved_for_push", key=m.key, before=m.before, after=m.after)
        return moves

    async def push_new(self, client: httpx.AsyncClient) -> None:
        """One push of the events after `pushed_through` (at most BATCH), faults included."""
        new = [e for e in self.mls.entity_events if e["EntityEventSequence"] > self.pushed_through]
        if not new:
            return
        batch = new[:BATCH]
        last = int(batch[-1]["EntityEventSequence"])
        roll = self.rng.random()
        if roll < self.faults.drop:
            self.counts["dropped"] += 1
            self.pushed_through = last  # lost on the way: never sent again
            return
        parts = [batch]
        if roll < self.faults.drop + self.faults.reorder and len(batch) > 1:
            self.counts["reordered"] += 1
            middle = len(batch) // 2
            parts = [batch[middle:], batch[:middle]]
        if self.rng.random() < self.faults.duplicate:
            self.counts["duplicated"] += 1
            parts.append(batch)
        for part in parts:
            if not await self._send(client, part):
                return  # sent again from `pushed_through` at the next tick
        self.pushed_through = last

    async def _send(self, client: httpx.AsyncClient, events: list[dict[str, Any]]) -> bool:
        body = {"@reso.context": CONTEXT, "value": events}
        headers = {"Authorization": f"Bearer {self.token}", "EntityEventSource": "sandbox"}
        try:
            answer = await client.post(self.url, json=body, headers=headers)
        except httpx.TimeoutException:
            self.counts["timed_out"] += 1
            return False
        except httpx.TransportError:
            self.counts["unanswered"] += 1
            return False
        if answer.status_code == 429:
            self.counts["told_to_wait"] += 1
            await anyio.sleep(float(answer.headers.get("Retry-After", "1")))
            return False
        if answer.is_success:
            self.counts["sent"] += 1
            return True
        self.counts[f"refused_{answer.status_code}"] += 1
        log.warning("sandbox_push_refused", status=answer.status_code)
        return False
