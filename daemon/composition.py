"""The composition root: everything a process needs, opened together and closed together: the
database (migrated), the key (checked against the database), the HTTP clients and the engine.

Nothing here knows the sandbox. An entry point (daemon/main.py) chooses an `Opener`: this
module's `production`, or the sandbox's, which starts its servers around the runtime and hands
back an `Environment` the daemon and the commands drive through this module's protocol only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import httpx

from daemon.config import Settings
from daemon.cookieless import CookielessClient
from daemon.credentials import (
    DATABASE_PASSWORD_CREDENTIAL,
    DATABASE_PASSWORD_ENV,
    SECRET_KEY_CREDENTIAL,
    SECRET_KEY_ENV,
    read_secret,
    require_box,
    sandbox_secret_key,
)
from daemon.encryption import SecretBox
from daemon.mls import payload
from daemon.mls.engine_client import EngineClient
from daemon.platforms.registry import PLATFORM_NAMES
from daemon.store import vault
from daemon.store.database import Database, open_database
from daemon.sync.access import MlsAccess
from daemon.sync.engine import SyncEngine
from daemon.sync.pools import ServerPools
from daemon.sync.unpublish import Unpublisher
from daemon.tls import verifying_context

USER_AGENT = "mls-sync/0.1 (+RESO Web API client)"


@dataclass
class Runtime:
    settings: Settings
    db: Database
    box: SecretBox | None
    http: ServerPools
    engine: SyncEngine
    platform_http: Mapping[str, httpx.AsyncClient]  # one client (and pool) per platform

    def require_box(self) -> SecretBox:
        return require_box(self.box)


def secret_key_text(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    secret = read_secret(SECRET_KEY_ENV, SECRET_KEY_CREDENTIAL, environ)
    if secret is None and settings.sandbox.enabled:
        secret = sandbox_secret_key(settings.database.path.parent)
    return secret.value if secret else None


def database_password(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    """PostgreSQL's password, from the environment or a systemd credential (never the file)."""
    if not settings.database.url:
        return None
    secret = read_secret(DATABASE_PASSWORD_ENV, DATABASE_PASSWORD_CREDENTIAL, environ)
    return secret.value if secret else None


async def open_database_of(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> Database:
    """The database `[database]` names: PostgreSQL at `url`, else the SQLite file at `path`."""
    db = settings.database
    return await open_database(
        db.path, db.url or None, db.busy_timeout_ms, database_password(settings, environ)
    )


# Idle connections a pool keeps (see ServerPools and platform_client): each costs a little on
# every request of its pool, each one closed costs a new connection when the next burst comes.
MLS_KEEP_IDLE = 16
KEEP_IDLE = 4


def http_client(settings: Settings) -> EngineClient:
    """For one MLS server. As large as the global request bound, so a request never waits
    inside the pool (whose queue costs O(queue x connections) per event)."""
    mls = settings.mls
    return EngineClient(
        timeout=httpx.Timeout(mls.timeout_seconds),
        transport=mls_transport(settings, mls.max_concurrent_requests),
        follow_redirects=False,  # a redirect must not carry our bearer token elsewhere
        trust_env=False,  # proxies from the environment must not reroute MLS traffic
        headers={"User-Agent": USER_AGENT},
    )


def platform_client(settings: Settings) -> httpx.AsyncClient:
    """One per platform. httpcore checks every idle connection of a pool on every request
    (a system call or two each): profiled on 10,000 deletes, that scan was a fifth of the CPU
    with one pool of 16. A pool per platform, keeping at most 4 idle, scans a few. Its size is
    the global in-flight bound, so a request never waits inside the pool."""
    bound = settings.platforms.max_concurrent_requests
    return CookielessClient(
        timeout=httpx.Timeout(settings.platforms.timeout_seconds),
        limits=httpx.Limits(max_connections=bound, max_keepalive_connections=min(bound, KEEP_IDLE)),
        verify=verifying_context(),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


def mls_transport(settings: Settings, bound: int) -> httpx.AsyncBaseTransport:
    """The engine `[mls] http_engine` names, its pool as large as `bound`: aiohttp's, or
    httpx's own (httpcore), keeping at most MLS_KEEP_IDLE connections idle. The platforms'
    clients stay on httpcore: taking down posts at the platforms' rates cost more CPU on
    aiohttp (docs/benchmarks.md "The HTTP engine")."""
    if settings.mls.http_engine == "aiohttp":
        # Imported at the first MLS client: aiohttp is about a sixth of a command's start-up
        # (its imports), and most commands ask no MLS anything.
        from daemon.aiohttp_transport import AiohttpTransport

        return AiohttpTransport(max_connections=bound)
    return httpx.AsyncHTTPTransport(
        verify=verifying_context(),
        limits=httpx.Limits(
            max_connections=bound, max_keepalive_connections=min(bound, MLS_KEEP_IDLE)
        ),
        trust_env=False,
    )


def prepare_mls_reading(settings: Settings) -> None:
    """Builds now what reading an MLS takes and is otherwise built at its first use (see
    `mls_transport`, and `daemon/mls/payload.py`): the validators of pages of records, the
    TLS context every client shares (`daemon/tls.py`) and, on the aiohttp engine, its code.
    A daemon calls it at start: it pays for them once, before it says it is ready, and not
    inside its first cycle. Raises ImportError or OSError (ssl.SSLError is one) when the
    engine cannot be loaded."""
    payload.prepare()
    verifying_context()
    # A transport opens nothing until its first request: this one is dropped unused, and
    # what it built (the engine's import) stays.
    mls_transport(settings, 1)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    on_progress: Callable[[str, int, int], None] = lambda cid, done, total: None,
) -> AsyncIterator[Runtime]:
    db = await open_database_of(settings, environ)
    try:
        box = await vault.unlock(db, secret_key_text(settings, environ))
        async with (
            ServerPools(lambda: http_client(settings)) as http,
            AsyncExitStack() as clients,
        ):
            platform_http = {
                name: await clients.enter_async_context(platform_client(settings))
                for name in PLATFORM_NAMES
            }
            access = MlsAccess(http, settings.mls, box)
            # Lease times by the database's clock (several daemons on several machines).
            unpublisher = Unpublisher(db, settings, box, platform_http, db.clock)
            engine = SyncEngine(
                db, settings, access, unpublisher, clock=db.clock, on_progress=on_progress
            )
            yield Runtime(settings, db, box, http, engine, platform_http)
    finally:
        await db.close()


Progress = Callable[[str, int, int], None]  # connection id, listings done, listings in all


class Environment(Protocol):
    """What surrounds the runtime outside production (the sandbox's servers and market)."""

    def describe(self) -> dict[str, str]:
        """Its addresses, for the log and for people."""
        ...

    def pin(self, settings: Settings) -> Settings:
        """`settings` still pointing at it (a reloaded config keeps its URLs)."""
        ...

    def before_cycle(self) -> list[str]:
        """Moves its world a little before a cycle; one line for people per change."""
        ...

    async def feed_pushes(self, daemon_url: str) -> None:
        """Pushes its MLS's changes to the daemon serving at `daemon_url`, until cancelled."""
        ...


Opener = Callable[
    [Settings, Progress], AbstractAsyncContextManager[tuple[Runtime, Environment | None]]
]


@asynccontextmanager
async def production(
    settings: Settings, on_progress: Progress = lambda cid, done, total: None
) -> AsyncIterator[tuple[Runtime, Environment | None]]:
    """The opener of a production process: the runtime, nothing around it."""
    async with open_runtime(settings, on_progress=on_progress) as rt:
        yield rt, None
