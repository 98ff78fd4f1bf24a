"""Tracked listings: track, import, exclude, include, remove, read, sync one, unpublish one."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from daemon.errors import Conflict, NotFound, found
from daemon.ops import views
from daemon.ops.imports import (
    ImportFormat,
    ImportRefused,
    RowProblem,
    check_keys_free,
    check_rows,
    read_rows,
)
from daemon.ops.pages import Page, read_page
from daemon.ops.queries import PageQuery
from daemon.ops.records import Kind, Records
from daemon.ops.runs import report_view
from daemon.ops.users import HOW_TO_ADD, require_users
from daemon.ops.views import View
from daemon.specs import ListingSpec, SpecError, parse_spec
from daemon.store import connections
from daemon.store import listings as store
from daemon.store import users as user_store
from daemon.store.database import Database
from daemon.store.paging import read

# The audit trail a listing's own view carries; longer ones are read page by page.
TRAIL_IN_VIEW = 100


class ListingOps(Records):
    kind = Kind("listing", store.LISTINGS, store.get, views.listing)

    async def get(self, listing_id: str) -> View:
        """The listing with the start of its audit trail (`status_changes`)."""
        row = found(await store.get(self.ctx.db, listing_id), "listing")
        trail = await read(
            self.ctx.db, store.STATUS_CHANGES, {"listing_id": listing_id}, None, TRAIL_IN_VIEW
        )
        return {
            **views.listing(row),
            "status_changes": [views.status_change(c) for c in trail.rows],
        }

    async def history(self, listing_id: str, query: PageQuery) -> Page:
        await self.get(listing_id)
        return await read_page(
            self.ctx.db, store.STATUS_CHANGES, query, views.status_change, listing_id=listing_id
        )

    async def put(self, listing_id: str, fields: dict[str, Any]) -> tuple[View, bool]:
        """Tracks a listing, or re-points an existing id; its status is the MLS's to decide."""
        spec = parse_spec(ListingSpec, {**fields, "id": listing_id}, values=False)
        if await connections.get(self.ctx.db, spec.connection_id) is None:
            raise SpecError("connection_id: no MLS connection has this id (add it first)")
        await require_users(self.ctx.db, [spec.user_id], "user_id")
        owner = (await self._tracked([spec])).get((spec.connection_id, spec.listing_key))
        if owner not in (None, listing_id):
            raise Conflict(
                f"listing_key: listing {owner!r} tracks this key on this connection already: "
                "re-point that one, or remove it first"
            )
        existed = await store.get(self.ctx.db, listing_id) is not None
        await store.add_many(self.ctx.db, [spec], self.ctx.now())
        self.ctx.audit("replaced" if existed else "created", "listing", listing_id)
        return await self.get(listing_id), not existed

    async def import_text(self, text: str, form: ImportFormat, *, values: bool) -> View:
        """Every row checked first (ImportRefused names each bad one), then all written in
        one transaction."""
        known = {c.id for c in await connections.list_all(self.ctx.db)}
        rows = check_rows(read_rows(text, form, values), known, values)
        await check_users(self.ctx.db, rows)
        check_keys_free(rows, await self._tracked([spec for _, spec in rows]))
        specs = [spec for _, spec in rows]
        changed = await store.add_many(self.ctx.db, specs, self.ctx.now())
        self.ctx.audit("imported", "listing", "*", rows=len(specs), changed=changed)
        return {"rows": len(specs), "added_or_repointed": changed}

    async def _tracked(self, specs: Sequence[ListingSpec]) -> dict[tuple[str, str], str]:
        """Which listing tracks each of these keys now: (connection id, key) -> listing id."""
        keys: dict[str, builtins.list[str]] = {}
        for spec in specs:
            keys.setdefault(spec.connection_id, []).append(spec.listing_key)
        tracked: dict[tuple[str, str], str] = {}
        for connection_id, of_connection in keys.items():
            owners = await store.owners_of_keys(self.ctx.db, connection_id, of_connection)
            tracked.update({(connection_id, key): owner for key, owner in owners.items()})
        return tracked

    async def set_excluded(self, listing_id: str, excluded: bool) -> View:
        if not await store.set_excluded(self.ctx.db, listing_id, excluded, self.ctx.now()):
            raise NotFound("no listing has this id")
        self.ctx.audit("excluded" if excluded else "included", "listing", listing_id)
        return await self.get(listing_id)

    async def remove(self, listing_id: str, *, force: bool) -> View:
        """Refused while it has live posts, unless forced (store.listings.remove)."""
        live = await store.remove(self.ctx.db, listing_id, force, self.ctx.actor, self.ctx.now())
        self.ctx.audit("removed", "listing", listing_id, live_posts=live)
        return {"removed": listing_id, "live_posts_removed": live}

    async def sync(self, listing_id: str, trigger: str) -> View:
        """The manual sync of one listing: ask the MLS now, apply, report."""
        report, _ = await self.ctx.require_engine().sync_listing(listing_id, trigger)
        self.ctx.audit("synced", "listing", listing_id, run=report.run.id)
        return {"listing": await self.get(listing_id), **report_view(report)}

    async def unpublish(self, listing_id: str, trigger: str) -> View:
        """Every published post of the listing taken down now, whatever its status."""
        report = await self.ctx.require_engine().unpublish_listing(listing_id, trigger)
        self.ctx.audit("unpublished", "listing", listing_id, run=report.run.id)
        return report_view(report)


async def check_users(db: Database, rows: Sequence[tuple[int, ListingSpec]]) -> None:
    """ImportRefused naming each row whose user_id is no user."""
    named = {spec.user_id for _, spec in rows if spec.user_id is not None}
    users = await user_store.existing(db, named) if named else set()
    problems = [
        RowProblem(line, f"line {line}: user_id: no user has this id; {HOW_TO_ADD}")
        for line, spec in rows
        if spec.user_id is not None and spec.user_id not in users
    ]
    if problems:
        raise ImportRefused(problems)
