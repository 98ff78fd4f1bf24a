"""The webhook deliveries' process, started by the daemon (daemon/service/delivery_process.py
has the daemon's side and says why):

    python -m daemon.service.delivery_child      # its job: one JSON line on stdin

It delivers until its stdin closes (the daemon stops, or died) or it receives SIGTERM
(systemd stopping the whole unit). Ctrl-C in a terminal is the daemon's to handle: SIGINT is
ignored here, and the daemon closes the pipe when it stops. One process at a time delivers
for a database: a child started while the one before it still finishes waits on a lock.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

import anyio
import structlog
from pydantic import ValidationError

from daemon import eventloop, logs
from daemon.encryption import SecretBox
from daemon.outbound.worker import Deliveries
from daemon.service.delivery_process import Job, Report
from daemon.service.event_watch import EventWatch
from daemon.store.database import Database, SchemaError, open_database
from daemon.store.errors import StoreError

log = structlog.get_logger("mls_sync.webhooks")

# The one process that delivers for a database (Database.alone): a child started while an
# old one still finishes waits for it; on PostgreSQL, so does every other daemon's.
DELIVERIES = "deliveries"
REPORT_EVERY = 1.0


class PipedMetrics:
    """The worker's counts, sent to the daemon every REPORT_EVERY seconds."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.results: Counter[str] = Counter()

    def delivery_results(self, result: str, count: int) -> None:
        self.results[result] += count

    async def run(self) -> None:
        while True:
            await anyio.sleep(REPORT_EVERY)
            self.flush()

    def started(self) -> None:
        """Told once, when the worker starts: the daemon logs it (and a benchmark waits for
        it: a daemon's deliveries are running long before its cycles)."""
        self._send(Report(results={}, started=True))

    def flush(self) -> None:
        if not self.results:
            return
        self._send(Report(results=dict(self.results)))
        self.results.clear()

    def _send(self, report: Report) -> None:
        try:
            self.out.write(report.model_dump_json() + "\n")
            self.out.flush()
        except OSError:  # the daemon is gone: this process is about to stop too
            pass


async def deliver(job: Job, out: TextIO) -> int:
    """Until stopped (0), or until the database cannot be used (1: the daemon starts the
    process again, after a pause)."""
    box = SecretBox(job.secret_key) if job.secret_key else None
    metrics = PipedMetrics(out)
    code = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_when_the_pipe_closes, tg.cancel_scope)
        tg.start_soon(_stop_on_sigterm, tg.cancel_scope)
        try:
            async with _opened(job) as (db, reader), db.alone(DELIVERIES, _waiting):
                watch = EventWatch(reader)
                worker = Deliveries(
                    db, box, job.webhooks, metrics, wake=watch.wait_after, reader=reader
                )
                async with anyio.create_task_group() as work:
                    work.start_soon(watch.run)
                    work.start_soon(metrics.run)
                    metrics.started()
                    await worker.run()
        except (SchemaError, StoreError) as exc:  # the database went away: one line, no trace
            log.error("webhook_process_lost_its_database", error=str(exc))
            code = 1
            tg.cancel_scope.cancel()
        finally:
            metrics.flush()
    return code


@asynccontextmanager
async def _opened(job: Job) -> AsyncIterator[tuple[Database, Database]]:
    """Its own connections: the writer (its records) and a reader (the log, the endpoints)."""
    db = await open_database(
        job.database, job.database_url, job.busy_timeout_ms, job.database_password
    )
    try:
        async with db.reader() as reader:
            yield db, reader
    finally:
        await db.close()


def _waiting() -> None:
    log.info("webhook_process_waiting", note="another process still delivers for this database")


async def _stop_when_the_pipe_closes(scope: anyio.CancelScope) -> None:
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    while True:
        await anyio.wait_readable(stdin)
        try:
            if not os.read(stdin, 4096):
                break
        except BlockingIOError:
            continue
    scope.cancel()


async def _stop_on_sigterm(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            log.info("webhook_process_stopping", signal="SIGTERM")
            scope.cancel()
            return


def lower_priority(niceness: int) -> None:
    """The sync first (docs/webhooks.md "Where deliveries run"): the niceness as given, or
    the daemon's own if it runs nicer still. Before any thread starts: on Linux a niceness
    is a thread's, and the threads made later take it from this one."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, max(niceness, current))
    except OSError:  # a system-call filter that forbids it (the shipped unit allows it)
        log.warning(
            "webhook_process_priority_unchanged",
            niceness=niceness,
            note="setpriority was refused: deliveries run at the daemon's priority; allow "
            "it (SystemCallFilter=setpriority) or set [webhooks] niceness = 0",
        )


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        job = Job.model_validate_json(sys.stdin.buffer.readline())
    except ValidationError:
        sys.exit(
            "mls-sync: this is the webhook deliveries' process, which `mls-sync run` starts "
            "itself; it read no job on its stdin"
        )
    logs.configure(job.logging.level, job.logging.format)
    lower_priority(job.webhooks.niceness)
    code = eventloop.run(deliver, job, sys.stdout)
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the daemon died first: nothing to tell, no traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


if __name__ == "__main__":
    main()
