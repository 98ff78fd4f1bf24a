"""The operations of a running daemon, over its /v1 API: what `mls-sync --api URL` calls.

Each topic subclasses the local one and asks the daemon instead, so every command is written
once against `Operations` and prints the same whichever it is given. A problem answer becomes
the error the local operation would have raised, with the daemon's words.
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from daemon.errors import SYNC_REFUSED, Conflict, Gone, NotFound, Unavailable
from daemon.ops import queries
from daemon.ops.accounts import AccountOps, AccountTokens
from daemon.ops.connections import ConnectionOps
from daemon.ops.events import EventOps
from daemon.ops.imports import ImportFormat, ImportRefused, RowProblem
from daemon.ops.listings import ListingOps
from daemon.ops.manager import Operations
from daemon.ops.pages import Page
from daemon.ops.posts import PostOps
from daemon.ops.runs import RunOps
from daemon.ops.sync import SyncOps
from daemon.ops.tokens import TokenOps
from daemon.ops.users import UserOps
from daemon.ops.views import View
from daemon.ops.webhooks import EndpointSpec, WebhookOps
from daemon.scopes import Scope
from daemon.specs import SpecError
from daemon.store.events import Waiter
from daemon.sync.engine import SyncRefused

IMPORT_TYPES: dict[ImportFormat, str] = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


class DaemonUnreachable(Unavailable):
    """No answer from the daemon's address."""


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        content: str | None = None,
        content_type: str | None = None,
    ) -> tuple[int, View]:
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            answer = await self.client.request(
                method, path, params=query, json=body, content=content, headers=headers
            )
        except httpx.TransportError as exc:
            raise DaemonUnreachable(
                f"no answer from the daemon at {self.client.base_url} "
                f"({type(exc).__name__}): is it running, and is --api (MLS_SYNC_API_URL) right?"
            ) from None
        if answer.status_code >= 400:
            raise _refusal(answer)
        view = answer.json()
        if not isinstance(view, dict):
            raise Unavailable(f"the daemon answered {method} {path} with no JSON object")
        return answer.status_code, view

    async def view(self, method: str, path: str, **options: Any) -> View:
        return (await self.call(method, path, **options))[1]

    async def page(self, path: str, query: queries.PageQuery) -> Page:
        _, view = await self.call("GET", path, params=query.params())
        return Page(view["items"], view["total"], view["next_after"])


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _refusal(answer: httpx.Response) -> Exception:
    try:
        body = answer.json()
        detail = str(body.get("detail", ""))
    except ValueError:
        body, detail = {}, answer.text[:200]
    status = answer.status_code
    if status == 404:
        return NotFound(detail)
    if status == 410:
        return Gone(detail)
    if status == 409:
        return SyncRefused(detail) if body.get("type") == SYNC_REFUSED else Conflict(detail)
    if status == 422 and body.get("errors"):
        return ImportRefused([RowProblem(e["line"], e["message"]) for e in body["errors"]])
    if status in (415, 422):
        return SpecError(detail)
    if status in (401, 403):
        return Unavailable(f"the daemon refused the token ({status}): {detail}")
    return Unavailable(f"the daemon answered {status}: {detail}")


class Remote:
    """A topic of operations that asks the daemon (the first base of each remote topic)."""

    def __init__(self, api: Api) -> None:
        self.api = api


class RemoteRecords(Remote):
    """A topic of records the daemon lists and reads at `path`."""

    path: ClassVar[str]

    async def list(self, query: queries.PageQuery) -> Page:
        return await self.api.page(self.path, query)

    async def get(self, record_id: str) -> View:
        return await self.api.view("GET", f"{self.path}/{_id(record_id)}")


def _id(value: str) -> str:
    return quote(value, safe="")


class RemoteConnections(RemoteRecords, ConnectionOps):
    path = "/v1/mls-connections"

    async def put(
        self,
        connection_id: str,
        fields: dict[str, Any],
        secret: str | None,
        check_metadata: bool = True,
    ) -> tuple[View, bool]:
        body = {**fields, **({"secret": secret} if secret is not None else {})}
        status, view = await self.api.call(
            "PUT",
            f"/v1/mls-connections/{_id(connection_id)}",
            params={"check_metadata": None if check_metadata else False},
            body=body,
        )
        return view, status == 201

    async def detail(self, connection_id: str) -> View:
        return await self.get(connection_id)  # the API's answer is the detail

    async def pause(self, connection_id: str) -> View:
        return await self.api.view("POST", f"/v1/mls-connections/{_id(connection_id)}/pause")

    async def resume(self, connection_id: str) -> View:
        path = f"/v1/mls-connections/{_id(connection_id)}/resume"
        return await self.api.view("POST", path)

    async def make_push_token(self, connection_id: str) -> tuple[View, str]:
        path = f"/v1/mls-connections/{_id(connection_id)}/push-token"
        made = await self.api.view("POST", path)
        return made, str(made.pop("push_token"))

    async def turn_push_off(self, connection_id: str) -> View:
        path = f"/v1/mls-connections/{_id(connection_id)}/push-token"
        return await self.api.view("DELETE", path)

    async def remove(self, connection_id: str, *, with_listings: bool, force: bool) -> View:
        params = {"with_listings": with_listings, "force": force}
        path = f"/v1/mls-connections/{_id(connection_id)}"
        return await self.api.view("DELETE", path, params=params)


class RemoteListings(RemoteRecords, ListingOps):
    path = "/v1/listings"

    async def history(self, listing_id: str, query: queries.PageQuery) -> Page:
        return await self.api.page(f"/v1/listings/{_id(listing_id)}/status-changes", query)

    async def put(self, listing_id: str, fields: dict[str, Any]) -> tuple[View, bool]:
        status, view = await self.api.call("PUT", f"/v1/listings/{_id(listing_id)}", body=fields)
        return view, status == 201

    async def import_text(self, text: str, form: ImportFormat, *, values: bool) -> View:
        path = "/v1/listings/import"
        return await self.api.view("POST", path, content=text, content_type=IMPORT_TYPES[form])

    async def set_excluded(self, listing_id: str, excluded: bool) -> View:
        verb = "exclude" if excluded else "include"
        return await self.api.view("POST", f"/v1/listings/{_id(listing_id)}/{verb}")

    async def remove(self, listing_id: str, *, force: bool) -> View:
        path = f"/v1/listings/{_id(listing_id)}"
        return await self.api.view("DELETE", path, params={"force": force})

    async def sync(self, listing_id: str, trigger: str) -> View:
        return await self.api.view("POST", f"/v1/listings/{_id(listing_id)}/sync")

    async def unpublish(self, listing_id: str, trigger: str) -> View:
        return await self.api.view("POST", f"/v1/listings/{_id(listing_id)}/unpublish")


class RemoteAccounts(RemoteRecords, AccountOps):
    path = "/v1/platform-accounts"

    async def put(
        self, account_id: str, fields: dict[str, Any], tokens: AccountTokens
    ) -> tuple[View, bool]:
        given = {k: v for k, v in vars(tokens).items() if v is not None}
        path = f"/v1/platform-accounts/{_id(account_id)}"
        status, view = await self.api.call("PUT", path, body={**fields, **given})
        return view, status == 201

    async def remove(self, account_id: str) -> View:
        return await self.api.view("DELETE", f"/v1/platform-accounts/{_id(account_id)}")


class RemotePosts(RemoteRecords, PostOps):
    path = "/v1/posts"

    async def put(self, post_id: str, fields: dict[str, Any], *, values: bool) -> tuple[View, bool]:
        status, view = await self.api.call("PUT", f"/v1/posts/{_id(post_id)}", body=fields)
        return view, status == 201

    async def forget(self, post_id: str, *, force: bool) -> View:
        path = f"/v1/posts/{_id(post_id)}"
        return await self.api.view("DELETE", path, params={"force": force})

    async def removed_by_hand(self, post_id: str) -> View:
        return await self.api.view("POST", f"/v1/posts/{_id(post_id)}/removed-by-hand")


class RemoteRuns(Remote, RunOps):
    async def list(self, query: queries.RunQuery) -> Page:
        return await self.api.page("/v1/runs", query)

    async def get(self, run_id: int) -> View:
        return await self.api.view("GET", f"/v1/runs/{run_id}")

    async def errors(self, run_id: int, query: queries.RunErrorQuery) -> Page:
        return await self.api.page(f"/v1/runs/{run_id}/errors", query)


class RemoteSync(Remote, SyncOps):
    async def everything(self, trigger: str) -> View:
        return await self.api.view("POST", "/v1/sync")

    async def connection(self, connection_id: str, trigger: str) -> View:
        return await self.api.view("POST", f"/v1/mls-connections/{_id(connection_id)}/sync")

    async def manual_actions(self) -> View:
        return await self.api.view("GET", "/v1/manual-actions")


class RemoteTokens(Remote, TokenOps):
    async def create(self, name: str, scope: Scope) -> tuple[View, str]:
        made = await self.api.view("POST", "/v1/tokens", body={"name": name, "scope": scope})
        return made, str(made.pop("token"))

    async def list(self) -> list[View]:
        return list((await self.api.view("GET", "/v1/tokens"))["items"])

    async def revoke(self, name: str) -> View:
        return await self.api.view("DELETE", f"/v1/tokens/{_id(name)}")


class RemoteWebhooks(Remote, WebhookOps):
    path = "/v1/webhooks"

    async def create(self, spec: EndpointSpec) -> tuple[View, str]:
        body = {
            "url": spec.url,
            "event_types": list(spec.event_types),
            "user_id": spec.user_id,
            "description": spec.description,
            "after_event": spec.after_event,
        }
        return _with_secret(await self.api.view("POST", self.path, body=body))

    async def list(self) -> list[View]:
        return list((await self.api.view("GET", self.path))["items"])

    async def get(self, endpoint_id: int) -> View:
        return await self.api.view("GET", f"{self.path}/{endpoint_id}")

    async def remove(self, endpoint_id: int) -> View:
        return await self.api.view("DELETE", f"{self.path}/{endpoint_id}")

    async def enable(self, endpoint_id: int) -> View:
        return await self.api.view("POST", f"{self.path}/{endpoint_id}/enable")

    async def disable(self, endpoint_id: int) -> View:
        return await self.api.view("POST", f"{self.path}/{endpoint_id}/disable")

    async def rotate_secret(self, endpoint_id: int) -> tuple[View, str]:
        path = f"{self.path}/{endpoint_id}/rotate-secret"
        return _with_secret(await self.api.view("POST", path))

    async def deliveries(
        self, endpoint_id: int, before: int | None = None, limit: int = 100
    ) -> builtins.list[View]:
        params = {"before": before, "limit": limit}
        path = f"{self.path}/{endpoint_id}/deliveries"
        return list((await self.api.view("GET", path, params=params))["items"])

    async def attempts(self, delivery_id: int) -> View:
        return await self.api.view("GET", f"/v1/webhook-deliveries/{delivery_id}")

    async def replay(self, delivery_id: int) -> View:
        return await self.api.view("POST", f"/v1/webhook-deliveries/{delivery_id}/replay")


def _with_secret(made: View) -> tuple[View, str]:
    """The endpoint as the local operation returns it, and the secret its answer showed."""
    secret = str(made["secret"])
    return {**made, "secret": "<set>"}, secret


class RemoteEvents(Remote, EventOps):
    async def feed(self, query: queries.EventQuery, wait_after: Waiter | None = None) -> View:
        # A long poll is held for up to a minute: well within the client's timeout.
        return await self.api.view("GET", "/v1/events", params=query.params())


class RemoteUsers(RemoteRecords, UserOps):
    path = "/v1/users"

    async def put(self, user_id: str, fields: dict[str, Any]) -> tuple[View, bool]:
        status, view = await self.api.call("PUT", f"/v1/users/{_id(user_id)}", body=fields)
        return view, status == 201

    async def remove(self, user_id: str) -> View:
        return await self.api.view("DELETE", f"/v1/users/{_id(user_id)}")

    async def sync(self, user_id: str, trigger: str) -> View:
        return await self.api.view("POST", f"/v1/users/{_id(user_id)}/sync")


def remote_operations(client: httpx.AsyncClient) -> Operations:
    """The operations of the daemon `client` talks to."""
    api = Api(client)
    return Operations(
        RemoteConnections(api),
        RemoteListings(api),
        RemoteAccounts(api),
        RemotePosts(api),
        RemoteRuns(api),
        RemoteSync(api),
        RemoteTokens(api),
        RemoteWebhooks(api),
        RemoteEvents(api),
        RemoteUsers(api),
    )
