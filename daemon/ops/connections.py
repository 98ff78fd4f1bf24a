"""MLS connections: define, replace, pause, resume, remove, and read them."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from daemon.config import CheckIntervalSettings
from daemon.enums import ConnectionState, QueryMode
from daemon.errors import Conflict
from daemon.mls.errors import MlsError
from daemon.mls.query import ENTITY_EVENT
from daemon.ops import push, views
from daemon.ops.records import Kind, Records
from daemon.ops.users import require_users
from daemon.ops.views import View
from daemon.specs import ConnectionSpec, parse_spec
from daemon.store import connections as store
from daemon.store import listings
from daemon.store.database import Database
from daemon.store.records import ConnectionRow
from daemon.sync import check_tiers


class ConnectionOps(Records):
    kind = Kind("MLS connection", store.CONNECTIONS, store.get, views.connection)

    async def put(
        self,
        connection_id: str,
        fields: dict[str, Any],
        secret: str | None,
        check_metadata: bool = True,
    ) -> tuple[View, bool]:
        """Creates or replaces the definition. A new connection needs its credential; an
        existing one keeps its own unless a new one is given, which also re-activates it
        after a refusal (needs_reauth). A connection that comes to mode events (new, another
        mode before, or another server) is refused unless its server's $metadata declares
        the EntityEvent resource (`check_metadata` off skips the question). Returns the
        connection and whether it is new."""
        spec = parse_spec(ConnectionSpec, {**fields, "id": connection_id}, values=False)
        await require_users(self.ctx.db, [spec.user_id], "user_id")
        existing = await store.get(self.ctx.db, connection_id)
        if secret is None and existing is None:
            raise Conflict(
                f"connection {connection_id!r} is new: its credential is required "
                "(--secret-env NAME or --secret-file PATH; `secret` over HTTP)"
            )
        encrypted = self.ctx.encrypt(secret)
        comes_to_events = spec.mode is QueryMode.EVENTS and (
            existing is None or existing.mode != spec.mode or existing.base_url != spec.base_url
        )
        if comes_to_events and check_metadata and self.ctx.engine is not None:
            stored = encrypted or (existing.secret_encrypted if existing else "")
            await self._require_change_log(store.candidate(spec, stored, self.ctx.now()))
        created = await store.upsert(self.ctx.db, spec, encrypted, self.ctx.now())
        self.ctx.audit(
            "created" if created else "replaced",
            "mls_connection",
            connection_id,
            new_auth=secret is not None,
        )
        return await self.get(connection_id), created

    async def _require_change_log(self, row: ConnectionRow) -> None:
        """Mode events reads the server's change log: refused (nothing stored) unless its
        $metadata declares the EntityEvent resource."""
        assert self.ctx.engine is not None
        client = self.ctx.engine.access.client_for(row, lambda: None)
        try:
            resources = await client.resources()
        except MlsError as exc:
            raise Conflict(
                f"mode events: cannot read the $metadata of connection {row.id!r}'s server to "
                f"see whether it keeps a change log ({exc}); fix the connection, or add it "
                "without the check (--no-metadata-check; check_metadata=false over HTTP)"
            ) from None
        if ENTITY_EVENT not in resources:
            raise Conflict(
                f"mode events: the $metadata of connection {row.id!r}'s server declares no "
                f"{ENTITY_EVENT} resource, so it keeps no change log to read; use mode by_key "
                "(or incremental)"
            )

    async def detail(self, connection_id: str) -> View:
        """The connection, and for by_key ones its listings by check tier (docs/mls-reso.md
        "Check tiers")."""
        out = await self.get(connection_id)
        out["check_tiers"] = None
        if out["mode"] == QueryMode.BY_KEY:
            out["check_tiers"] = await tiers_shown(
                self.ctx.db, self.ctx.check_intervals, self.ctx.clock(), connection_id
            )
        return out

    async def listings_by_status(self, connection_ids: list[str]) -> dict[str, dict[str, int]]:
        """Per connection (a page of them), its listings by status."""
        return await listings.count_by_status_in(self.ctx.db, connection_ids)

    async def pause(self, connection_id: str) -> View:
        await self.get(connection_id)
        await store.set_state(
            self.ctx.db, connection_id, ConnectionState.PAUSED, None, self.ctx.now()
        )
        self.ctx.audit("paused", "mls_connection", connection_id)
        return await self.get(connection_id)

    async def resume(self, connection_id: str) -> View:
        if (await self.get(connection_id))["state"] == ConnectionState.NEEDS_REAUTH:
            raise Conflict(
                f"connection {connection_id!r} needs re-authentication: give it new "
                "credentials (`mls-sync connections add` with the same --id, or PUT it with a "
                "new secret), which re-activates it"
            )
        await store.set_state(
            self.ctx.db, connection_id, ConnectionState.ACTIVE, None, self.ctx.now()
        )
        self.ctx.audit("resumed", "mls_connection", connection_id)
        return await self.get(connection_id)

    async def make_push_token(self, connection_id: str) -> tuple[View, str]:
        """A new push token (docs/mls-reso.md "Push"), returned once: the MLS sends it with
        its pushes. One made before stops working at once."""
        if (await self.get(connection_id))["mode"] != QueryMode.EVENTS:
            raise Conflict(
                f"connection {connection_id!r} is not in mode 'events': push is for that mode, "
                "whose poll of the change log catches what a push missed; change its mode first"
            )
        token = push.new_push_token()
        sha256 = push.push_token_sha256(token)
        await store.set_push_token(self.ctx.db, connection_id, sha256, self.ctx.now())
        self.ctx.audit("push_token_made", "mls_connection", connection_id)
        return await self.get(connection_id), token

    async def turn_push_off(self, connection_id: str) -> View:
        """No push token: the MLS's pushes are refused (401) from now on."""
        await self.get(connection_id)
        await store.set_push_token(self.ctx.db, connection_id, None, self.ctx.now())
        self.ctx.audit("push_turned_off", "mls_connection", connection_id)
        return await self.get(connection_id)

    async def remove(self, connection_id: str, *, with_listings: bool, force: bool) -> View:
        """Refused while it tracks listings (unless with_listings) or while posts of its
        listings are live (unless force): see store.connections.remove."""
        removed = await store.remove(
            self.ctx.db, connection_id, with_listings, self.ctx.actor, self.ctx.now(), force
        )
        self.ctx.audit(
            "removed",
            "mls_connection",
            connection_id,
            listings=removed.listings,
            live_posts=removed.live_posts,
        )
        return {
            "removed": connection_id,
            "listings_removed": removed.listings,
            "live_posts_removed": removed.live_posts,
        }


async def tiers_shown(
    db: Database, settings: CheckIntervalSettings, now: datetime, connection_id: str | None = None
) -> dict[str, dict[str, Any]] | None:
    """The listings of the active by_key connections (of one, if given) by check tier: how
    many, how often asked, when next due (docs/mls-reso.md "Check tiers"); None with the
    tiers off. For a connection's detail, and for /status."""
    if not settings.enabled:
        return None
    groups = await listings.tier_groups(db, check_tiers.recent_from(now, settings), connection_id)
    summary = check_tiers.summarize(groups, now, settings)
    return {name: asdict(tier) for name, tier in summary.items()}
