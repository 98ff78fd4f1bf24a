"""Syncing on demand, and the list of what only a person can do."""

from __future__ import annotations

from daemon.enums import AccountState, ConnectionState, PostStatus
from daemon.errors import Unavailable
from daemon.ops import views
from daemon.ops.context import Topic
from daemon.ops.queries import AccountQuery, ConnectionQuery, PostQuery
from daemon.ops.runs import RunOps, report_view
from daemon.ops.views import View
from daemon.ops.webhooks import endpoint_view
from daemon.store import accounts, connections, posts, webhooks
from daemon.store.paging import read

MANUAL_LIST_LIMIT = 10_000


class SyncOps(Topic):
    async def everything(self, trigger: str) -> View:
        """A full cycle. In the daemon it goes through the coordinator (coalesced with any
        other trigger; the cycle runs in the background) and the answer is the id of the run
        that will report it; elsewhere it runs here and now and the answer is the run."""
        if self.ctx.trigger is not None:
            outcome, run_id = await self.ctx.trigger(trigger)
            if outcome == "refused" or run_id is None:
                raise Unavailable("shutting down: no new cycles")
            self.ctx.audit("sync_requested", "run", run_id, outcome=outcome)
            return {"outcome": outcome, "run_id": run_id}
        report = await self.ctx.require_engine().sync_all(trigger)
        self.ctx.audit("synced", "run", report.run.id)
        # The run as the daemon's answer leads to it (GET /v1/runs/ID), and, known only to the
        # process that ran it, what happened to each post it tried and how many are still due.
        run = await RunOps(self.ctx).get(report.run.id)
        posts_done = report_view(report)
        return {**run, "posts": posts_done["posts"], "posts_due": posts_done["posts_due"]}

    async def connection(self, connection_id: str, trigger: str) -> View:
        report = await self.ctx.require_engine().sync_connection(connection_id, trigger)
        self.ctx.audit("synced", "mls_connection", connection_id, run=report.run.id)
        return report_view(report)

    async def manual_actions(self) -> View:
        """Posts to remove by hand, accounts and connections that need new credentials, and
        webhook endpoints that were disabled."""
        db = self.ctx.db
        to_remove = PostQuery(status=PostStatus.MANUAL_REQUIRED).filters()
        manual = await read(db, posts.POSTS, to_remove, None, MANUAL_LIST_LIMIT)
        reauth = AccountQuery(state=AccountState.NEEDS_REAUTH).filters()
        stuck_accounts = await read(db, accounts.ACCOUNTS, reauth, None, MANUAL_LIST_LIMIT)
        stuck_query = ConnectionQuery(state=ConnectionState.NEEDS_REAUTH).filters()
        stuck = await read(db, connections.CONNECTIONS, stuck_query, None, MANUAL_LIST_LIMIT)
        disabled = await webhooks.disabled(db, MANUAL_LIST_LIMIT)
        now = self.ctx.now()
        return {
            "posts_to_remove_by_hand": [views.post(p) for p in manual.rows],
            "accounts_to_reauthenticate": [views.account(a) for a in stuck_accounts.rows],
            "connections_to_reauthenticate": [views.connection(c) for c in stuck.rows],
            "webhook_endpoints_disabled": [endpoint_view(e, now) for e in disabled.rows],
            # Each list stops at MANUAL_LIST_LIMIT; the totals say whether it did.
            "totals": {
                "posts_to_remove_by_hand": manual.total,
                "accounts_to_reauthenticate": stuck_accounts.total,
                "connections_to_reauthenticate": stuck.total,
                "webhook_endpoints_disabled": disabled.total,
            },
        }
