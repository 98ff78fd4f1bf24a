"""The embedded sandbox: a sandbox MLS on loopback, wired into the database as ordinary
connections, so that a newcomer sees the real engine work without credentials or network.

Its market is kept in a file beside the database, so successive runs continue one story.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.clock import iso, parse_iso, utcnow
from daemon.config import SandboxSettings
from daemon.encryption import SecretBox
from daemon.mls.query import KeyFilter
from daemon.sandbox import market
from daemon.sandbox.mls_server import SandboxMls, build_mls_app
from daemon.sandbox.serve import serving
from daemon.specs import ConnectionSpec, ListingSpec
from daemon.store import connections, listings
from daemon.store.database import Database

STATE_FILE = "sandbox-mls.json"
# One connection of each kind, so the demo exercises every query form.
FLAVOURS: list[dict[str, Any]] = [
    {"mode": "by_key", "key_filter": KeyFilter.IN},
    {"mode": "by_key", "key_filter": KeyFilter.OR, "batch_size": 5},
    {"mode": "incremental", "key_filter": KeyFilter.IN, "overlap_seconds": 60},
]


@dataclass
class SandboxSession:
    mls: SandboxMls
    url: str
    rng: random.Random
    state_path: Path

    def move_market(self, count: int) -> list[market.Move]:
        moves = market.move(self.mls, count, self.rng)
        save(self.mls, self.state_path)
        return moves


def connection_id(i: int) -> str:
    return f"sandbox-{i + 1}"


@asynccontextmanager
async def sandbox_running(
    settings: SandboxSettings, db: Database, box: SecretBox
) -> AsyncIterator[SandboxSession]:
    state_path = db.path.parent / STATE_FILE
    mls = SandboxMls(max_page_size=100)
    rng = random.Random(settings.seed)
    keys_by_connection = _keys(settings)
    if not load(mls, state_path):
        market.seed(mls, [k for keys in keys_by_connection for k in keys], rng)
        save(mls, state_path)
    # Each run continues the story differently, yet repeatably for the same saved market.
    rng.seed(f"{settings.seed}:{iso(mls.last_stamp)}")
    async with serving(build_mls_app(mls)) as url:
        await _wire(db, box, mls, url, keys_by_connection)
        yield SandboxSession(mls, url, rng, state_path)
    save(mls, state_path)


def _keys(settings: SandboxSettings) -> list[list[str]]:
    per = max(settings.listings // settings.connections, 1)
    return [[market.listing_key(c + 1, n) for n in range(per)] for c in range(settings.connections)]


async def _wire(
    db: Database, box: SecretBox, mls: SandboxMls, url: str, keys_by_connection: list[list[str]]
) -> None:
    """(Re)points the sandbox connections at this run's server and tracks their listings."""
    now = iso(utcnow())
    for i, keys in enumerate(keys_by_connection):
        cid = connection_id(i)
        client_id, secret = f"{cid}-client", f"{cid}-secret"
        mls.add_client(client_id, secret)
        spec = ConnectionSpec(
            id=cid,
            name=f"Sandbox MLS #{i + 1}",
            base_url=url,
            auth_kind="oauth2",
            token_url=f"{url}/oauth/token",
            client_id=client_id,
            scope="api",
            select_mlg_can_view=True,
            rate_per_second=50.0,
            **FLAVOURS[i % len(FLAVOURS)],
        )
        await connections.upsert(db, spec, box.encrypt(secret), now)
        await listings.add_many(
            db,
            [ListingSpec(id=f"L-{k}", connection_id=cid, listing_key=k) for k in keys],
            now,
        )


def save(mls: SandboxMls, path: Path) -> None:
    """Written to a temporary file and renamed: a crash leaves the old file or the new one."""
    doc = {
        "records": [
            {**r, "ModificationTimestamp": iso(r["ModificationTimestamp"])}
            if hasattr(r.get("ModificationTimestamp"), "tzinfo")
            else r
            for r in mls.records.values()
        ]
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


def load(mls: SandboxMls, path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except ValueError:
        return False  # a damaged sandbox file is simply re-seeded
    for rec in doc.get("records", []):
        if isinstance(rec.get("ModificationTimestamp"), str):
            rec["ModificationTimestamp"] = parse_iso(rec["ModificationTimestamp"])
        mls.records[rec["ListingKey"]] = rec
        if isinstance(rec.get("ModificationTimestamp"), datetime):
            mls.last_stamp = max(mls.last_stamp, rec["ModificationTimestamp"])
    return bool(mls.records)
