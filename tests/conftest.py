"""Shared fixtures: real parts only. A real SQLite file in a temp dir (or, for the modules
marked `both_databases`, a database on a private PostgreSQL server too), the sandbox MLS
served over real HTTP on 127.0.0.1, and the same runtime the CLI uses."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from daemon.composition import Runtime, open_runtime
from daemon.config import Settings
from daemon.encryption import generate_key
from daemon.sandbox.mls_server import build_mls_app
from daemon.sandbox.platforms_server import SandboxPlatforms, build_platforms_app
from daemon.serving import serving
from tests import helpers
from tests.e2e.daemon_process import DaemonConfig
from tests.helpers import Live, Mls, Platforms, make_settings, open_live, sandbox_mls
from tests.postgres_server import PostgresServer

DATABASES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The tests of a module marked `both_databases` run once on each database, but those
    marked `sqlite_only` (about the SQLite file itself); `postgresql_only`: on PostgreSQL."""
    marked = metafunc.definition.get_closest_marker
    if marked("postgresql_only"):
        metafunc.parametrize("database", ["postgresql"], indirect=True)
    elif marked("both_databases") and not marked("sqlite_only"):
        metafunc.parametrize("database", DATABASES, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked `slow` first, then the others by their number of tests: under
    xdist's `--dist loadfile` (with `--no-loadscope-reorder`, scripts/check) files are handed
    out in this order, and a long one handed out last is the parallel run's tail. xdist's own
    order, by number of tests alone, handed out last the files of a few long tests."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    tests_in = Counter(item.path for item in items)
    # Stable, and the path breaks ties: each module stays whole, its tests in their order.
    items.sort(key=lambda item: (item.path not in slow, -tests_in[item.path], str(item.path)))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server per test process, started when a test first asks for PostgreSQL. Its
    password reaches libpq as PGPASSWORD, for the tests' runtimes and the daemons they start;
    MLS_SYNC_DATABASE_PASSWORD has tests of its own."""
    with PostgresServer.running() as server:
        os.environ["PGPASSWORD"] = server.password
        try:
            yield server
        finally:
            os.environ.pop("PGPASSWORD", None)


@pytest.fixture(autouse=True)
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """Which database the test's settings name: SQLite, or a new PostgreSQL database."""
    which: str = getattr(request, "param", "sqlite")
    if which == "sqlite":
        yield which
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    helpers.postgresql_url = server.new_database()
    try:
        yield which
    finally:
        helpers.postgresql_url = None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def secret_key() -> str:
    return generate_key()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Fast retries, so fault tests take milliseconds, not the production backoff."""
    return make_settings(tmp_path)


@pytest.fixture
async def mls() -> AsyncIterator[Mls]:
    sandbox = sandbox_mls()
    async with serving(build_mls_app(sandbox)) as url:
        yield sandbox, url


@pytest.fixture
async def runtime(settings: Settings, secret_key: str) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        yield rt


@pytest.fixture
async def platforms() -> AsyncIterator[Platforms]:
    state = SandboxPlatforms()
    async with serving(build_platforms_app(state)) as url:
        yield state, url


@pytest.fixture
async def live(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms
) -> AsyncIterator[Live]:
    """The runtime with the sandbox MLS and the sandbox platforms, all over loopback HTTP."""
    async with open_live(tmp_path, secret_key, mls, platforms) as ready:
        yield ready


@pytest.fixture
def daemon_config(tmp_path: Path, secret_key: str, platforms: Platforms) -> DaemonConfig:
    """config.toml for `mls-sync run` in tmp_path on a free port, platforms the sandbox's."""
    return DaemonConfig.write(tmp_path, platforms[1], secret_key)
