"""What every operation runs with: the database, the key, the engine, and who is asking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon import logs
from daemon.config import CheckIntervalSettings, WebhookSettings
from daemon.credentials import require_box
from daemon.encryption import SecretBox
from daemon.errors import Unavailable
from daemon.store.database import Database
from daemon.sync.engine import SyncEngine
from daemon.timestamps import iso, utcnow

# Asks the running daemon's coordinator for a full cycle: "started", "queued" or "refused",
# and the id of the run that will report it.
Trigger = Callable[[str], Awaitable[tuple[str, int | None]]]
# The same for a sync of one user's connections: (user id, trigger).
UserTrigger = Callable[[str, str], Awaitable[tuple[str, int | None]]]


@dataclass
class OpsContext:
    db: Database
    box: SecretBox | None
    engine: SyncEngine | None = None  # None where nothing may contact an MLS or a platform
    trigger: Trigger | None = None  # set in the daemon: full cycles go through its coordinator
    actor: str = "cli"  # who asks, for the audit line: "cli", or "token:NAME"
    clock: Callable[[], datetime] = field(default=utcnow)
    user_trigger: UserTrigger | None = None  # set in the daemon, as `trigger` is
    # As the daemon applies them (Settings.effective_webhooks): URL rules, timeouts, overlap.
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    # As the scheduled cycle applies them: what a connection's check tiers are shown as.
    check_intervals: CheckIntervalSettings = field(default_factory=CheckIntervalSettings)

    def now(self) -> str:
        return iso(self.clock())

    def encrypt(self, secret: str | None) -> str | None:
        if secret is None:
            return None
        return require_box(self.box).encrypt(secret)

    def require_engine(self) -> SyncEngine:
        if self.engine is None:
            raise Unavailable("this process cannot sync: no engine was opened for it")
        return self.engine

    def audit(self, action: str, kind: str, record_id: str | int, **facts: Any) -> None:
        """One line per write: what, which record, who asked. Never a secret: callers pass
        only ids, counts and flags."""
        logs.audit(action=action, record=kind, id=record_id, actor=self.actor, **facts)


class Topic:
    """One topic's operations (connections, listings...), all on the same context."""

    def __init__(self, ctx: OpsContext) -> None:
        self.ctx = ctx
