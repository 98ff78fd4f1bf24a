"""A daemon frozen while it holds PostgreSQL's write lock or a task's lock (a VM paused, a
process stopped, a long pause of its machine) must not stop every other daemon: its kernel
still answers for its connections, so only the server can end them
(docs/postgresql.md "A daemon that freezes")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from daemon.store.errors import StoreError
from daemon.store.postgres import PostgresDatabase
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

HOLDER = """
import sys, anyio
from daemon.store.postgres import PostgresDatabase

async def main(url: str, password: str, what: str) -> None:
    db = await PostgresDatabase.open(url, password=password)
    if what == "write":
        async with db.transaction() as session:
            await session.execute("SELECT 1")
            print("holding", flush=True)
            await anyio.sleep(3600)
    else:
        async with db.alone("mail", lambda: None):
            print("holding", flush=True)
            await anyio.sleep(3600)

anyio.run(main, *sys.argv[1:])
"""


@contextmanager
def _frozen_holder(url: str, password: str, what: str) -> Iterator[None]:
    """A process that takes the lock (`write`: the write lock, in a transaction; `task`: the
    mail task's), says so, and is then stopped (SIGSTOP) holding it."""
    child = subprocess.Popen(  # noqa: S603 - our own code, fixed arguments
        [sys.executable, "-c", HOLDER, url, password, what],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "holding"
        child.send_signal(signal.SIGSTOP)
        yield
    finally:
        child.kill()
        child.wait()


async def test_a_frozen_daemon_in_a_write_transaction_lets_the_others_write_within_seconds(
    postgres_server: PostgresServer,
) -> None:
    url, password = postgres_server.new_database(), postgres_server.password
    with _frozen_holder(url, password, "write"):
        db = await PostgresDatabase.open(url, password=password)
        try:
            began = time.monotonic()
            with anyio.fail_after(40):
                while True:
                    try:
                        async with db.transaction() as session:
                            await session.execute("SELECT 1")
                        break
                    except StoreError:  # busy: the frozen process still holds the lock
                        await anyio.sleep(0.5)
            assert time.monotonic() - began < 30
        finally:
            await db.close()


async def test_a_frozen_daemon_holding_a_task_gives_it_up_within_seconds(
    postgres_server: PostgresServer,
) -> None:
    url, password = postgres_server.new_database(), postgres_server.password
    with _frozen_holder(url, password, "task"):
        db = await PostgresDatabase.open(url, password=password)
        try:
            began = time.monotonic()
            with anyio.fail_after(60):
                async with db.alone("mail", lambda: None):
                    pass
            assert time.monotonic() - began < 45
        finally:
            await db.close()
