"""A platform in the registry works end to end: the database keeps its accounts (the
migrations' CHECK lists it) and a sold listing loses its post on it, against the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.platforms.registry import PLATFORM_NAMES, REGISTRY
from daemon.sandbox.environment import CONNECTED_VIA
from daemon.specs import AccountSpec
from daemon.store import accounts, posts
from daemon.store.errors import IntegrityViolation
from daemon.store.sqlite import SqliteDatabase
from daemon.timestamps import iso, utcnow
from tests.helpers import Live, add_account, add_connection, add_post, track


@pytest.mark.parametrize("name", PLATFORM_NAMES)
async def test_the_database_keeps_an_account_on_every_registered_platform(
    tmp_path: Path, name: str
) -> None:
    """A platform added to the registry needs a migration that lets its name in."""
    db = await SqliteDatabase.open(tmp_path / "x.db")
    try:
        spec = AccountSpec.model_validate(
            {
                "id": "a1",
                "user_id": "u1",
                "platform": name,
                "connected_via": CONNECTED_VIA.get(name),
            }
        )
        await accounts.upsert(db, spec, "sealed-token", None, None, iso(utcnow()))
        row = await accounts.get(db, "a1")
    finally:
        await db.close()
    assert row is not None and row.platform == name


async def test_the_database_refuses_an_account_on_a_platform_not_registered(
    tmp_path: Path,
) -> None:
    """The CHECK constraint is what keeps the stored names and the registry's in step."""
    db = await SqliteDatabase.open(tmp_path / "x.db")
    params = {
        "id": "a1",
        "user_id": "u1",
        "platform": "myspace",
        "connected_via": None,
        "access_token": "sealed-token",
        "access_token_expires_at": None,
        "refresh_token": None,
        "refresh_token_expires_at": None,
        "client_id": None,
        "client_secret": None,
        "now": iso(utcnow()),
    }
    try:
        with pytest.raises(IntegrityViolation, match="CHECK"):
            await db.write_one(accounts.INSERT, params)
    finally:
        await db.close()


@pytest.mark.parametrize("name", PLATFORM_NAMES)
async def test_a_sold_listing_loses_its_post_on_every_registered_platform(
    live: Live, name: str
) -> None:
    """The runtime, the reconciler and the sandbox all take their platforms from the registry."""
    live.mls.put("K1", "Active")
    await add_connection(live.rt, live.mls_url)
    await track(live.rt, "mls-1", ["K1"])
    post_id = REGISTRY[name].post_id.numbered(1)
    await add_account(live.rt, "acct", name, "acct-token", connected_via=CONNECTED_VIA.get(name))
    live.platforms.publish(name, post_id, "acct-token")
    await add_post(live.rt, "p1", "L-K1", "acct", post_id)
    live.mls.set_status("K1", "Closed")

    await live.rt.engine.sync_all()

    row = await posts.get(live.rt.db, "p1")
    assert row is not None and row.status == "unpublished"
    assert not live.platforms.exists(post_id)
    assert live.platforms.successful_deletes[post_id] == 1
