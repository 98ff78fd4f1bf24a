"""Users: who owns connections, listings and platform accounts, and who is notified of what;
and the sync of every connection of one user."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from daemon.errors import Unavailable
from daemon.ops import views
from daemon.ops.records import Kind, Records
from daemon.ops.runs import report_view
from daemon.ops.views import View
from daemon.specs import SpecError, UserSpec, parse_spec
from daemon.store import users as store
from daemon.store.database import Database

HOW_TO_ADD = "add it first: `mls-sync users add --id ID --name NAME`, or PUT /v1/users/ID"


async def require_users(db: Database, user_ids: Iterable[str | None], field: str) -> None:
    """SpecError naming `field` unless every user named is one (None: none named)."""
    named = {u for u in user_ids if u is not None}
    if named and await store.existing(db, named) != named:
        raise SpecError(f"{field}: no user has this id; {HOW_TO_ADD}")


class UserOps(Records):
    kind = Kind("user", store.USERS, store.get, views.user)

    async def put(self, user_id: str, fields: dict[str, Any]) -> tuple[View, bool]:
        """Creates or replaces the user (what is left out takes its default)."""
        spec = parse_spec(UserSpec, {**fields, "id": user_id}, values=False)
        created = await store.upsert(self.ctx.db, spec, self.ctx.now())
        self.ctx.audit("created" if created else "replaced", "user", user_id)
        return await self.get(user_id), created

    async def remove(self, user_id: str) -> View:
        """Refused while the user owns connections, listings or accounts."""
        await store.remove(self.ctx.db, user_id)
        self.ctx.audit("removed", "user", user_id)
        return {"removed": user_id}

    async def sync(self, user_id: str, trigger: str) -> View:
        """Every active connection of the user. In the daemon it is coalesced with any other
        request for the same user not begun yet, and runs in the background: the answer is
        the run that will report it. Elsewhere it runs here and now: the answer is the run."""
        await self.get(user_id)
        if self.ctx.user_trigger is not None:
            outcome, run_id = await self.ctx.user_trigger(user_id, trigger)
            if outcome == "refused" or run_id is None:
                raise Unavailable("shutting down: no new syncs")
            self.ctx.audit("sync_requested", "user", user_id, run=run_id, outcome=outcome)
            return {"outcome": outcome, "run_id": run_id}
        report = await self.ctx.require_engine().sync_user(user_id, trigger)
        self.ctx.audit("synced", "user", user_id, run=report.run.id)
        return report_view(report)
