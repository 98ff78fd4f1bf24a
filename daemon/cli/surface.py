"""Where a command's operations run: in this process on the configured database, or in the
running daemon over its API (`mls-sync --api URL`). Commands are written once against
`Operations` and print the same either way."""

from __future__ import annotations

import getpass
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import click
import httpx

from daemon.cli.common import EX_USAGE, fail, run, secret_file, secret_from, settings_from
from daemon.cli.remote import remote_operations
from daemon.cli.render import echo_json
from daemon.cli.wiring import opener
from daemon.composition import Environment, Progress, production
from daemon.config import Settings
from daemon.credentials import API_TOKEN_ENV
from daemon.errors import NotFound
from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.ops.views import View
from daemon.tls import verifying_context

T = TypeVar("T")

API_URL_ENV = "MLS_SYNC_API_URL"
API_TIMEOUT_SECONDS = 600.0  # a one-listing sync or an import of 100,000 rows answers in less


@dataclass(frozen=True)
class RemoteTarget:
    url: str
    token: str


@dataclass(frozen=True)
class Surface:
    settings: Settings | None = None  # local
    remote: RemoteTarget | None = None

    @property
    def is_remote(self) -> bool:
        return self.remote is not None

    @asynccontextmanager
    async def open(
        self,
        engine: bool = False,
        on_progress: Progress = lambda cid, done, total: None,
        on_run_recorded: Callable[[int], None] = lambda run_id: None,
    ) -> AsyncIterator[tuple[Operations, Environment | None]]:
        """The operations. `engine`: the command syncs or unpublishes here, so a local one
        opens the runtime as the entry point wires it (inside the sandbox when enabled)."""
        if self.remote is not None:
            async with httpx.AsyncClient(
                base_url=self.remote.url,
                headers={"Authorization": f"Bearer {self.remote.token}"},
                timeout=API_TIMEOUT_SECONDS,
                verify=verifying_context(),
                trust_env=False,
                follow_redirects=False,
            ) as client:
                yield remote_operations(client), None
            return
        assert self.settings is not None
        open_with = opener() if engine else production
        async with open_with(self.settings, on_progress) as (rt, environment):
            rt.engine.on_run_recorded = on_run_recorded
            ctx = OpsContext(
                rt.db,
                rt.box,
                rt.engine,
                actor=f"cli:{user()}",
                webhooks=self.settings.effective_webhooks(),
                check_intervals=self.settings.effective_check_intervals(),
            )
            yield Operations.on(ctx), environment


def surface(config_path: Path | None, verbose: bool = False) -> Surface:
    """The daemon's API when `--api` (or MLS_SYNC_API_URL) is given, else this machine's
    config (exits 78 when it is invalid)."""
    root = click.get_current_context().find_root()
    url = root.params.get("api_url")
    if not url:
        return Surface(settings=settings_from(config_path, verbose))
    token_file: Path | None = root.params.get("api_token_file")
    return Surface(remote=RemoteTarget(url.rstrip("/"), _token(token_file)))


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        return secret_file(token_file, "--api-token-file")
    token = os.environ.get(API_TOKEN_ENV, "").strip()
    if not token:
        fail(f"--api needs a token: set {API_TOKEN_ENV} or pass --api-token-file PATH", EX_USAGE)
    return token


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


async def given_or_asked(
    get: Callable[[str], Awaitable[object]],
    record_id: str,
    env_name: str | None,
    file: Path | None,
    what: str,
) -> str | None:
    """The secret given (--...-env NAME or --...-file PATH); else, for a record that does not
    exist yet, asked for with a hidden prompt; else None: the stored one is kept."""
    if env_name or file:
        return secret_from(env_name, file, what, required=True)
    if await exists(get, record_id):
        return None
    return secret_from(None, None, what, required=True)


def echo_saved(kind: str, record_id: str, saved: tuple[View, bool], as_json: bool) -> None:
    """What an add did: `account X added` (or `updated`), or the record as JSON."""
    view, created = saved
    if as_json:
        echo_json({**view, "created": created})
    else:
        click.echo(f"{kind} {record_id} {'added' if created else 'updated'}")


async def exists(get: Callable[[str], Awaitable[object]], record_id: str) -> bool:
    """Whether `get` finds the record (an operation's get raises NotFound otherwise)."""
    try:
        await get(record_id)
    except NotFound:
        return False
    return True


def call(
    config_path: Path | None, operation: Callable[[Operations], Awaitable[T]], verbose: bool = False
) -> T:
    """Runs one operation where the command's operations run (the surface), and exits
    clearly if it is refused."""
    where = surface(config_path, verbose)

    async def main() -> T:
        async with where.open() as (ops, _):
            return await operation(ops)

    return run(main)
