"""Social posts of listings: record, read, forget, and what a person did by hand."""

from __future__ import annotations

from typing import Any

from daemon.errors import Conflict
from daemon.ops import views
from daemon.ops.records import Kind, Records
from daemon.ops.views import View
from daemon.specs import PostSpec, SpecError, check_post_id, parse_spec
from daemon.store import accounts, listings
from daemon.store import posts as store


class PostOps(Records):
    kind = Kind("post", store.POSTS, store.get, views.post)

    async def put(self, post_id: str, fields: dict[str, Any], *, values: bool) -> tuple[View, bool]:
        """Records a published post. Refused (SpecError) when its listing or account is
        unknown or its id has not its platform's form; refused (Conflict) while the id is
        recorded live for another platform post."""
        spec = parse_spec(PostSpec, {**fields, "id": post_id}, values=values)
        account = await accounts.get(self.ctx.db, spec.account_id)
        if account is None:
            raise SpecError(
                "account_id: no platform account has this id (add it first: "
                "`mls-sync accounts add`, or PUT /v1/platform-accounts/ID)"
            )
        if await listings.get(self.ctx.db, spec.listing_id) is None:
            raise SpecError(
                "listing_id: no listing has this id (add it first: `mls-sync listings add`, "
                "or PUT /v1/listings/ID)"
            )
        check_post_id(account.platform, spec.platform_post_id)
        created = await store.add(self.ctx.db, spec, self.ctx.now())
        self.ctx.audit("created" if created else "replaced", "post", post_id)
        return await self.get(post_id), created

    async def forget(self, post_id: str, *, force: bool) -> View:
        """Drops the record. A live post (published, or waiting for a person) is forgotten
        only when forced: its record is what takes it down when its listing sells."""
        was = await store.forget(self.ctx.db, post_id, force)
        self.ctx.audit("forgotten", "post", post_id, was=was.status)
        return {"removed": post_id, "was": was.status}

    async def removed_by_hand(self, post_id: str) -> View:
        """A person took the post down on its platform: it is unpublished from now on."""
        if not await store.mark_removed_by_hand(
            self.ctx.db, post_id, "removed by hand", self.ctx.now()
        ):
            raise Conflict(f"post {post_id!r} is already unpublished")
        self.ctx.audit("removed_by_hand", "post", post_id)
        return await self.get(post_id)
