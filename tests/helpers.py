"""Helpers the tests share: building settings and seeding connections and listings through
the same store functions the CLI uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.clock import iso, utcnow
from daemon.config import Settings, load_settings
from daemon.specs import ConnectionSpec, ListingSpec
from daemon.store import connections, listings
from daemon.sync.runtime import Runtime

STATIC_TOKEN = "test-static-token-0123456789"


def make_settings(tmp_path: Path, **env: str) -> Settings:
    config = tmp_path / "config.toml"
    config.write_text("[database]\npath = 'state/test.db'\n")
    defaults = {
        "MLS_SYNC_MLS__BACKOFF_INITIAL_SECONDS": "0.01",
        "MLS_SYNC_MLS__BACKOFF_MAX_SECONDS": "0.05",
        "MLS_SYNC_MLS__TIMEOUT_SECONDS": "2",
    }
    return load_settings(config, {**defaults, **env})


async def add_connection(
    rt: Runtime, url: str, connection_id: str = "mls-1", secret: str = STATIC_TOKEN, **fields: Any
) -> ConnectionSpec:
    spec = ConnectionSpec.model_validate(
        {
            "id": connection_id,
            "name": f"Test {connection_id}",
            "base_url": url,
            "rate_per_second": 200.0,
            **fields,
        }
    )
    await connections.upsert(rt.db, spec, rt.require_box().encrypt(secret), iso(utcnow()))
    return spec


async def add_oauth_connection(
    rt: Runtime, url: str, connection_id: str = "mls-1", **fields: Any
) -> ConnectionSpec:
    return await add_connection(
        rt,
        url,
        connection_id,
        secret="client-secret-1",
        auth_kind="oauth2",
        token_url=f"{url}/oauth/token",
        client_id="client-1",
        **fields,
    )


async def track(
    rt: Runtime, connection_id: str, keys: list[str], status: str | None = None, prefix: str = "L-"
) -> None:
    """Tracks each key as the listing `{prefix}{key}`."""
    await listings.add_many(
        rt.db,
        [
            ListingSpec(
                id=f"{prefix}{k}", connection_id=connection_id, listing_key=k, status=status
            )
            for k in keys
        ],
        iso(utcnow()),
    )


async def status_of(rt: Runtime, key: str) -> str | None:
    row = await listings.get(rt.db, f"L-{key}")
    assert row is not None
    return row.status
