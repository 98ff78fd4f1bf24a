"""The sandbox MLS over plain HTTP, as the demo, a benchmark or a person with curl drives it."""

from __future__ import annotations

import httpx

from daemon.composition import Runtime
from tests.helpers import STATIC_TOKEN, Mls, add_connection, status_of, track

AUTH = {"Authorization": f"Bearer {STATIC_TOKEN}"}


async def test_the_admin_endpoint_changes_a_status_and_bumps_its_timestamp(
    runtime: Runtime, mls: Mls
) -> None:
    _, url = mls
    async with httpx.AsyncClient(base_url=url) as client:
        first = (await client.put("/admin/listings/K1", json={"StandardStatus": "Active"})).json()
        second = (
            await client.put(
                "/admin/listings/K1", json={"StandardStatus": "Closed", "MlsStatus": "Sold"}
            )
        ).json()
    assert second["ModificationTimestamp"] > first["ModificationTimestamp"]
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["K1"])
    await runtime.engine.sync_all()
    assert await status_of(runtime, "K1") == "sold"


async def test_faults_can_be_queued_over_http(runtime: Runtime, mls: Mls) -> None:
    _, url = mls
    async with httpx.AsyncClient(base_url=url) as client:
        queued = await client.post(
            "/admin/faults",
            json=[
                {"kind": "status", "status": 429, "retry_after": "0"},
                {"kind": "malformed_json"},
            ],
        )
        bad = await client.post("/admin/faults", json={"kind": "status", "colour": "red"})
        assert queued.json() == {"queued": 2}
        assert bad.status_code == 400
        first = await client.get("/Property", headers=AUTH)
        second = await client.get("/Property", headers=AUTH)
        third = await client.get("/Property", headers=AUTH)
        stats = (await client.get("/admin/stats")).json()
    assert (first.status_code, first.headers["Retry-After"]) == (429, "0")
    assert second.status_code == 200 and second.text.startswith('{"value": [ {')
    assert third.json()["value"] == []
    assert stats["faults_injected"] == 2


async def test_the_query_subset_answers_like_a_reso_server(mls: Mls) -> None:
    sandbox, url = mls
    for i, status in enumerate(["Active", "Pending", "Closed", "Active", "Active"]):
        sandbox.put(f"K{i}", status)
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        some = await client.get(
            "/Property",
            params={
                "$filter": "StandardStatus eq 'Active' and not (ListingKey eq 'K3')",
                "$select": "ListingKey,StandardStatus",
                "$orderby": "ListingKey desc",
            },
        )
        paged = await client.get("/Property", params={"$top": "2", "$orderby": "ListingKey"})
        nxt = await client.get(paged.json()["@odata.nextLink"])
        small = await client.get("/Property", headers={"Prefer": "odata.maxpagesize=1"})
        broken = await client.get("/Property", params={"$filter": "ListingKey eq"})
        unauthorised = await client.get("/Property", headers={"Authorization": "Bearer nope"})
    assert some.json()["value"] == [
        {"ListingKey": "K4", "StandardStatus": "Active"},
        {"ListingKey": "K0", "StandardStatus": "Active"},
    ]
    assert [r["ListingKey"] for r in paged.json()["value"]] == ["K0", "K1"]
    assert [r["ListingKey"] for r in nxt.json()["value"]] == ["K2", "K3"]
    assert len(small.json()["value"]) == 1 and "@odata.nextLink" in small.json()
    assert broken.status_code == 400 and "invalid $filter" in broken.json()["error"]["message"]
    assert unauthorised.status_code == 401


async def test_client_credentials_get_a_token_and_bad_ones_do_not(mls: Mls) -> None:
    _, url = mls
    async with httpx.AsyncClient(base_url=url) as client:
        good = await client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "client-1",
                "client_secret": "client-secret-1",
            },
        )
        bad = await client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "client-1",
                "client_secret": "x",
            },
        )
        listing = await client.get(
            "/Property", headers={"Authorization": f"Bearer {good.json()['access_token']}"}
        )
    assert good.json()["token_type"] == "Bearer" and good.json()["expires_in"] > 0
    assert bad.status_code == 401
    assert listing.status_code == 200
