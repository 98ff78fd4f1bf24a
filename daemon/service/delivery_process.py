"""The webhook deliveries in a process of their own, a child of the daemon (docs/webhooks.md
"Where deliveries run"): the sync's event loop never waits on a receiver's round trip, and
the deliveries run on another core while a cycle takes one. It is started once an enabled
endpoint exists, seen by the lag's measure of every second.

The daemon writes the child's job (the database, the [webhooks] settings, the secret key, the
log settings) as one JSON line on its stdin and keeps that pipe open: the child stops when the
pipe closes, so it never outlives the daemon, even one killed with SIGKILL. The child writes
what the daemon's metrics need as JSON lines on its stdout; its logs go to its stderr
(under systemd, the journal, as the daemon's). A child that dies is started again, after a
pause that grows while it keeps dying. This module is the daemon's side;
daemon/service/delivery_child.py the child's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from subprocess import PIPE
from typing import Protocol

import anyio
import structlog
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import BaseModel, ConfigDict, ValidationError

from daemon.config import LoggingSettings, Settings, WebhookSettings
from daemon.outbound.worker import DeliveryMetrics, undelivered_ages
from daemon.store.database import Database
from daemon.store.errors import StoreError
from daemon.timestamps import utcnow

log = structlog.get_logger("mls_sync.webhooks")

COMMAND = (sys.executable, "-m", "daemon.service.delivery_child")
# A child that has not stopped this long after its pipe closed is killed: longer than its
# last record may take to be written (daemon/store/until_written.py), so a stop never cuts it.
STOP_SECONDS = 15.0
FIRST_PAUSE = 1.0  # before the first restart; doubled at each death that follows soon
LONGEST_PAUSE = 60.0
STABLE_SECONDS = 60.0  # a child that ran this long died on its own: the pause starts again
LINE_BYTES = 1 << 20
MEASURE_EVERY = 1.0
SYSTEMD_ONLY = frozenset(
    {"CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
)


class Job(BaseModel):
    """What the child needs, sent once on its stdin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database: Path
    database_url: str | None = None  # PostgreSQL instead of the file at `database`
    database_password: str | None = None  # over the pipe, as the secret key
    busy_timeout_ms: int
    webhooks: WebhookSettings
    logging: LoggingSettings
    secret_key: str | None  # over the pipe: never in argv or the environment of the child

    @classmethod
    def of(
        cls, settings: Settings, secret_key: str | None, database_password: str | None = None
    ) -> Job:
        """The job for the daemon's settings (webhooks as the daemon applies them)."""
        return cls(
            database=settings.database.path,
            database_url=settings.database.url or None,
            database_password=database_password,
            busy_timeout_ms=settings.database.busy_timeout_ms,
            webhooks=settings.effective_webhooks(),
            logging=settings.logging,
            secret_key=secret_key,
        )


class Report(BaseModel):
    """One line from the child: deliveries by result since its last line. Its first line
    says it has started: it holds the deliverer's lock and has opened the database."""

    model_config = ConfigDict(extra="forbid")

    results: dict[str, int]
    started: bool = False


class ProcessMetrics(DeliveryMetrics, Protocol):
    def set_oldest_undelivered(self, ages: dict[int, float]) -> None: ...


class DeliveryProcess:
    def __init__(
        self,
        job: Job,
        metrics: ProcessMetrics,
        reader: Database,
        command: Sequence[str] = COMMAND,
    ) -> None:
        self.job = job
        self.metrics = metrics
        self.reader = reader  # the daemon's own: the lag is measured here, child or not
        self.command = list(command)
        self.scope = anyio.CancelScope()
        self.pid: int | None = None  # the child's, while it runs
        self.started = anyio.Event()  # set once a child has started; a new one for the next
        self._renewed = anyio.Event()  # set by `renew`; a new one for each child
        self._wanted = anyio.Event()  # set once an enabled endpoint is seen

    def renew(self, logging: LoggingSettings) -> None:
        """A reload changed the log settings: the child is told to stop (its pipe closes)
        and started again at once with them. Nothing is lost: what it had not delivered
        waits in the log, and the answers it had are recorded before it goes."""
        self.job = self.job.model_copy(update={"logging": logging})
        self._renewed.set()

    def stop(self) -> None:
        """The daemon stops: the child is told (its pipe closes) and is not started again."""
        self.scope.cancel()

    async def run(self) -> None:
        with self.scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._measure_lag)
                # With no endpoint there is nothing to deliver: no process, its imports and
                # its memory, until one is added (then it stays, as endpoints come and go).
                await self._wanted.wait()
                await self._supervise()

    async def _measure_lag(self) -> None:
        """Every second, from the daemon's own reads: while the child is down, the ages keep
        growing, which is what an alert on them should see. The first enabled endpoint it
        sees starts the child."""
        while True:
            try:
                ages = await undelivered_ages(self.reader, utcnow())
                self.metrics.set_oldest_undelivered(ages)
                if ages:
                    self._wanted.set()
            except StoreError as exc:  # looked at again in a second
                log.warning("webhook_lag_not_read", error=str(exc))
            await anyio.sleep(MEASURE_EVERY)

    async def _supervise(self) -> None:
        pause = FIRST_PAUSE
        while True:
            started = anyio.current_time()
            self._renewed = anyio.Event()
            try:
                code = await self._once()
            except Exception as exc:  # cannot start it (no fd, no python): try again later
                log.error("webhook_process_not_started", error=type(exc).__name__)
                code = -1
            if self._renewed.is_set():
                log.info("webhook_process_renewed", exit_code=code)
                continue
            if anyio.current_time() - started >= STABLE_SECONDS:
                pause = FIRST_PAUSE
            if code in (0, -signal.SIGTERM):  # told to stop: by systemd, or a person
                log.info("webhook_process_stopped", restart_in_seconds=pause)
            else:
                log.error(
                    "webhook_process_exited",
                    exit_code=code,
                    restart_in_seconds=pause,
                    note="webhook deliveries wait until it is started again; its last "
                    "log lines say why it stopped",
                )
            await anyio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    async def _once(self) -> int:
        process = await anyio.open_process(
            self.command, stdin=PIPE, stdout=PIPE, stderr=None, env=_child_environment()
        )
        self.pid = process.pid
        try:
            assert process.stdin is not None and process.stdout is not None
            await process.stdin.send(self.job.model_dump_json().encode() + b"\n")
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._stop_when_renewed, process)
                if not await self._read_reports(BufferedByteReceiveStream(process.stdout)):
                    process.kill()
                tg.cancel_scope.cancel()
            return await process.wait()
        finally:
            self.pid = None
            if self.started.is_set():  # one the next child sets (an unset one still serves)
                self.started = anyio.Event()
            with anyio.CancelScope(shield=True):
                await _end(process)

    async def _stop_when_renewed(self, process: Process) -> None:
        await self._renewed.wait()
        await _close_pipe(process)

    async def _read_reports(self, lines: BufferedByteReceiveStream) -> bool:
        """Until the child closes its stdout (it has ended): True; False when what it wrote
        cannot be read as reports (it is then killed, and started again)."""
        while True:
            try:
                line = await lines.receive_until(b"\n", LINE_BYTES)
            except (anyio.IncompleteRead, anyio.EndOfStream):
                return True
            except anyio.DelimiterNotFound:
                log.error("webhook_process_report_unreadable", note="a line too long")
                return False
            try:
                report = Report.model_validate_json(line)
            except ValidationError:
                # Only the type of fault: the line is the child's, but logs never echo input.
                log.warning("webhook_process_report_unreadable", note="not a report")
                continue
            self._apply(report)

    def _apply(self, report: Report) -> None:
        if report.started and not self.started.is_set():
            log.info("webhook_process_started", pid=self.pid)
            self.started.set()
        for result, count in report.results.items():
            self.metrics.delivery_results(result, count)


async def _end(process: Process) -> None:
    """Closes the child's pipe (it stops on its own), and kills it if it has not stopped
    within STOP_SECONDS."""
    await _close_pipe(process)
    with anyio.move_on_after(STOP_SECONDS) as waited:
        await process.wait()
    if waited.cancelled_caught:
        log.warning("webhook_process_killed", note=f"it had not stopped within {STOP_SECONDS:g} s")
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.aclose()


async def _close_pipe(process: Process) -> None:
    """The child's stdin: closed, it stops on its own."""
    if process.stdin is not None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()


def _child_environment() -> dict[str, str]:
    """The daemon's environment without its secrets and its systemd hand-offs: the child
    gets the key in its job, and never notifies systemd itself."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MLS_SYNC_") and name not in SYSTEMD_ONLY
    }
