"""`mls-sync ARGS` as a real process that skips the interpreter's start: a fork server.

A CLI process spends most of its CPU importing (docs/benchmarks.md "The test suite's CPU"), and
the suite starts hundreds of them. This module's server, one per test process, imports what
every command imports once, then forks a child per command. The child is a process of its own:
its argv, working directory, environment and stdio pipes are the command's, it runs the
console script's own entry point (daemon.launch.main), and its exit code or signal is
reported as `subprocess.run` reports them. What it does not exercise is the interpreter's
start and the imports themselves; the tests that start the CLI or the daemon with `subprocess`
(tests/helpers.py `cli_sync`, tests/e2e/daemon_process.py and others) still do.

The server is single-threaded and forks only between commands, never while a loop or a thread
runs, so a child starts from a process that has done nothing but import.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# What the server imports before it forks: every command imports daemon.main; the sandbox's
# servers are imported by the commands that run on the sandbox.
PRELOADED = ("daemon.main", "daemon.sandbox.environment")
START_TIMEOUT_SECONDS = 60.0


def run(
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdin: str | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """`mls-sync ARGS` in `cwd` with exactly `env`, `stdin` as its input: what
    `subprocess.run(..., capture_output=True, text=True)` would return."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    conn = _server().connect()
    try:
        socket.send_fds(conn, [b"\0"], [in_r, out_w, err_w])
        request = {"args": args, "cwd": str(cwd), "env": env}
        conn.sendall(json.dumps(request).encode() + b"\n")
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    replies = conn.makefile("rb")
    pid = int(replies.readline())
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
    conn.settimeout(timeout)
    try:
        status = int(replies.readline())
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise subprocess.TimeoutExpired(["mls-sync", *args], timeout) from None
    finally:
        conn.close()
    for reader in readers:
        reader.join(timeout=30)
    return subprocess.CompletedProcess(
        ["mls-sync", *args], status, b"".join(out).decode(), b"".join(err).decode()
    )


def _drain(fd: int, into: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as stream:
        while chunk := stream.read1(65536):
            into.append(chunk)


class _Server:
    """The fork server of this test process, started at its first command."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="mls-sync-forkserver-"))
        self.path = self._dir / "socket"
        log = (self._dir / "server.log").open("wb")
        self._process = subprocess.Popen(  # noqa: S603 - this module, as a script
            [sys.executable, "-m", "tests.cli_forkserver", str(self.path)],
            stdin=subprocess.PIPE,  # its end of input: the server ends with this process
            stdout=log,
            stderr=log,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self.path.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the CLI fork server did not start: {self._dir}/server.log")
            time.sleep(0.02)

    def connect(self) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(self.path))
        return conn

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


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
            pid = _start(conn, closed_in_child=(listener, wake_r, wake_w, parent))
            waiting[pid] = conn
        _report_ended(waiting)


def _start(conn: socket.socket, closed_in_child: tuple[Any, ...]) -> int:
    _, fds, _, _ = socket.recv_fds(conn, 1, 3)
    request = json.loads(conn.makefile("rb").readline())
    pid = os.fork()
    if pid == 0:
        for thing in closed_in_child:
            if isinstance(thing, socket.socket):
                thing.close()
            else:
                os.close(thing)
        conn.close()
        _child(fds, request)  # never returns
    for fd in fds:
        os.close(fd)
    conn.sendall(f"{pid}\n".encode())
    return pid


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
    sys.argv = ["mls-sync", *request["args"]]
    code = 1
    try:
        from daemon.launch import main

        main()
        code = 0
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def _exit_code(code: object) -> int:
    """What the interpreter does with SystemExit's argument."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    serve(sys.argv[1])
