"""The filters of the listings' list, on both databases (GET /v1/listings, `mls-sync
listings list`): each one narrows what is shown, and only by what it says."""

from __future__ import annotations

import pytest

from daemon.composition import Runtime
from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.ops.queries import ListingQuery
from daemon.store import listings
from daemon.timestamps import iso, utcnow
from tests.helpers import add_connection, track

pytestmark = pytest.mark.both_databases


async def _shown(ops: Operations, query: ListingQuery) -> list[str]:
    return [item["listing_key"] for item in (await ops.listings.list(query)).items]


async def test_the_excluded_filter_shows_the_excluded_listings_or_the_others(
    runtime: Runtime,
) -> None:
    await add_connection(runtime, "http://127.0.0.1:9")
    await track(runtime, "mls-1", ["KEEP-1", "SKIP-1", "KEEP-2"])
    await listings.set_excluded(runtime.db, "L-SKIP-1", True, iso(utcnow()))
    ops = Operations.on(OpsContext(runtime.db, runtime.box))

    assert await _shown(ops, ListingQuery(excluded=True)) == ["SKIP-1"]
    assert await _shown(ops, ListingQuery(excluded=False)) == ["KEEP-1", "KEEP-2"]
    assert await _shown(ops, ListingQuery(q="KEEP")) == ["KEEP-1", "KEEP-2"]
    assert len(await _shown(ops, ListingQuery())) == 3
