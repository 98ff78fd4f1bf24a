"""Helpers the tests share: building settings and seeding connections and listings through
the same store functions the CLI uses."""

from __future__ import annotations

import gc
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import psycopg
import pytest

from daemon.composition import Runtime, open_runtime
from daemon.config import Settings, load_settings
from daemon.sandbox.mls_server import SandboxMls, build_mls_app
from daemon.sandbox.platforms_server import SandboxPlatforms, platform_env
from daemon.serving import serving
from daemon.specs import AccountSpec, ConnectionSpec, ListingSpec, PostSpec
from daemon.store import accounts, connections, listings, meta, posts
from daemon.store.database import Database
from daemon.store.postgres import WRITE_LOCK
from daemon.store.sqlite import SqliteDatabase
from daemon.timestamps import iso, utcnow

STATIC_TOKEN = "test-static-token-0123456789"

# Nothing listens on port 9 of loopback: a test that forgets its sandbox platforms gets
# connection errors, never a call to the real Graph API or LinkedIn.
LOOPBACK_ONLY = platform_env("http://127.0.0.1:9")


# What the `mls` and `platforms` fixtures give: a sandbox server's state and its URL.
Mls = tuple[SandboxMls, str]
Platforms = tuple[SandboxPlatforms, str]


@dataclass
class Live:
    """A runtime wired to the sandbox MLS and the sandbox platforms."""

    rt: Runtime
    mls: SandboxMls
    mls_url: str
    platforms: SandboxPlatforms


# The PostgreSQL database of the running test, when it runs on PostgreSQL (the `database`
# fixture in tests/conftest.py sets it); None: the SQLite file.
postgresql_url: str | None = None


def database_env() -> dict[str, str]:
    """For a subprocess of the CLI or the daemon: the test's database, when it is PostgreSQL,
    with the password where production keeps it (MLS_SYNC_DATABASE_PASSWORD)."""
    if postgresql_url is None:
        return {}
    return {
        "MLS_SYNC_DATABASE__URL": postgresql_url,
        "MLS_SYNC_DATABASE_PASSWORD": os.environ["PGPASSWORD"],
    }


def make_settings(tmp_path: Path, **env: str) -> Settings:
    config = tmp_path / "config.toml"
    config.write_text("[database]\npath = 'state/test.db'\n")
    defaults = {
        **({"MLS_SYNC_DATABASE__URL": postgresql_url} if postgresql_url else {}),
        **LOOPBACK_ONLY,
        "MLS_SYNC_MLS__BACKOFF_INITIAL_SECONDS": "0.01",
        "MLS_SYNC_MLS__BACKOFF_MAX_SECONDS": "0.05",
        "MLS_SYNC_MLS__TIMEOUT_SECONDS": "2",
        "MLS_SYNC_PLATFORMS__TIMEOUT_SECONDS": "2",
    }
    return load_settings(config, {**defaults, **env})


@asynccontextmanager
async def open_live(
    tmp_path: Path,
    secret_key: str,
    mls: Mls,
    platforms: Platforms,
    **env: str,
) -> AsyncIterator[Live]:
    """The runtime wired to the sandbox MLS and platforms (the `live` fixture), with `env`
    settings of the test's own."""
    settings = make_settings(tmp_path, **platform_env(platforms[1]), **env)
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        yield Live(rt, mls[0], mls[1], platforms[0])


def closed_port_url() -> str:
    """An address on loopback where nothing listens: a port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


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


async def add_incremental(rt: Runtime, url: str, keys: list[str], **fields: Any) -> None:
    """An incremental connection `mls-1` without overlap, tracking `keys`."""
    await add_connection(rt, url, mode="incremental", overlap_seconds=0, **fields)
    await track(rt, "mls-1", keys)


async def add_sandbox_connection(
    rt: Runtime, mls: Mls, keys: list[str], status: str = "Active", **fields: Any
) -> None:
    """Connection `mls-1` to the sandbox MLS, tracking `keys`, each `status` in the MLS."""
    sandbox, url = mls
    for key in keys:
        sandbox.put(key, status)
    await add_connection(rt, url, **fields)
    await track(rt, "mls-1", keys)


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


async def add_account(
    rt: Runtime,
    account_id: str,
    platform: str,
    token: str,
    connected_via: str | None = None,
    refresh_token: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> None:
    box = rt.require_box()
    spec = AccountSpec.model_validate(
        {
            "id": account_id,
            "user_id": "agent-1",
            "platform": platform,
            "connected_via": connected_via,
            "client_id": client_id,
        }
    )
    await accounts.upsert(
        rt.db,
        spec,
        box.encrypt(token),
        box.encrypt(refresh_token) if refresh_token else None,
        box.encrypt(client_secret) if client_secret else None,
        iso(utcnow()),
    )


async def add_post(
    rt: Runtime, post_id: str, listing_id: str, account_id: str, platform_post_id: str
) -> None:
    spec = PostSpec(
        id=post_id, listing_id=listing_id, account_id=account_id, platform_post_id=platform_post_id
    )
    await posts.add(rt.db, spec, iso(utcnow()))


@contextmanager
def cli_sync(
    tmp_path: Path, secret_key: str, *args: str, **env: str
) -> Iterator[subprocess.Popen[str]]:
    """`mls-sync sync ARGS` as a subprocess, on `tmp_path/config.toml` as `make_settings`
    wrote it (killed if left running). Poll it: the sandbox servers answer from the test's loop."""
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith("MLS_SYNC_") and k != "PGPASSWORD"
    }
    full_env.update({**LOOPBACK_ONLY, **database_env(), "MLS_SYNC_SECRET_KEY": secret_key, **env})
    proc = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "daemon", "sync", "-q", "--config", "config.toml", *args],
        cwd=tmp_path,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def undocumented_keys(text: str) -> list[str]:
    """A config file's keys with no comment above them: directly, or above the run of keys
    they are in (a blank line or a [section] ends a run)."""
    undocumented, documented = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            documented = True
        elif not stripped or stripped.startswith("["):
            documented = False
        elif not documented:
            undocumented.append(stripped.split("=")[0].strip())
    return undocumented


async def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


@dataclass
class Clock:
    """A clock a test sets by hand (`clock.now = ...`), for code that takes a clock."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


# How late the tests' sandbox may stamp a request's arrival: it runs in a thread of the test's
# own process, which also runs the engine, and a collection of that process's garbage, or the
# engine's hold on the interpreter, can hold the stamp back by tens of milliseconds, so that
# two arrivals stamped close together went out a full pace apart.
STAMP_SLACK_SECONDS = 0.06


def most_in_any_second(times: list[float]) -> int:
    """`most_in_any_window` for a rate per second, the window narrowed by the sandbox's
    stamping slack. A client 10% over a rate of 4 or 10 a second still shows over it."""
    return most_in_any_window(times, 1.0 - STAMP_SLACK_SECONDS)


def most_in_any_window(times: list[float], window: float) -> int:
    """The most of `times` (seconds) that fall in one sliding window of `window` seconds:
    what a server's rate limit counts."""
    ordered = sorted(times)
    return max(
        (sum(1 for t in ordered[i:] if t - start < window) for i, start in enumerate(ordered)),
        default=0,
    )


def on_sqlite(db: Database) -> SqliteDatabase:
    """`db` as the SQLite database it is, for a test that reads its file, locks it from
    another process or traces its statements: such a test is about SQLite alone."""
    assert isinstance(db, SqliteDatabase), "a test of the SQLite file ran on another database"
    return db


@asynccontextmanager
async def sqlite_reader(path: Path) -> AsyncIterator[SqliteDatabase]:
    """A read-only connection to the SQLite file at `path`, closed on the way out."""
    db = await SqliteDatabase.open_reader(path)
    try:
        yield db
    finally:
        await db.close()


class OtherWriter:
    """Another process's write transaction (a backup, a CLI command) on the database
    `settings` name: while held, the daemon's writes wait for it, and fail once the busy
    timeout passes."""

    def __init__(self, settings: Settings) -> None:
        self._where = settings.database
        self._sqlite: sqlite3.Connection | None = None
        self._postgresql: psycopg.Connection[Any] | None = None

    async def hold(self) -> None:
        if not self._where.url:
            self._sqlite = sqlite3.connect(
                self._where.path, isolation_level=None, check_same_thread=False
            )
            await anyio.to_thread.run_sync(self._sqlite.execute, "BEGIN IMMEDIATE")
        else:  # PostgreSQL: the lock every write transaction of the store takes first
            self._postgresql = psycopg.connect(self._where.url, autocommit=True)
            await anyio.to_thread.run_sync(
                self._postgresql.execute, f"SELECT pg_advisory_lock({WRITE_LOCK})"
            )

    def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None
        if self._postgresql is not None:
            self._postgresql.close()  # its session's lock goes with it
            self._postgresql = None


@asynccontextmanager
async def write_locked(settings: Settings) -> AsyncIterator[None]:
    """`OtherWriter` held for as long as the block runs."""
    other = OtherWriter(settings)
    await other.hold()
    try:
        yield
    finally:
        other.release()


async def everything_stored(db: Database) -> bytes:
    """Every byte the database keeps, to look for a secret stored in the clear: the SQLite
    file and its write-ahead log, or the text of every row of every PostgreSQL table."""
    if isinstance(db, SqliteDatabase):
        wal = Path(f"{db.path}-wal")
        return db.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    tables = await db.fetch_all(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    rows = [
        row
        for (table,) in tables
        for row in await db.fetch_all(f'SELECT CAST(t AS text) FROM "{table}" AS t')
    ]
    return "\n".join(str(r[0]) for r in rows).encode()


def sandbox_mls() -> SandboxMls:
    """The tests' sandbox MLS: one static token and one OAuth client."""
    sandbox = SandboxMls(static_tokens={STATIC_TOKEN})
    sandbox.add_client("client-1", "client-secret-1")
    return sandbox


@contextmanager
def sandbox_mls_in_a_thread() -> Iterator[Mls]:
    """The tests' sandbox MLS served from a thread of its own (see `serving_in_a_thread`):
    for the tests that count when requests arrive, as a credential's rate limit does."""
    sandbox = sandbox_mls()
    with serving_in_a_thread(build_mls_app(sandbox)) as url:
        yield sandbox, url


@contextmanager
def stamping_promptly() -> Iterator[None]:
    """For a test whose sandbox, in a thread of the test's process, stamps arrivals while
    the test's own thread runs the engine: the interpreter hands its lock between threads
    every half millisecond instead of every 5, and collects no garbage, either of which held
    a stamp back while the engine ran (a fresh-clone run counted 5 arrivals in 0.94 s from a
    client paced at 3.8 a second). The client's pacing is its own clock's, untouched."""
    interval, collecting = sys.getswitchinterval(), gc.isenabled()
    sys.setswitchinterval(0.0005)
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if collecting:
            gc.enable()


@contextmanager
def serving_in_a_thread(app: Any) -> Iterator[str]:
    """The app served by a thread with an event loop of its own, for as long as the block
    runs: what it records of a request (its time) is when it came, not when the test's
    event loop, busy with the daemon's engine, got round to it."""
    listening, stop = threading.Event(), threading.Event()
    urls: list[str] = []

    async def serve() -> None:
        async with serving(app) as url:
            urls.append(url)
            listening.set()
            while not stop.is_set():
                await anyio.sleep(0.02)

    thread = threading.Thread(target=anyio.run, args=(serve,), name="served", daemon=True)
    thread.start()
    if not listening.wait(30):
        raise RuntimeError("the server in its thread did not start listening within 30 s")
    try:
        yield urls[0]
    finally:
        stop.set()
        thread.join(30)


async def clock_cycles_half_a_slot_away(db: Database, interval_seconds: int) -> None:
    """Sets a new database's slot offset (daemon/sync/cycle_slots.py) so that the clock's
    next cycle comes half an interval from now: a daemon test that expects no cycle after
    its first one does not meet one by the chance of a random offset (with 900 s slots, a
    test of a few seconds met one about once in 300 runs, one of 40 s once in 20)."""
    now = int(utcnow().timestamp())
    offset = (now + interval_seconds // 2) % interval_seconds
    assert int(await meta.first_value(db, meta.SLOT_OFFSET, str(offset))) == offset


def counted_trips(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The functions sent to aiosqlite's thread from now on (until `monkeypatch.undo()`),
    one per trip."""
    trips: list[object] = []
    to_thread = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: object, *args: object) -> object:
        trips.append(fn)
        return await to_thread(self, fn, *args)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return trips
