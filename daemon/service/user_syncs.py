"""Syncs of one user's connections asked for over HTTP (POST /v1/users/{id}/sync).

Coalesced per user as the coordinator coalesces full cycles: a request that arrives while a
sync of the same user waits to begin shares its run; one that arrives while it runs asks for
exactly one follow-up. Different users' syncs run side by side, and beside the full cycle:
each connection's lease keeps any one connection to one sync at a time (a run waits for a
connection another sync of this process holds; one another process holds is skipped with a
warning).
"""

from __future__ import annotations

import math
from typing import Protocol

import anyio
import structlog

from daemon.failures import log_failure
from daemon.sync.engine import RunReport

log = structlog.get_logger("mls_sync.user_syncs")

STOPPED_BEFORE_IT_BEGAN = "the daemon stopped before this sync began"
ENDED_BEFORE_ITS_RUN = (
    "the sync did not end its run (the daemon's log says why: user_sync_crashed, or "
    "user_sync_database_error)"
)


class UserSyncEngine(Protocol):
    async def sync_user(
        self, user_id: str, trigger: str = "manual", run_id: int | None = None
    ) -> RunReport: ...

    async def reserve_run(self, trigger: str, scope: str = "all") -> int: ...

    async def abandon_run(self, run_id: int, reason: str) -> None: ...


class UserSyncs:
    def __init__(self, engine: UserSyncEngine) -> None:
        self.engine = engine
        self.pending: dict[str, tuple[str, int]] = {}  # user -> (trigger, its reserved run)
        self.running: set[str] = set()  # users whose worker is on (running or about to)
        self.stopping = False
        self._lock = anyio.Lock()
        self._start, self._started = anyio.create_memory_object_stream[str](math.inf)
        self._idle = anyio.Event()
        self._idle.set()

    async def request(self, user_id: str, source: str) -> tuple[str, int | None]:
        """ "started" or "queued", and the run that will report the sync; ("refused", None)
        while the daemon stops."""
        async with self._lock:
            if self.stopping:
                return "refused", None
            if user_id in self.pending:
                return "queued", self.pending[user_id][1]
            run_id = await self.engine.reserve_run(source, f"user:{user_id}")
            self.pending[user_id] = (source, run_id)
            if user_id in self.running:  # the pending one follows the running one
                outcome = "queued"
            else:
                outcome = "started"
                self.running.add(user_id)
                self._idle = anyio.Event()
                self._start.send_nowait(user_id)
        log.info("user_sync_requested", user_id=user_id, run_id=run_id, outcome=outcome)
        return outcome, run_id

    async def run(self) -> None:
        """Starts a worker for each user asked for; returns once stopped and all have ended."""
        async with anyio.create_task_group() as tg, self._started:
            async for user_id in self._started:
                tg.start_soon(self._worker, user_id)

    async def _worker(self, user_id: str) -> None:
        """Runs the user's pending sync, then its follow-up if one was asked for meanwhile."""
        try:
            while True:
                async with self._lock:
                    taken = None if self.stopping else self.pending.pop(user_id, None)
                    if taken is None:
                        # Under the lock: a request now starts a worker of its own.
                        self.running.discard(user_id)
                        return
                await self._one(user_id, *taken)
        finally:
            self.running.discard(user_id)
            if not self.running:
                self._idle.set()

    async def _one(self, user_id: str, source: str, run_id: int) -> None:
        try:
            await self.engine.sync_user(user_id, source, run_id)
        except Exception as exc:  # the engine records its own failures
            log_failure(
                log,
                exc,
                "user_sync_crashed",
                "user_sync_database_error",
                user_id=user_id,
                run_id=run_id,
            )
        finally:  # a run asked for is never left `running`
            with anyio.CancelScope(shield=True):
                await self._abandon(run_id, ENDED_BEFORE_ITS_RUN)

    async def stop(self, grace: float) -> None:
        """Takes no new requests; ends the runs reserved for syncs not begun; lets running
        ones finish within `grace`, then cancels them (their runs end `interrupted`)."""
        async with self._lock:
            self.stopping = True
            reserved, self.pending = list(self.pending.values()), {}
            self._start.close()
        for _, run_id in reserved:
            await self._abandon(run_id, STOPPED_BEFORE_IT_BEGAN)
        with anyio.move_on_after(grace):
            await self._idle.wait()

    async def _abandon(self, run_id: int, reason: str) -> None:
        try:
            await self.engine.abandon_run(run_id, reason)
        except Exception as exc:  # the outage the run met, say; the next start ends it
            log_failure(log, exc, "reserved_run_not_ended", "reserved_run_not_ended", run_id=run_id)
