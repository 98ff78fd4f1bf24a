"""The authenticated /v1 API: thin routes over the operations layer (daemon/ops/).

A route parses its path, query and body, calls `Operations`, and answers with the view it
returns. PUT is an idempotent upsert with ids chosen by the caller (201 when created, 200 when
updated). Collections are paged by cursor: `after` (the `next_after` of the page before) and
`limit`, with a `next` link and a Link header. Secrets are accepted, stored encrypted and
never returned. Each route names the schema of its answer (daemon/service/schemas.py) and the
problems it can answer with; errors are problem details (daemon/service/problems.py).
"""

from __future__ import annotations

from typing import Annotated, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import SecretStr

from daemon.errors import Unavailable
from daemon.ops import queries
from daemon.ops.accounts import AccountTokens
from daemon.ops.context import OpsContext
from daemon.ops.imports import ImportFormat
from daemon.ops.manager import Operations
from daemon.ops.pages import Page
from daemon.ops.views import View
from daemon.scopes import Scope, allows, needs
from daemon.service import schemas
from daemon.service.auth import Admin, Caller, Reader, Writer, service_state
from daemon.service.bodies import (
    AccountBody,
    AccountId,
    ConnectionBody,
    ConnectionId,
    ListingBody,
    ListingId,
    PostBody,
    PostId,
    RunId,
    TokenBody,
    TokenName,
)
from daemon.service.problems import (
    PROBLEM_RESPONSES,
    UnsupportedBody,
    declare_refusals,
    problem_responses,
)
from daemon.service.state import ServiceState
from daemon.specs import SpecError

QueryT = TypeVar("QueryT", bound=queries.PageQuery)
IMPORT_TYPES: dict[str, ImportFormat] = {
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
}
IMPORT_PATH = "/v1/listings/import"

# A collection's filters and page, read from the query string (daemon/ops/queries.py).
Q = Annotated[QueryT, Query()]
Force = Annotated[bool, Query(description="also when live posts would be forgotten")]


def _operations(request: Request, who: Caller) -> Operations:
    """The operations, on behalf of the caller (named in the audit log)."""
    state = service_state(request)
    rt = state.runtime
    ctx = OpsContext(
        rt.db,
        rt.box,
        rt.engine,
        state.coordinator.request,
        f"token:{who.name}",
        user_trigger=state.user_syncs.request,
        webhooks=state.settings.effective_webhooks(),
        check_intervals=state.settings.effective_check_intervals(),
    )
    return Operations.on(ctx)


def _read_ops(request: Request, who: Reader) -> Operations:
    return _operations(request, who)


def _write_ops(request: Request, who: Writer) -> Operations:
    return _operations(request, who)


def _admin_ops(request: Request, who: Admin) -> Operations:
    return _operations(request, who)


# Each route takes exactly one: reads need `read`, changes `write`, and credentials (which
# also covers a connection's URLs: a new base_url would carry its stored secret elsewhere),
# `admin` (docs/architecture.md).
ReadOps = Annotated[Operations, Depends(_read_ops)]
WriteOps = Annotated[Operations, Depends(_write_ops)]
AdminOps = Annotated[Operations, Depends(_admin_ops)]


def admin_routes(state: ServiceState) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["admin"], responses=PROBLEM_RESPONSES)

    # -- triggers --------------------------------------------------------------------------

    @router.post(
        "/sync",
        status_code=202,
        summary="Run a full sync now (coalesced with any other trigger)",
        response_model=schemas.SyncRequested,
    )
    async def sync_now(ops: WriteOps, response: Response) -> View:
        """The answer names the run that will report the cycle (`run_id`, and Location): a
        cycle asked for while one runs is coalesced into the one follow-up."""
        if state.shutting_down:
            raise Unavailable("shutting down: no new cycles")
        view = await ops.sync.everything("http")
        response.headers["Location"] = f"/v1/runs/{view['run_id']}"
        return view

    @router.post(
        "/mls-connections/{connection_id}/sync",
        summary="Sync one connection now, and answer with its run",
        response_model=schemas.RunReport,
        responses=problem_responses(404, 409),
    )
    async def sync_connection(connection_id: ConnectionId, ops: WriteOps) -> View:
        return await ops.sync.connection(connection_id, "http")

    @router.post(
        "/listings/{listing_id}/sync",
        summary="Sync one listing now (a manual sync)",
        response_model=schemas.ListingSynced,
        responses=problem_responses(404, 409),
    )
    async def sync_listing(listing_id: ListingId, ops: WriteOps) -> View:
        return await ops.listings.sync(listing_id, "http")

    @router.post(
        "/listings/{listing_id}/unpublish",
        summary="Take every published post of one listing down now",
        response_model=schemas.RunReport,
        responses=problem_responses(404),
    )
    async def unpublish_listing(listing_id: ListingId, ops: WriteOps) -> View:
        return await ops.listings.unpublish(listing_id, "http")

    # -- MLS connections -------------------------------------------------------------------

    @router.get(
        "/mls-connections",
        summary="List connections",
        response_model=schemas.Page[schemas.Connection],
    )
    async def list_connections(
        request: Request, response: Response, ops: ReadOps, query: Q[queries.ConnectionQuery]
    ) -> View:
        return paged(request, response, await ops.connections.list(query))

    @router.put(
        "/mls-connections/{connection_id}",
        summary="Create or replace a connection",
        response_model=schemas.Connection,
        responses={**schemas.created(schemas.Connection), **problem_responses(409)},
    )
    async def put_connection(
        connection_id: ConnectionId,
        body: ConnectionBody,
        response: Response,
        ops: AdminOps,
        check_metadata: Annotated[
            bool,
            Query(
                description="mode events: refuse (409) unless the server's $metadata declares "
                "the EntityEvent resource"
            ),
        ] = True,
    ) -> View:
        """409 when a connection in mode `events` has a server with no change log."""
        fields = body.model_dump(exclude={"secret"}, exclude_unset=True)
        secret = _plain(body.secret)
        view, created = await ops.connections.put(connection_id, fields, secret, check_metadata)
        response.status_code = 201 if created else 200
        return view

    @router.get(
        "/mls-connections/{connection_id}",
        response_model=schemas.ConnectionDetail,
        responses=problem_responses(404),
    )
    async def get_connection(connection_id: ConnectionId, ops: ReadOps) -> View:
        return await ops.connections.detail(connection_id)

    @router.delete(
        "/mls-connections/{connection_id}",
        summary="Remove a connection and its credential",
        response_model=schemas.ConnectionRemoved,
        responses=problem_responses(404, 409),
    )
    async def delete_connection(
        connection_id: ConnectionId,
        ops: AdminOps,
        with_listings: bool = False,
        force: Force = False,
    ) -> View:
        """409 while it tracks listings (unless with_listings), or while posts of its
        listings are still live (unless force)."""
        return await ops.connections.remove(connection_id, with_listings=with_listings, force=force)

    @router.post(
        "/mls-connections/{connection_id}/push-token",
        summary="A new push token for the MLS's pushes, shown once (one made before stops)",
        response_model=schemas.ConnectionWithPushToken,
        responses=problem_responses(404, 409),
    )
    async def make_push_token(connection_id: ConnectionId, ops: AdminOps) -> View:
        """409 unless the connection is in mode `events`."""
        view, token = await ops.connections.make_push_token(connection_id)
        return {**view, "push_token": token}

    @router.delete(
        "/mls-connections/{connection_id}/push-token",
        summary="Turn push off: the MLS's pushes are refused from now on",
        response_model=schemas.Connection,
        responses=problem_responses(404),
    )
    async def turn_push_off(connection_id: ConnectionId, ops: AdminOps) -> View:
        return await ops.connections.turn_push_off(connection_id)

    @router.post(
        "/mls-connections/{connection_id}/pause",
        response_model=schemas.Connection,
        responses=problem_responses(404),
    )
    async def pause(connection_id: ConnectionId, ops: WriteOps) -> View:
        return await ops.connections.pause(connection_id)

    @router.post(
        "/mls-connections/{connection_id}/resume",
        response_model=schemas.Connection,
        responses=problem_responses(404, 409),
    )
    async def resume(connection_id: ConnectionId, ops: WriteOps) -> View:
        return await ops.connections.resume(connection_id)

    # -- listings --------------------------------------------------------------------------

    @router.get(
        "/listings", summary="List tracked listings", response_model=schemas.Page[schemas.Listing]
    )
    async def list_listings(
        request: Request, response: Response, ops: ReadOps, query: Q[queries.ListingQuery]
    ) -> View:
        """`q` finds listings whose ListingKey contains it; `status=unknown` those the MLS
        has not answered for yet."""
        return paged(request, response, await ops.listings.list(query))

    @router.post(
        "/listings/import",
        summary="Track many listings: CSV (text/csv) or JSON lines (application/x-ndjson)",
        response_model=schemas.Imported,
        responses=problem_responses(415, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {
                        "schema": {"type": "string"},
                        "example": "id,connection_id,listing_key,status\nL-1,crmls,K-1,active\n",
                    },
                    "application/x-ndjson": {
                        "schema": {"type": "string"},
                        "example": '{"id": "L-1", "connection_id": "crmls", '
                        '"listing_key": "K-1"}\n',
                    },
                },
            }
        },
    )
    async def import_listings(request: Request, ops: WriteOps) -> View:
        """Every row is checked before any is written: one bad row and nothing is imported,
        with a 422 whose `errors` name each bad row by its line."""
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        form = IMPORT_TYPES.get(media)
        if form is None:
            raise UnsupportedBody(
                "send CSV as Content-Type: text/csv or JSON lines as application/x-ndjson"
            )
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError("the body is not UTF-8 text") from None
        return await ops.listings.import_text(text, form, values=False)

    @router.put(
        "/listings/{listing_id}",
        summary="Track a listing (its status is the MLS's)",
        response_model=schemas.ListingDetail,
        responses=schemas.created(schemas.ListingDetail),
    )
    async def put_listing(
        listing_id: ListingId, body: ListingBody, response: Response, ops: WriteOps
    ) -> View:
        view, created = await ops.listings.put(listing_id, body.model_dump(exclude_unset=True))
        response.status_code = 201 if created else 200
        return view

    @router.get(
        "/listings/{listing_id}",
        response_model=schemas.ListingDetail,
        responses=problem_responses(404),
    )
    async def get_listing(listing_id: ListingId, ops: ReadOps) -> View:
        """The listing with the first 100 rows of its audit trail (all: status-changes)."""
        return await ops.listings.get(listing_id)

    @router.get(
        "/listings/{listing_id}/status-changes",
        summary="A listing's audit trail, oldest first",
        response_model=schemas.Page[schemas.StatusChange],
        responses=problem_responses(404),
    )
    async def listing_history(
        listing_id: ListingId,
        request: Request,
        response: Response,
        ops: ReadOps,
        query: Q[queries.PageQuery],
    ) -> View:
        return paged(request, response, await ops.listings.history(listing_id, query))

    @router.delete(
        "/listings/{listing_id}",
        summary="Stop tracking a listing (its audit trail stays)",
        response_model=schemas.ListingRemoved,
        responses=problem_responses(404, 409),
    )
    async def delete_listing(
        listing_id: ListingId, ops: WriteOps, who: Writer, force: Force = False
    ) -> View:
        """409 while posts of the listing are live, unless force (which needs `admin`)."""
        _forcing_needs_admin(who, force)
        return await ops.listings.remove(listing_id, force=force)

    @router.post(
        "/listings/{listing_id}/exclude",
        response_model=schemas.ListingDetail,
        responses=problem_responses(404),
    )
    async def exclude(listing_id: ListingId, ops: WriteOps) -> View:
        return await ops.listings.set_excluded(listing_id, True)

    @router.post(
        "/listings/{listing_id}/include",
        response_model=schemas.ListingDetail,
        responses=problem_responses(404),
    )
    async def include(listing_id: ListingId, ops: WriteOps) -> View:
        return await ops.listings.set_excluded(listing_id, False)

    # -- platform accounts and posts ---------------------------------------------------------

    @router.get(
        "/platform-accounts",
        summary="List platform accounts",
        response_model=schemas.Page[schemas.Account],
    )
    async def list_accounts(
        request: Request, response: Response, ops: ReadOps, query: Q[queries.AccountQuery]
    ) -> View:
        return paged(request, response, await ops.accounts.list(query))

    @router.put(
        "/platform-accounts/{account_id}",
        summary="Create or update an account and its tokens",
        response_model=schemas.Account,
        responses={**schemas.created(schemas.Account), **problem_responses(409)},
    )
    async def put_account(
        account_id: AccountId, body: AccountBody, response: Response, ops: AdminOps
    ) -> View:
        secrets = {"access_token", "refresh_token", "client_secret"}
        tokens = AccountTokens(
            _plain(body.access_token), _plain(body.refresh_token), _plain(body.client_secret)
        )
        fields = body.model_dump(exclude=secrets, exclude_unset=True)
        view, created = await ops.accounts.put(account_id, fields, tokens)
        response.status_code = 201 if created else 200
        return view

    @router.get(
        "/platform-accounts/{account_id}",
        response_model=schemas.Account,
        responses=problem_responses(404),
    )
    async def get_account(account_id: AccountId, ops: ReadOps) -> View:
        return await ops.accounts.get(account_id)

    @router.delete(
        "/platform-accounts/{account_id}",
        summary="Remove an account and its tokens",
        response_model=schemas.AccountRemoved,
        responses=problem_responses(404, 409),
    )
    async def delete_account(account_id: AccountId, ops: AdminOps) -> View:
        """409 while posts still refer to it."""
        return await ops.accounts.remove(account_id)

    @router.get("/posts", summary="List posts", response_model=schemas.Page[schemas.Post])
    async def list_posts(
        request: Request, response: Response, ops: ReadOps, query: Q[queries.PostQuery]
    ) -> View:
        return paged(request, response, await ops.posts.list(query))

    @router.put(
        "/posts/{post_id}",
        summary="Record a published post",
        response_model=schemas.Post,
        responses={**schemas.created(schemas.Post), **problem_responses(409)},
    )
    async def put_post(post_id: PostId, body: PostBody, response: Response, ops: WriteOps) -> View:
        """422 naming what is wrong, or 409 while the id is published for another platform
        post."""
        view, created = await ops.posts.put(
            post_id, body.model_dump(exclude_unset=True), values=False
        )
        response.status_code = 201 if created else 200
        return view

    @router.get("/posts/{post_id}", response_model=schemas.Post, responses=problem_responses(404))
    async def get_post(post_id: PostId, ops: ReadOps) -> View:
        return await ops.posts.get(post_id)

    @router.delete(
        "/posts/{post_id}",
        summary="Forget a post's record",
        response_model=schemas.PostForgotten,
        responses=problem_responses(404, 409),
    )
    async def delete_post(
        post_id: PostId, ops: WriteOps, who: Writer, force: Force = False
    ) -> View:
        """409 while the post is live (published, or waiting for a person), unless force
        (which needs `admin`)."""
        _forcing_needs_admin(who, force)
        return await ops.posts.forget(post_id, force=force)

    @router.post(
        "/posts/{post_id}/removed-by-hand",
        summary="Say a person took the post down on its platform",
        response_model=schemas.Post,
        responses=problem_responses(404, 409),
    )
    async def removed_by_hand(post_id: PostId, ops: WriteOps) -> View:
        return await ops.posts.removed_by_hand(post_id)

    # -- API tokens ------------------------------------------------------------------------

    @router.get(
        "/tokens",
        summary="The API tokens (never the tokens themselves)",
        response_model=schemas.Tokens,
    )
    async def list_tokens(ops: AdminOps) -> View:
        return {"items": await ops.tokens.list()}

    @router.post(
        "/tokens",
        status_code=201,
        summary="Create a named token with a scope: the answer shows it, once",
        response_model=schemas.NewToken,
        responses=problem_responses(409),
    )
    async def create_token(body: TokenBody, ops: AdminOps) -> View:
        made, token = await ops.tokens.create(body.name, body.scope)
        return {**made, "token": token}

    @router.delete(
        "/tokens/{name}",
        summary="Revoke a token",
        response_model=schemas.Token,
        responses=problem_responses(404, 409),
    )
    async def revoke_token(name: TokenName, ops: AdminOps) -> View:
        return await ops.tokens.revoke(name)

    # -- history and what needs a person -------------------------------------------------------

    @router.get(
        "/runs", summary="The sync history, newest first", response_model=schemas.Page[schemas.Run]
    )
    async def list_runs(
        request: Request, response: Response, ops: ReadOps, query: Q[queries.RunQuery]
    ) -> View:
        return paged(request, response, await ops.runs.list(query))

    @router.get(
        "/runs/{run_id}", response_model=schemas.RunDetail, responses=problem_responses(404)
    )
    async def get_run(run_id: RunId, ops: ReadOps) -> View:
        """The run, its changes by kind and its first 50 problems (all: /errors)."""
        return await ops.runs.get(run_id)

    @router.get(
        "/runs/{run_id}/errors",
        response_model=schemas.Page[schemas.RunError],
        responses=problem_responses(404),
    )
    async def run_errors(
        run_id: RunId,
        request: Request,
        response: Response,
        ops: ReadOps,
        query: Q[queries.RunErrorQuery],
    ) -> View:
        return paged(request, response, await ops.runs.errors(run_id, query))

    @router.get(
        "/manual-actions", summary="What a person must do", response_model=schemas.ManualActions
    )
    async def manual_actions(ops: ReadOps) -> View:
        return await ops.sync.manual_actions()

    declare_refusals(router)
    return router


def _forcing_needs_admin(who: Caller, force: bool) -> None:
    """Forgetting a live post leaves it on its platform with nothing to take it down: with a
    `write` token, only refusals; forcing is an `admin`'s."""
    if force and not allows(who.scope, Scope.ADMIN):
        raise HTTPException(403, needs(Scope.ADMIN))


def paged(request: Request, response: Response, page: Page) -> View:
    """The page with a `next` link (the same query, `after` moved on) and a Link header."""
    view = page.view()
    view["next"] = None
    if page.next_after is not None:
        query = {**request.query_params, "after": page.next_after}
        nxt = f"{request.url.path}?{urlencode(query)}"
        view["next"] = nxt
        response.headers["Link"] = f'<{nxt}>; rel="next"'
    return view


def _plain(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
