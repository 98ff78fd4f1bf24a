"""`Operations`: the one object both surfaces call, as procrastinate's CLI, shell and admin
all go through its JobManager. It holds one object per topic, each its own module with its
own rules; `Operations.on(ctx)` makes them run here, and the CLI's remote client makes the same
topics ask a running daemon instead (daemon/cli/remote.py)."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.ops.accounts import AccountOps
from daemon.ops.connections import ConnectionOps
from daemon.ops.context import OpsContext
from daemon.ops.events import EventOps
from daemon.ops.listings import ListingOps
from daemon.ops.posts import PostOps
from daemon.ops.runs import RunOps
from daemon.ops.sync import SyncOps
from daemon.ops.tokens import TokenOps
from daemon.ops.users import UserOps
from daemon.ops.webhooks import WebhookOps


@dataclass(frozen=True)
class Operations:
    connections: ConnectionOps
    listings: ListingOps
    accounts: AccountOps
    posts: PostOps
    runs: RunOps
    sync: SyncOps
    tokens: TokenOps
    webhooks: WebhookOps
    events: EventOps
    users: UserOps

    @classmethod
    def on(cls, ctx: OpsContext) -> Operations:
        """The operations run in this process, on `ctx`'s database."""
        return cls(
            ConnectionOps(ctx),
            ListingOps(ctx),
            AccountOps(ctx),
            PostOps(ctx),
            RunOps(ctx),
            SyncOps(ctx),
            TokenOps(ctx),
            WebhookOps(ctx),
            EventOps(ctx),
            UserOps(ctx),
        )
