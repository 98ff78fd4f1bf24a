"""`mls-sync ARGS` as a real process that skips the interpreter's start: a fork server.

A CLI process or a daemon spends most of its start importing (docs/benchmarks.md "The test
suite's CPU"), and the suite starts hundreds of them. This module's server, one per test
process, imports the CLI, the sandbox and what a daemon imports once it runs (PRELOADED),
then forks a child per command. The child is a process of its own: its argv, working
directory, environment and stdio are the command's, it runs the console script's entry point
(daemon.launch.main), or with `module` another module of this project as `python -m` would,
and ends as an interpreter ends (atexit, its threads joined), and its exit code or signal is
reported as `subprocess` reports them. What it does not exercise is the interpreter's start
and the imports; the tests that start the CLI or the daemon with `subprocess`
(tests/helpers.py `cli_sync`, the operator story, the daemons under another program) still
do, and so does any command whose environment sets what an interpreter reads only at its
start (`PYTHON*`).

The server is single-threaded and forks only between commands, never while a loop or a thread
runs, so a child starts from a process that has done nothing but import. Its children share
its hash seed: the order of a set of strings is the same in every one.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.paths import REPO

# What the server imports before it forks: every command imports daemon.main; the sandbox's
# servers are imported by the commands that run on the sandbox; `run` (most of the children
# are daemons) and `sync` import the service, the MLS engine and the store's driver, and
# once running, uvloop (through anyio), uvicorn's protocols and its lifespan (off, as
# daemon/serving.py sets it), httpcore behind httpx, and the pydantic v1 module FastAPI
# looks in when it builds its routes. Imported in each child instead, they were most of a
# daemon's CPU up to READY (docs/benchmarks.md "The test suite's CPU").
PRELOADED = (
    "daemon.main",
    "daemon.sandbox.environment",
    "daemon.launch",
    "daemon.service.daemon",
    "daemon.aiohttp_transport",
    "daemon.store.sqlite",
    "uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.off",
    "apscheduler.executors.asyncio",
    "httpcore",
    "pydantic.v1",
)
START_TIMEOUT_SECONDS = 60.0


def run(
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdin: str | None = None,
    timeout: float | None = 120.0,
    module: str | None = None,
    fresh: bool = False,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """`mls-sync ARGS` in `cwd` with exactly `env`, `stdin` as its input: what
    `subprocess.run(..., capture_output=True, text=True)` would return. `module`, `fresh` and
    `prefix`: as `start` takes them."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    stdio = (in_r, out_w, err_w)
    child = start(args, cwd=cwd, env=env, stdio=stdio, module=module, fresh=fresh, prefix=prefix)
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [
        threading.Thread(target=_drain, args=(out_r, out), daemon=True),
        threading.Thread(target=_drain, args=(err_r, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    with contextlib.suppress(BrokenPipeError), os.fdopen(in_w, "wb") as given:
        if stdin:
            given.write(stdin.encode())
    try:
        status = child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise
    for reader in readers:
        reader.join()  # the pipes' ends are all closed once the child has ended
    return subprocess.CompletedProcess(child.args, status, _text(out), _text(err))


def _text(chunks: list[bytes]) -> str:
    """As `text=True` reads it: universal newlines."""
    return b"".join(chunks).decode().replace("\r\n", "\n").replace("\r", "\n")


def start(
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdio: tuple[int, int, int],
    module: str | None = None,
    fresh: bool = False,
    prefix: Sequence[str] = (),
) -> Forked | subprocess.Popen[bytes]:
    """`mls-sync ARGS` started in `cwd` with exactly `env`, on the file descriptors `stdio`
    (its stdin, stdout and stderr, closed here once the child has them): the running
    process. A fresh interpreter when `env` sets what an interpreter reads only at its start
    differently from the server's (a PYTHONPATH that shadows a package, say), when asked
    (`fresh`), and under a `prefix` program (which must exec it, if its pid is to be the
    child's). `module`: the child runs `python -m MODULE ARGS` instead, a module of this
    project (the benchmark starts its measured processes so: tests/bench/launch.py)."""
    if prefix or fresh or _at_start(env) != _at_start(_SERVERS_ENVIRONMENT):
        try:
            return subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
                [*prefix, sys.executable, "-m", module or "daemon", *args],
                cwd=cwd,
                env=env,
                stdin=stdio[0],
                stdout=stdio[1],
                stderr=stdio[2],
            )
        finally:
            for fd in set(stdio):
                os.close(fd)
    try:
        server = _server()
        conn = server.connect()
        socket.send_fds(conn, [b"\0"], list(stdio))
        request = {"args": args, "cwd": str(cwd), "env": env, "module": module}
        conn.sendall(json.dumps(request).encode() + b"\n")
    finally:
        for fd in set(stdio):
            os.close(fd)
    return Forked([module or "mls-sync", *args], conn, server)


def _at_start(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


_SERVERS_ENVIRONMENT = dict(os.environ)  # what a server started from this process inherits


class Forked:
    """A child of the fork server, read as a `subprocess.Popen` is: its pid, `poll`, `wait`,
    signals, from any thread. Its exit status arrives on the connection that started it, once
    the server has reaped it, so a process that has ended is never left a zombie that looks
    alive."""

    def __init__(self, args: list[str], conn: socket.socket, server: _Server) -> None:
        self.args = args
        self.returncode: int | None = None
        self._conn = conn
        self._server = server
        self._read = b""
        self._lock = threading.Lock()  # one reader of the connection at a time
        self.pid = 0  # none yet: `_gone` kills no process group
        line = self._line(timeout=START_TIMEOUT_SECONDS)
        assert line is not None
        self.pid = int(line)

    def poll(self) -> int | None:
        # As Popen.poll: a thread that finds another one reading says "still running".
        if self.returncode is None and self._lock.acquire(blocking=False):
            try:
                if self.returncode is None and (line := self._line(timeout=0)) is not None:
                    self._ended(int(line))
            finally:
                self._lock.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        with self._lock:
            if self.returncode is None:
                try:
                    line = self._line(timeout)
                except TimeoutError:
                    line = None
                if line is None:  # the time ran out (with a timeout of 0: no line yet)
                    raise subprocess.TimeoutExpired(self.args, timeout or 0)
                self._ended(int(line))
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # an ended child's pid may be another process's by now
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _gone(self) -> RuntimeError:
        """The server ended before it said how its child ended: the child is killed (no one
        would reap it), counted as ended, and the next command starts a new server."""
        global _running
        if self.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._ended(-signal.SIGKILL)
        else:
            self._conn.close()
        if _running is self._server:
            _running = None
        return RuntimeError(f"the CLI fork server went away: see {self._server.log}")

    def _ended(self, code: int) -> None:
        self.returncode = code
        self._conn.close()

    def _line(self, timeout: float | None) -> bytes | None:
        """The next line the server sent; with `timeout` 0, None when no whole line is there
        yet. A server gone before it sent the line is an error. Called with `_lock` held, or
        before anyone else has the object."""
        self._conn.settimeout(timeout)
        while b"\n" not in self._read:
            try:
                chunk = self._conn.recv(64)
            except (BlockingIOError, TimeoutError):
                if timeout == 0:
                    return None
                raise
            if not chunk:
                raise self._gone()
            self._read += chunk
        line, self._read = self._read.split(b"\n", 1)
        return line


def _drain(fd: int, into: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as stream:
        while chunk := stream.read1(65536):
            into.append(chunk)


class _Server:
    """The fork server of this test process, started at its first command."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="mls-sync-forkserver-"))
        self.path = self._dir / "socket"
        self.log = self._dir / "server.log"
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - this module, as a script
                [sys.executable, "-m", "tests.cli_forkserver", str(self.path)],
                cwd=REPO,  # where `tests` is a package
                stdin=subprocess.PIPE,  # its end of input: the server ends with this process
                stdout=log,
                stderr=log,
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self.path.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the CLI fork server did not start: see {self.log}")
            time.sleep(0.02)

    def connect(self) -> socket.socket:
        global _running
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(self.path))
        except OSError:
            conn.close()
            _running = None  # the next command starts a new one
            raise RuntimeError(f"the CLI fork server went away: see {self.log}") from None
        return conn

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


_running: _Server | None = None


def _server() -> _Server:
    global _running
    if _running is None:
        _running = _Server()
    return _running


# -- the server ----------------------------------------------------------------------------------


def serve(path: str) -> None:
    import importlib

    from daemon import gc_tuning

    gc_tuning.set_thresholds()  # as daemon.launch does before its imports
    for module in PRELOADED:
        importlib.import_module(module)
    assert threading.active_count() == 1, "an import started a thread: forking is unsafe"
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    listener.listen(64)
    os.rename(path + ".new", path)  # the client waits for the name: it appears ready
    waiting: dict[int, socket.socket] = {}
    parent = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([listener, wake_r, parent], [], [])
        if parent in ready and not os.read(parent, 1):
            return  # the test process is gone
        if wake_r in ready:
            os.read(wake_r, 4096)
        if listener in ready:
            conn, _ = listener.accept()
            others = tuple(waiting.values())
            pid = _start(conn, closed_in_child=(listener, wake_r, wake_w, parent, *others))
            if pid is not None:
                waiting[pid] = conn
        _report_ended(waiting)


def _start(conn: socket.socket, closed_in_child: tuple[Any, ...]) -> int | None:
    """Forks the child a request asks for; its pid, or None for a request that cannot be
    served (its client finds the connection closed). Never ends the server."""
    fds: list[int] = []
    try:
        _, fds, _, _ = socket.recv_fds(conn, 1, 3)
        request = json.loads(conn.makefile("rb").readline())
        pid = os.fork()
    except (OSError, ValueError):
        for fd in fds:
            os.close(fd)
        conn.close()
        return None
    if pid == 0:
        for thing in closed_in_child:
            if isinstance(thing, socket.socket):
                thing.close()
            else:
                os.close(thing)
        conn.close()
        _child(fds, request)
        raise SystemExit(0)  # the command returned: the interpreter ends, as after a script
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(f"{pid}\n".encode())
    except OSError:  # its client gave up: no one would wait for the child
        os.kill(pid, signal.SIGKILL)
    return pid  # reaped, and reported if anyone still asks, by `_report_ended`


def _report_ended(waiting: dict[int, socket.socket]) -> None:
    while waiting:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        conn = waiting.pop(pid)
        code = os.waitstatus_to_exitcode(status)  # -N for signal N, as subprocess reports
        with contextlib.suppress(OSError):
            conn.sendall(f"{code}\n".encode())
        conn.close()


def _child(fds: list[int], request: dict[str, Any]) -> None:
    import random

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    random.seed()  # not the server's sequence, shared by every child
    if request.get("module"):
        import runpy

        sys.argv = [request["module"], *request["args"]]  # runpy sets argv[0] to its path
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        return
    sys.argv = ["mls-sync", *request["args"]]
    from daemon.launch import main

    # Whatever it raises ends this process as it ends a fresh one: SystemExit's code, or a
    # traceback and 1; then atexit, and a wait for the threads left running.
    main()


if __name__ == "__main__":
    serve(sys.argv[1])
