"""`mls-sync run` as a real subprocess, with a real systemd notify socket to listen on: its
config, its database and the process, the set-up the e2e, reliability and integration tests
that run the daemon share."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from prometheus_client.parser import text_string_to_metric_families

from daemon.composition import Runtime, open_runtime
from daemon.config import Settings, load_settings
from daemon.sandbox.platforms_server import sandbox_urls
from tests import cli_forkserver
from tests.ports import free_port

API_TOKEN = "e2e-api-token-8c1d"
DATABASE = "state/daemon.db"  # relative to the config's folder


def write_config(
    path: Path,
    port: int,
    platforms_url: str,
    interval: int = 900,
    grace: float = 20.0,
    check_tiers: bool = False,
) -> None:
    """Check tiers are off unless asked for: most tests count on each cycle asking for every
    listing, and those of the tiers turn them on (tests/e2e/test_check_tiers.py)."""
    urls = "\n".join(f'{name} = "{url}"' for name, url in sandbox_urls(platforms_url).items())
    path.write_text(f"""
[database]
path = "{DATABASE}"
[sync]
interval_seconds = {interval}
jitter_seconds = 0
[mls]
backoff_initial_seconds = 0.01
backoff_max_seconds = 0.05
timeout_seconds = 2
[platforms]
{urls}
timeout_seconds = 2
[daemon]
http_port = {port}
shutdown_grace_seconds = {grace}
[sandbox]
enabled = false
[push]
[check_intervals]
enabled = {str(check_tiers).lower()}
""")


@dataclass(frozen=True)
class DaemonConfig:
    """A config.toml for `mls-sync run` in a folder of its own (sandbox off, platforms on
    loopback), the port it serves on and the key of its database: what a test seeds, starts
    and reads back."""

    path: Path
    port: int
    secret_key: str

    @classmethod
    def write(
        cls,
        folder: Path,
        platforms_url: str,
        secret_key: str,
        interval: int = 900,
        grace: float = 20.0,
        check_tiers: bool = False,
    ) -> DaemonConfig:
        path = folder / "config.toml"
        port = free_port()
        write_config(path, port, platforms_url, interval, grace, check_tiers)
        return cls(path, port, secret_key)

    @property
    def database(self) -> Path:
        return self.path.parent / DATABASE

    def settings(self) -> Settings:
        return load_settings(self.path, {})

    def runtime(self) -> AbstractAsyncContextManager[Runtime]:
        """The runtime on the daemon's own settings and database, to seed it or read it."""
        return open_runtime(self.settings(), {"MLS_SYNC_SECRET_KEY": self.secret_key})

    def add(self, section: str, **values: float | str) -> None:
        """Adds settings to a section: `add("platforms", retry_max_seconds=1)`."""
        header = f"[{section}]\n"
        text = self.path.read_text()
        assert header in text, f"write_config writes no [{section}] section"
        lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        self.path.write_text(text.replace(header, header + lines, 1))

    def start(
        self,
        api_token: str | None = API_TOKEN,
        watchdog_usec: int | None = None,
        read_notifications: bool = True,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> Daemon:
        """`mls-sync run` on this config; `env`: more of its environment; `prefix`: a
        command it runs under (which must exec it, so that its pid is the daemon's)."""
        return Daemon.start(
            self.path,
            self.port,
            self.secret_key,
            api_token,
            watchdog_usec,
            read_notifications,
            env,
            prefix,
        )


class NotifyListener:
    """The notify socket, read all the time by a thread of its own, as systemd reads it.

    A socket read only when a test asks would fill up while the test waits on something else
    (a browser loading a page): the kernel queues a few datagrams only, and the daemon's next
    notification then waits for room, its event loop with it."""

    def __init__(self, reading: bool = True) -> None:
        self.name = f"mls-sync-e2e-{uuid.uuid4().hex}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + self.name)  # an abstract socket, as systemd may hand out
        self.socket.settimeout(0.1)  # how soon the thread sees that it was closed
        self.received: list[str] = []
        self._trigger: tuple[str, int, Callable[[], None]] | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name=self.name, daemon=True)
        if reading:  # not reading: a systemd that is stuck, for the test of that
            self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                message = self.socket.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with self._lock:
                self.received.append(message)
                trigger = self._trigger
                if trigger and text_at(self.received, trigger[0], trigger[1]) is not None:
                    self._trigger = None
                    trigger[2]()

    def messages(self) -> list[str]:
        with self._lock:
            return list(self.received)

    def on_message(self, text: str, action: Callable[[], None]) -> None:
        """Runs `action` in the reading thread as soon as a message containing `text`
        arrives: no polling delay between the notification and the action."""
        with self._lock:
            after = len(self.received)
            self._trigger = (text, after, action)

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.socket.close()


def text_at(messages: list[str], text: str, after: int) -> int | None:
    """The index of the first message at or after `after` that contains `text`."""
    return next((i for i, m in enumerate(messages) if i >= after and text in m), None)


@dataclass
class Daemon:
    """`mls-sync run` in a process of its own: started by the CLI fork server
    (tests/cli_forkserver.py), or, under a `prefix` program, as a fresh interpreter."""

    proc: subprocess.Popen[bytes] | cli_forkserver.Forked
    url: str
    notify: NotifyListener
    log_path: Path

    @classmethod
    def start(
        cls,
        config: Path,
        port: int,
        secret_key: str,
        api_token: str | None = API_TOKEN,
        watchdog_usec: int | None = None,
        read_notifications: bool = True,
        more_env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> Daemon:
        notify = NotifyListener(read_notifications)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLS_SYNC_")}
        env.update({"MLS_SYNC_SECRET_KEY": secret_key, "NOTIFY_SOCKET": "@" + notify.name})
        env.update(more_env or {})
        if api_token:
            env["MLS_SYNC_API_TOKEN"] = api_token
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        log_path = config.parent / f"daemon-{uuid.uuid4().hex[:6]}.log"
        with log_path.open("wb") as log:
            logged = log.fileno()
            stdio = (os.open(os.devnull, os.O_RDONLY), os.dup(logged), os.dup(logged))
            proc = cli_forkserver.start(
                ["run", "--config", str(config)],
                cwd=config.parent,
                env=env,
                stdio=stdio,
                prefix=prefix,
            )
        return cls(proc, f"http://127.0.0.1:{port}", notify, log_path)

    @property
    def received(self) -> list[str]:
        """Every notification so far, in the order sent."""
        return self.notify.messages()

    async def wait_notify(self, text: str, after: int = 0, timeout: float = 60) -> int:
        """Waits for a datagram containing `text` (at index >= after); returns its index. The
        timeout only ends a wait that would fail, so it is long enough for a daemon starting
        on a slow machine with the suite's other processes beside it."""
        with anyio.fail_after(timeout):
            while (index := text_at(self.received, text, after)) is None:
                self._check_alive()
                await anyio.sleep(0.05)
            return index

    async def signal_on_notify(
        self,
        text: str,
        sig: signal.Signals,
        timeout: float = 60,
        first: signal.Signals | None = None,
    ) -> None:
        """Sends `sig` the instant a datagram containing `text` arrives (no polling delay).
        `first`: a signal sent once the wait is armed, for a datagram it causes (sent
        before arming, the datagram could arrive, and be missed, before the wait began)."""
        sent = threading.Event()

        def send() -> None:
            self.send(sig)
            sent.set()

        self.notify.on_message(text, send)
        if first is not None:
            self.send(first)
        with anyio.fail_after(timeout):
            while not sent.is_set():
                self._check_alive()
                await anyio.sleep(0.01)

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited {self.proc.returncode}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> tuple[int, float]:
        started = time.monotonic()
        with anyio.fail_after(timeout):
            while (code := self.proc.poll()) is None:
                await anyio.sleep(0.05)
        return code, time.monotonic() - started

    async def get(self, path: str, token: str | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            return await client.get(path, headers=_auth(token))

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = API_TOKEN,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            return await client.request(
                method, path, headers={**_auth(token), **(headers or {})}, **kwargs
            )

    async def wait_for_run(
        self, minimum_id: int, timeout: float = 60, trigger: str | None = None
    ) -> dict[str, Any]:
        """Waits until a finished run with id >= minimum_id (and `trigger`, when given) shows
        in /status."""
        with anyio.fail_after(timeout):
            while True:
                status = (await self._get_from_live_daemon("/status")).json()
                done = [
                    r
                    for r in status["last_runs"]
                    if r["id"] >= minimum_id
                    and r["finished_at"]
                    and trigger in (None, r["trigger"])
                ]
                if done:
                    return dict(done[0])
                await anyio.sleep(0.1)

    async def metric(self, name: str, **labels: str) -> float | None:
        """One sample of /metrics, or None when the series is not there."""
        return (await self.scrape()).get(name, labels)

    async def scrape(self) -> Scrape:
        """Every sample of one /metrics answer: values read together, at one moment."""
        text = (await self._get_from_live_daemon("/metrics")).text
        return Scrape(
            [
                (sample.name, dict(sample.labels), float(sample.value))
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            ]
        )

    async def _get_from_live_daemon(self, path: str) -> httpx.Response:
        """A daemon that died says how (its exit status and log), not "connection refused"."""
        self._check_alive()
        try:
            return await self.get(path)
        except httpx.TransportError:
            with anyio.move_on_after(2):
                while self.proc.poll() is None:
                    await anyio.sleep(0.05)
            self._check_alive()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.notify.close()


@dataclass(frozen=True)
class Scrape:
    samples: list[tuple[str, dict[str, str], float]]

    def get(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The sample's value, or None when the series is not there."""
        wanted = labels or {}
        return next((v for n, got, v in self.samples if n == name and got == wanted), None)

    def series(self, name: str) -> list[dict[str, str]]:
        """The labels of every series of `name`."""
        return [labels for n, labels, _ in self.samples if n == name]


# Nothing listens on port 9 of loopback: platforms pointed here can neither leave the machine
# nor answer.
NOWHERE = "http://127.0.0.1:9"


@contextmanager
def api_client(folder: Path, secret_key: str) -> Iterator[httpx.Client]:
    """`mls-sync run` (no cycles of its own, platforms nowhere) started in `folder`, and a
    client that holds its API token; the daemon must still be alive at the end."""
    daemon = DaemonConfig.write(folder, NOWHERE, secret_key, interval=86_400).start()
    try:
        anyio.run(daemon.wait_notify, "READY=1")
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        with httpx.Client(base_url=daemon.url, headers=headers, timeout=10) as client:
            yield client
        assert daemon.proc.poll() is None, daemon.log()
    finally:
        daemon.stop()


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
