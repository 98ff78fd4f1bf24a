"""The SQLite file: pragmas, migrations, permissions, and encrypted secrets."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import aiosqlite
import anyio
import pytest

from daemon.composition import open_runtime
from daemon.config import Settings
from daemon.encryption import SecretKeyError, generate_key
from daemon.sandbox.mls_server import SandboxMls
from daemon.store import accounts, connections, vault
from daemon.store.database import MIGRATIONS, SCHEMA_VERSION, SchemaError
from daemon.store.errors import IntegrityViolation
from daemon.store.sqlite import SqliteDatabase
from daemon.timestamps import iso, utcnow
from tests.helpers import STATIC_TOKEN, add_account, add_connection, status_of, track


async def test_the_database_runs_in_wal_with_foreign_keys_and_a_busy_timeout(
    tmp_path: Path,
) -> None:
    db = await SqliteDatabase.open(tmp_path / "x.db", busy_timeout_ms=4321)
    try:
        async with db.reading() as conn:
            values = {}
            for pragma in ("journal_mode", "foreign_keys", "busy_timeout", "user_version"):
                row = await conn.fetch_one(f"PRAGMA {pragma}")
                assert row is not None
                values[pragma] = row[0]
    finally:
        await db.close()
    assert values == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 4321,
        "user_version": SCHEMA_VERSION,
    }


async def test_the_database_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "x.db"
    db = await SqliteDatabase.open(path)
    await db.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_opening_twice_does_not_migrate_twice(tmp_path: Path) -> None:
    for _ in range(2):
        db = await SqliteDatabase.open(tmp_path / "x.db")
        assert await db.schema_version() == SCHEMA_VERSION
        await db.close()


async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    async with aiosqlite.connect(path) as conn:
        await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaError, match="newer than this mls-sync understands"):
        await SqliteDatabase.open(path)


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SchemaError, match="not a usable SQLite database"):
        await SqliteDatabase.open(path)


async def test_credentials_are_not_stored_in_plain_text(
    settings: Settings, secret_key: str, mls: tuple[SandboxMls, str]
) -> None:
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        await add_connection(rt, mls[1])
    for path in settings.database.path.parent.iterdir():
        assert STATIC_TOKEN.encode() not in path.read_bytes(), path


async def test_a_wrong_key_is_refused_before_anything_is_read(
    settings: Settings, secret_key: str, mls: tuple[SandboxMls, str]
) -> None:
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        await add_connection(rt, mls[1])
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": generate_key()}):
            pass
    with pytest.raises(SecretKeyError, match="no secret key is configured"):
        async with open_runtime(settings, {}):
            pass
    with pytest.raises(SecretKeyError, match="not a Fernet key"):
        async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": "hunter2"}):
            pass


async def test_rotating_the_key_keeps_every_credential_readable(
    settings: Settings, secret_key: str, mls: tuple[SandboxMls, str]
) -> None:
    sandbox, url = mls
    sandbox.put("A", "Closed")
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        await add_connection(rt, url)
        await track(rt, "mls-1", ["A"])
        await add_account(
            rt,
            "li",
            "linkedin",
            "access",
            refresh_token="refresh",
            client_id="app",
            client_secret="app-secret",
        )
    new_key = generate_key()
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": f"{new_key},{secret_key}"}) as rt:
        assert await vault.rotate(rt.db, rt.require_box()) == 4  # 1 credential + 3 tokens

    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": new_key}) as rt:
        report = await rt.engine.sync_all()
        assert report.run.errors == 0
        assert await status_of(rt, "A") == "sold"
        account = await accounts.get(rt.db, "li")
        assert account is not None and account.client_secret_encrypted is not None
        assert rt.require_box().decrypt(account.client_secret_encrypted) == "app-secret"
    with pytest.raises(SecretKeyError):
        async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}):
            pass


async def test_new_credentials_bring_a_connection_out_of_needs_reauth(
    settings: Settings, secret_key: str, mls: tuple[SandboxMls, str]
) -> None:
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        spec = await add_connection(rt, mls[1])
        await connections.set_state(rt.db, "mls-1", "needs_reauth", "401 twice", iso(utcnow()))
        await connections.upsert(rt.db, spec, None, iso(utcnow()))  # same definition, no secret
        row = await connections.get(rt.db, "mls-1")
        assert row is not None and row.state == "needs_reauth"
        await connections.upsert(rt.db, spec, rt.require_box().encrypt("new"), iso(utcnow()))
        row = await connections.get(rt.db, "mls-1")
        assert row is not None and (row.state, row.last_error) == ("active", None)


async def test_a_transaction_cancelled_while_waiting_for_the_write_lock_leaves_none_open(
    tmp_path: Path,
) -> None:
    """Another process holds SQLite's write lock; a write waiting for it is cancelled (a lost
    lease, Ctrl-C). Once the lock is free, the next write still works: the abandoned BEGIN did
    not leave the shared connection inside a transaction."""
    path = tmp_path / "x.db"
    db = await SqliteDatabase.open(path, busy_timeout_ms=2000)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        # The lock comes free while the cancelled write still waits for it.
        threading.Timer(0.5, other.execute, ["ROLLBACK"]).start()
        with anyio.move_on_after(0.2):
            async with db.transaction() as conn:
                await conn.execute("SELECT 1")
        await anyio.sleep(0.5)
        with anyio.fail_after(5):
            async with db.transaction() as conn:
                await conn.execute("PRAGMA user_version")
            assert not db.conn.in_transaction
    finally:
        other.close()
        await db.close()


async def test_a_database_of_the_last_version_keeps_every_row_when_connections_are_rebuilt(
    tmp_path: Path,
) -> None:
    """Migration 9 rebuilds mls_connections (a new mode in its CHECK) under the listings that
    refer to it: every row and every reference stays, and foreign keys are on again after."""
    path = tmp_path / "x.db"
    now = iso(utcnow())
    with sqlite3.connect(path, isolation_level=None) as conn:
        for version, _, sql in MIGRATIONS:
            if version < 9:
                conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;")
        conn.execute(
            "INSERT INTO mls_connections (id, name, base_url, auth_kind, secret_encrypted, "
            "created_at, updated_at) VALUES ('c1', 'C1', 'https://mls.invalid', 'bearer', 'x', "
            "?, ?)",
            (now, now),
        )
        conn.execute(
            "INSERT INTO listings (id, connection_id, listing_key, created_at, updated_at) "
            "VALUES ('L-1', 'c1', '1', ?, ?)",
            (now, now),
        )
    db = await SqliteDatabase.open(path)
    try:
        assert await db.schema_version() == SCHEMA_VERSION >= 9
        assert [tuple(r) for r in await db.fetch_all("SELECT id FROM mls_connections")] == [("c1",)]
        assert [tuple(r) for r in await db.fetch_all("SELECT connection_id FROM listings")] == [
            ("c1",)
        ]
        assert await db.fetch_all("PRAGMA foreign_key_check") == []
        assert [tuple(r) for r in await db.fetch_all("PRAGMA foreign_keys")] == [(1,)]
        await db.write_one("UPDATE mls_connections SET mode = 'events' WHERE id = 'c1'", {})
        with pytest.raises(IntegrityViolation):  # the listing still needs its connection
            await db.write_one("DELETE FROM mls_connections WHERE id = 'c1'", {})
    finally:
        await db.close()
