"""A private PostgreSQL server for the tests: Debian's binaries, a fresh cluster in a temp
folder, on a free port of 127.0.0.1, gone when the tests end. Nothing is mocked: the store
runs on it as it would on a production server.

The daemon's role (`mls_sync`) signs in with a password (SCRAM), as production does; the
tests' own administration (a database per test) goes through the superuser over the local
socket. As root, the server runs as the `postgres` user, since PostgreSQL refuses root.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.ports import POSTGRESQL, free_port

ROLE = "mls_sync"
INSTALL_HINT = (
    "PostgreSQL's server binaries are not installed: run scripts/check (it installs Debian's "
    "postgresql package), or `apt-get install postgresql`"
)


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise RuntimeError(INSTALL_HINT)


def _major(path: str) -> int:
    return int(Path(path).parent.parent.name)


def _parent_of(stat: Path) -> int | None:
    """The parent pid in a /proc/<pid>/stat, None for a process gone meanwhile."""
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class PostgresServer:
    folder: Path
    bindir: Path
    port: int
    password: str
    _as_user: list[str]

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[PostgresServer]:
        """A server for the length of the block, gone after it."""
        server = cls.start()
        try:
            yield server
        finally:
            server.stop()

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = _bindir()
        # Not under pytest's own temp folder: that one is root's alone, and the server's
        # user must reach its files.
        folder = Path(tempfile.mkdtemp(prefix="mls-sync-pg-"))
        as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        server = cls(folder, bindir, free_port(POSTGRESQL), secrets.token_urlsafe(16), as_user)
        try:
            server._init()
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, text=True)  # noqa: S603 - our own arguments

    def _init(self) -> None:
        data = self.folder / "data"
        self._run(
            str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
            "--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256",
        )  # fmt: skip
        self.resume()
        self.admin(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{self.password}'")

    def resume(self) -> None:
        """Starts the server (again, after `pause`), on the same port, with its data."""
        # Speed over durability: a test server's data dies with it anyway.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-o", options, "-l",
            str(self.folder / "server.log"), "-w", "start",
        )  # fmt: skip

    def pause(self) -> None:
        """Stops the server, its data kept: the database is unreachable until `resume`."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w",
            "stop",
        )  # fmt: skip

    def freeze(self) -> None:
        """The server stops answering without closing a connection, as a frozen VM or a
        stopped process does: every one of its processes is stopped (SIGSTOP) until `thaw`.
        The postmaster first, then its children, until a look finds none left running: a
        child it forked meanwhile is found by the next look."""
        frozen: list[int] = []
        while unfrozen := [pid for pid in self._processes() if pid not in frozen]:
            for pid in unfrozen:  # the postmaster first
                with suppress(ProcessLookupError):  # a backend that just ended
                    os.kill(pid, signal.SIGSTOP)
            frozen += unfrozen

    def thaw(self) -> None:
        for pid in self._processes():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _processes(self) -> list[int]:
        """The postmaster (the first line of its pid file) and its children."""
        postmaster = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        children = [
            int(stat.parent.name)
            for stat in Path("/proc").glob("[0-9]*/stat")
            if _parent_of(stat) == postmaster
        ]
        return [postmaster, *children]

    def admin(self, sql: str, database: str = "postgres") -> None:
        """One statement as the superuser, over the local socket."""
        self._run(
            str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
            str(self.folder), "-p", str(self.port), "-U", "postgres", "-d", database,
            "-c", sql,
        )  # fmt: skip

    def new_database(self) -> str:
        """An empty database of the daemon's role; its URL (no password in it: the daemon
        takes that from MLS_SYNC_DATABASE_PASSWORD, as in production)."""
        name = f"t_{secrets.token_hex(6)}"
        self.admin(f"CREATE DATABASE {name} OWNER {ROLE} TEMPLATE template0 STRATEGY FILE_COPY")
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        data = self.folder / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run(  # noqa: S603 - our own arguments
                [*self._as_user, str(self.bindir / "pg_ctl"), "-D", str(data), "-m",
                 "immediate", "-w", "stop"],
                capture_output=True, check=False,
            )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)
