"""The authenticated /v1 API: triggers, and the records the app keeps in step.

PUT is an idempotent upsert with ids chosen by the caller (201 when created, 200 when
updated). Secrets are accepted, stored encrypted and never returned. The bearer token is
compared in constant time; with no token configured the API is off and says so.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import SecretStr

from daemon.credentials import API_TOKEN_CREDENTIAL, API_TOKEN_ENV
from daemon.models import LocalStatus, is_publishable
from daemon.platforms.links import post_link
from daemon.service.state import ServiceState
from daemon.specs import (
    AccountFields,
    AccountSpec,
    ConnectionFields,
    ConnectionSpec,
    ListingFields,
    ListingSpec,
    PostFields,
    PostSpec,
    SpecError,
    parse_spec,
)
from daemon.store import accounts, connections, listings, posts, runs
from daemon.store.records import ListingRow, PostRow
from daemon.timestamps import iso, utcnow

API_OFF = (
    f"the /v1 API is off: no API token is configured (set {API_TOKEN_ENV} or "
    f"$CREDENTIALS_DIRECTORY/{API_TOKEN_CREDENTIAL})"
)


class ConnectionBody(ConnectionFields):
    secret: SecretStr | None = None  # bearer token or client secret; write-only


class AccountBody(AccountFields):
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    client_secret: SecretStr | None = None


def token_refusal(state: ServiceState, request: Request) -> HTTPException | None:
    """Why a /v1 request may not go on (no API configured, no or a wrong token), or None."""
    token = state.api_token
    if token is None:
        return HTTPException(503, API_OFF)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8"), token.value.encode("utf-8")
    )
    if not ok:
        return HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return None


def admin_routes(state: ServiceState) -> APIRouter:
    def authorized(request: Request) -> None:
        if refused := token_refusal(state, request):
            raise refused

    router = APIRouter(prefix="/v1", tags=["admin"], dependencies=[Depends(authorized)])
    db = state.runtime.db

    def box_encrypt(secret: SecretStr | None) -> str | None:
        return state.runtime.require_box().encrypt(secret.get_secret_value()) if secret else None

    def now() -> str:
        return iso(utcnow())

    # -- triggers --------------------------------------------------------------------------

    @router.post("/sync", status_code=202, summary="Run a full sync now (coalesced)")
    async def sync_now() -> dict[str, str]:
        outcome = state.coordinator.trigger("http")
        if outcome == "refused":
            raise HTTPException(503, "shutting down: no new cycles")
        return {"outcome": outcome}

    @router.post("/listings/{listing_id}/sync", summary="Sync one listing now")
    async def sync_listing(listing_id: str) -> dict[str, Any]:
        report, listing = await state.runtime.engine.sync_listing(listing_id, "http")
        return {
            "listing": _listing(listing),
            "run": asdict(report.run),
            "problems": [asdict(e) for e in report.errors],
            "posts": [
                {
                    "post_id": p.post_id,
                    "platform": p.platform,
                    "outcome": p.outcome_name,
                    "detail": p.detail,
                }
                for p in report.posts
            ],
        }

    # -- MLS connections -------------------------------------------------------------------

    @router.put("/mls-connections/{connection_id}", summary="Create or replace a connection")
    async def put_connection(
        connection_id: str, body: ConnectionBody, response: Response
    ) -> dict[str, Any]:
        spec = _valid(
            ConnectionSpec,
            {"id": connection_id, **body.model_dump(exclude={"secret"}, exclude_unset=True)},
        )
        created = await connections.upsert(db, spec, box_encrypt(body.secret), now())
        response.status_code = 201 if created else 200
        return await get_connection(connection_id)

    @router.get("/mls-connections/{connection_id}")
    async def get_connection(connection_id: str) -> dict[str, Any]:
        row = await connections.get(db, connection_id)
        if row is None:
            raise HTTPException(404, f"no MLS connection {connection_id!r}")
        return row.public()

    @router.delete("/mls-connections/{connection_id}")
    async def delete_connection(
        connection_id: str, with_listings: bool = False, force: bool = False
    ) -> dict[str, Any]:
        """409 while it tracks listings (unless with_listings), or while posts of its
        listings are still live (unless force)."""
        removed = await connections.remove(db, connection_id, with_listings, force)
        return {
            "removed": connection_id,
            "listings_removed": removed.listings,
            "live_posts_removed": removed.live_posts,
        }

    async def _set_state(connection_id: str, new_state: str) -> dict[str, Any]:
        row = await connections.get(db, connection_id)
        if row is None:
            raise HTTPException(404, f"no MLS connection {connection_id!r}")
        if new_state == "active" and row.state == "needs_reauth":
            raise HTTPException(
                409,
                "the connection needs re-authentication: PUT it with a "
                "new secret, which re-activates it",
            )
        await connections.set_state(db, connection_id, new_state, None, now())
        return await get_connection(connection_id)

    @router.post("/mls-connections/{connection_id}/pause")
    async def pause(connection_id: str) -> dict[str, Any]:
        return await _set_state(connection_id, "paused")

    @router.post("/mls-connections/{connection_id}/resume")
    async def resume(connection_id: str) -> dict[str, Any]:
        return await _set_state(connection_id, "active")

    # -- listings --------------------------------------------------------------------------

    @router.put("/listings/{listing_id}", summary="Track a listing (its status is the MLS's)")
    async def put_listing(
        listing_id: str, body: ListingFields, response: Response
    ) -> dict[str, Any]:
        spec = _valid(ListingSpec, {"id": listing_id, **body.model_dump(exclude_unset=True)})
        if await connections.get(db, spec.connection_id) is None:
            raise HTTPException(422, _unknown("connection_id", "MLS connection", "mls-connections"))
        existed = await listings.get(db, listing_id) is not None
        await listings.add_many(db, [spec], now())
        response.status_code = 200 if existed else 201
        return await get_listing(listing_id)

    @router.get("/listings/{listing_id}")
    async def get_listing(listing_id: str) -> dict[str, Any]:
        row = await listings.get(db, listing_id)
        if row is None:
            raise HTTPException(404, f"no listing {listing_id!r}")
        out = _listing(row)
        out["status_changes"] = [asdict(c) for c in await listings.history(db, listing_id)]
        return out

    async def _exclude(listing_id: str, excluded: bool) -> dict[str, Any]:
        if not await listings.set_excluded(db, listing_id, excluded, now()):
            raise HTTPException(404, f"no listing {listing_id!r}")
        return await get_listing(listing_id)

    @router.post("/listings/{listing_id}/exclude")
    async def exclude(listing_id: str) -> dict[str, Any]:
        return await _exclude(listing_id, True)

    @router.post("/listings/{listing_id}/include")
    async def include(listing_id: str) -> dict[str, Any]:
        return await _exclude(listing_id, False)

    # -- platform accounts and posts ---------------------------------------------------------

    @router.put("/platform-accounts/{account_id}")
    async def put_account(account_id: str, body: AccountBody, response: Response) -> dict[str, Any]:
        spec = _valid(
            AccountSpec,
            {
                "id": account_id,
                **body.model_dump(
                    exclude={"access_token", "refresh_token", "client_secret"}, exclude_unset=True
                ),
            },
        )
        created = await accounts.upsert(
            db,
            spec,
            box_encrypt(body.access_token),
            box_encrypt(body.refresh_token),
            box_encrypt(body.client_secret),
            now(),
        )
        response.status_code = 201 if created else 200
        return await get_account(account_id)

    @router.get("/platform-accounts/{account_id}")
    async def get_account(account_id: str) -> dict[str, Any]:
        row = await accounts.get(db, account_id)
        if row is None:
            raise HTTPException(404, f"no platform account {account_id!r}")
        return row.public()

    @router.put("/posts/{post_id}", summary="Record a published post")
    async def put_post(post_id: str, body: PostFields, response: Response) -> dict[str, Any]:
        """422 naming what is wrong (SpecError), or 409 while the id is published for another
        platform post (PostStillLive)."""
        spec = _valid(PostSpec, {"id": post_id, **body.model_dump(exclude_unset=True)})
        created = await posts.record(db, spec, now())
        response.status_code = 201 if created else 200
        return await get_post(post_id)

    @router.get("/posts/{post_id}")
    async def get_post(post_id: str) -> dict[str, Any]:
        row = await posts.get(db, post_id)
        if row is None:
            raise HTTPException(404, f"no post {post_id!r}")
        return _post(row)

    # -- history and what needs a person -------------------------------------------------------

    @router.get("/runs")
    async def list_runs(limit: int = Query(20, ge=1, le=1000)) -> list[dict[str, Any]]:
        return [asdict(r) for r in await runs.recent(db, limit)]

    @router.get("/runs/{run_id}")
    async def get_run(run_id: int) -> dict[str, Any]:
        row = await runs.get(db, run_id)
        if row is None:
            raise HTTPException(404, f"no run {run_id}")
        return {**asdict(row), "problems": [asdict(e) for e in await runs.errors_of(db, run_id)]}

    @router.get("/manual-actions", summary="What a person must do")
    async def manual_actions() -> dict[str, Any]:
        return {
            "posts_to_remove_by_hand": [
                _post(p) for p in await posts.list_some(db, None, "manual_required", 10_000)
            ],
            "accounts_to_reauthenticate": [
                a.public() for a in await accounts.list_all(db) if a.state == "needs_reauth"
            ],
            "connections_to_reauthenticate": [
                c.public() for c in await connections.list_all(db) if c.state == "needs_reauth"
            ],
        }

    return router


def _valid(model: Any, data: dict[str, Any]) -> Any:
    """The path's id and the body, validated together; a 422 names what is wrong, without
    the values given."""
    try:
        return parse_spec(model, data, values=False)
    except SpecError as exc:
        raise HTTPException(422, str(exc)) from None


def _unknown(field: str, record: str, route: str) -> str:
    """A body's reference to a missing record, named by its field and not its value: an answer
    never repeats a body (the value may be a secret pasted into the wrong field)."""
    return f"{field}: no {record} has this id (PUT /v1/{route}/ID first)"


def _listing(row: ListingRow) -> dict[str, Any]:
    out = asdict(row)
    out["publishable"] = is_publishable(LocalStatus(row.status) if row.status else None)
    return out


def _post(row: PostRow) -> dict[str, Any]:
    out = asdict(row)
    out["link"] = post_link(row.platform or "", row.platform_post_id, row.permalink)
    return out
