"""The shapes /openapi.json gives for the API's answers (daemon/service/schemas.py) are the
views of real records: the same keys in the same order, values of the documented types, and
the same JSON once through the model. A view that gains, loses or reorders a key fails here
before any answer does."""

from __future__ import annotations

import json
from typing import Any

import anyio
from pydantic import BaseModel

from daemon.ops import queries
from daemon.ops.accounts import AccountTokens
from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.ops.pages import Page
from daemon.ops.views import View
from daemon.scopes import Scope
from daemon.service import schemas
from daemon.service.user_syncs import UserSyncs
from tests.helpers import STATIC_TOKEN, Live


def assert_shape(model: type[BaseModel], view: View) -> None:
    assert list(view) == list(model.model_fields), model.__name__
    as_json = json.loads(json.dumps(view))
    assert model.model_validate(view).model_dump(mode="json") == as_json, model.__name__


def assert_page(model: type[BaseModel], page: Page) -> None:
    """A page as the API answers it: with the `next` link the route adds."""
    assert_shape(schemas.Page[model], {**page.view(), "next": None})  # type: ignore[valid-type]
    assert page.items, model.__name__
    for item in page.items:
        assert_shape(model, item)


async def _world(live: Live) -> Operations:
    """A connection to the sandbox MLS, a listing about to sell with a post on Facebook, and
    one whose MLS status means nothing to mls-sync (a warning each sync)."""
    ops = Operations.on(OpsContext(live.rt.db, live.rt.box, live.rt.engine))
    live.mls.put("K1", "Active")
    live.mls.put("K2", "Not A Status")
    fields: dict[str, Any] = {"name": "M", "base_url": live.mls_url, "rate_per_second": 200.0}
    await ops.connections.put("mls-1", fields, STATIC_TOKEN)
    for listing_id, key in (("L-1", "K1"), ("L-2", "K2")):
        await ops.listings.put(listing_id, {"connection_id": "mls-1", "listing_key": key})
    await ops.users.put("agent-1", {"display_name": "A", "notify_events": ["listing.*"]})
    fb = {"user_id": "agent-1", "platform": "facebook"}
    tokens = AccountTokens(access_token="fb-token", client_secret="fb-client-secret")
    await ops.accounts.put("fb-page", fb, tokens)
    live.platforms.publish("facebook", "1093_441", "fb-token")
    post = {"listing_id": "L-1", "account_id": "fb-page", "platform_post_id": "1093_441"}
    await ops.posts.put("fb-L-1", post, values=False)
    live.mls.set_status("K1", "Closed")
    return ops


async def test_each_record_answered_has_the_documented_shape(live: Live) -> None:
    ops = await _world(live)
    report = await ops.sync.connection("mls-1", "test")
    assert report["posts"] and report["changes"]
    assert_shape(schemas.RunReport, report)
    for attempt in report["posts"]:
        assert_shape(schemas.PostAttempt, attempt)

    assert_shape(schemas.Connection, await ops.connections.get("mls-1"))
    listing = await ops.listings.get("L-1")
    assert listing["status_changes"]
    assert_shape(schemas.ListingDetail, listing)
    assert_shape(schemas.Account, await ops.accounts.get("fb-page"))
    assert_shape(schemas.User, await ops.users.get("agent-1"))
    assert_shape(schemas.Post, await ops.posts.get("fb-L-1"))
    run = await ops.runs.get(report["id"])
    assert run["problems"]
    assert_shape(schemas.RunDetail, run)
    assert_shape(schemas.ListingSynced, await ops.listings.sync("L-1", "test"))
    assert_shape(schemas.RunReport, await ops.listings.unpublish("L-1", "test"))
    assert_shape(schemas.RunReport, await ops.users.sync("default", "test"))


async def test_each_page_has_the_documented_shape(live: Live) -> None:
    ops = await _world(live)
    report = await ops.sync.connection("mls-1", "test")
    assert_page(schemas.Connection, await ops.connections.list(queries.ConnectionQuery()))
    assert_page(schemas.Listing, await ops.listings.list(queries.ListingQuery()))
    assert_page(schemas.StatusChange, await ops.listings.history("L-1", queries.PageQuery()))
    assert_page(schemas.Account, await ops.accounts.list(queries.AccountQuery()))
    assert_page(schemas.User, await ops.users.list(queries.PageQuery()))
    assert_page(schemas.Post, await ops.posts.list(queries.PostQuery()))
    assert_page(schemas.Run, await ops.runs.list(queries.RunQuery()))
    assert_page(schemas.RunError, await ops.runs.errors(report["id"], queries.RunErrorQuery()))


async def test_each_other_answer_has_the_documented_shape(live: Live) -> None:
    ops = await _world(live)
    await ops.sync.connection("mls-1", "test")
    manual = await ops.sync.manual_actions()
    assert_shape(schemas.ManualActions, manual)

    made, token = await ops.tokens.create("ci", Scope.READ)
    assert_shape(schemas.NewToken, {**made, "token": token})
    assert_shape(schemas.Tokens, {"items": await ops.tokens.list()})
    assert_shape(schemas.Token, await ops.tokens.revoke("ci"))

    csv = "id,connection_id,listing_key\nL-3,mls-1,K3\n"
    assert_shape(schemas.Imported, await ops.listings.import_text(csv, "csv", values=False))
    assert_shape(schemas.PostForgotten, await ops.posts.forget("fb-L-1", force=True))
    assert_shape(schemas.ListingRemoved, await ops.listings.remove("L-3", force=False))
    assert_shape(schemas.AccountRemoved, await ops.accounts.remove("fb-page"))
    assert_shape(schemas.UserRemoved, await ops.users.remove("agent-1"))
    removed = await ops.connections.remove("mls-1", with_listings=True, force=True)
    assert_shape(schemas.ConnectionRemoved, removed)


async def test_a_user_sync_asked_of_the_daemon_has_the_documented_shape(live: Live) -> None:
    """In the daemon a user's sync is asked for, not run: the answer names its run."""
    await _world(live)
    syncs = UserSyncs(live.rt.engine)
    async with anyio.create_task_group() as tg:
        tg.start_soon(syncs.run)
        ctx = OpsContext(live.rt.db, live.rt.box, live.rt.engine, user_trigger=syncs.request)
        asked = await Operations.on(ctx).users.sync("default", "test")
        await syncs.stop(10)
    assert_shape(schemas.UserSyncRequested, asked)
