"""`Operations`: the one object both surfaces call, as procrastinate's CLI, shell and admin
all go through its JobManager. It holds nothing but the context; each topic is its own module
with its own rules."""

from __future__ import annotations

from daemon.ops.accounts import AccountOps
from daemon.ops.connections import ConnectionOps
from daemon.ops.context import OpsContext
from daemon.ops.listings import ListingOps
from daemon.ops.posts import PostOps
from daemon.ops.runs import RunOps
from daemon.ops.sync import SyncOps
from daemon.ops.tokens import TokenOps


class Operations:
    def __init__(self, ctx: OpsContext) -> None:
        self.ctx = ctx
        self.connections = ConnectionOps(ctx)
        self.listings = ListingOps(ctx)
        self.accounts = AccountOps(ctx)
        self.posts = PostOps(ctx)
        self.runs = RunOps(ctx)
        self.sync = SyncOps(ctx)
        self.tokens = TokenOps(ctx)
