"""`mls-sync run`: the long-running daemon, one asyncio process (an anyio task group).

Signals are received in one place (anyio's signal receiver): SIGUSR1 syncs now, SIGHUP
reloads config.toml (a bad file is refused and the old settings kept), SIGTERM/SIGINT stop
gracefully; while it stops, every signal is logged and ignored. Nothing else installs
handlers: the HTTP server is a Uvicorn subclass that captures no signals (daemon/serving.py).
"""

from __future__ import annotations

import secrets
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from functools import partial
from importlib.metadata import version
from pathlib import Path

import anyio
import structlog
from fastapi import FastAPI

from daemon import eventloop, gc_tuning, logs
from daemon.composition import (
    Environment,
    Opener,
    database_password,
    prepare_mls_reading,
    secret_key_text,
)
from daemon.config import DEFAULT_CONFIG_PATH, ConfigError, Settings, load_settings
from daemon.credentials import (
    API_TOKEN_CREDENTIAL,
    API_TOKEN_ENV,
    SMTP_PASSWORD_CREDENTIAL,
    SMTP_PASSWORD_ENV,
    read_secret,
)
from daemon.mail.worker import MailWorker
from daemon.ops import tokens
from daemon.service.api import build_app, build_push_app
from daemon.service.board import StatusBoard
from daemon.service.change_log_polls import ChangeLogPolls
from daemon.service.coordinator import Coordinator
from daemon.service.cycle_status import cycle_status
from daemon.service.delivery_process import DeliveryProcess, Job
from daemon.service.event_watch import EventWatch
from daemon.service.metrics import Metrics
from daemon.service.notify import Notifier
from daemon.service.push_routes import PUSH_PATH, PushInbox
from daemon.service.scheduler import Scheduler
from daemon.service.state import ServiceState
from daemon.service.user_syncs import UserSyncs
from daemon.serving import serving
from daemon.store import cycle_health, database, listings, mail, meta, retention, runs
from daemon.store.errors import StoreError
from daemon.store.until_written import until_written
from daemon.sync import process_lease
from daemon.sync.cycle_slots import OFFSET_RANGE_SECONDS, catch_up_seconds
from daemon.sync.engine import PollOutcome, RunReport
from daemon.sync.pools import needs_restart
from daemon.timestamps import iso, utcnow

log = structlog.get_logger("mls_sync.daemon")

# Changing these needs a restart; a reload says so instead of half-applying them.

RESTART_ONLY = ("database", "daemon", "sandbox", "webhooks", "email", "push")
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


class StartupError(Exception):
    """The daemon cannot start (address in use, ...); the message says what to change."""


async def run_daemon(
    config_path: Path | None,
    settings: Settings,
    opener: Opener,
    environ: Mapping[str, str] | None = None,
) -> None:
    """`opener` is the entry point's (daemon/composition.py): the sandbox's, or production."""
    notifier = Notifier(environ)
    async with (
        opener(settings, lambda cid, done, total: None) as (rt, sandbox),
        rt.db.reader() as status_reader,
    ):
        if sandbox is not None:
            _announce(sandbox)
        try:
            prepare_mls_reading(rt.settings)
        except (ImportError, OSError) as exc:
            raise StartupError(
                f"cannot load the MLS HTTP engine {rt.settings.mls.http_engine!r} "
                f'({type(exc).__name__}); set [mls] http_engine = "httpcore" '
                "(or MLS_SYNC_MLS__HTTP_ENGINE=httpcore) to use httpx's own engine, or "
                "reinstall mls-sync with its dependencies"
            ) from None
        metrics = Metrics(version("mls-sync"))
        metrics.set_cycle_health(await cycle_health.latest(rt.db), utcnow().timestamp())
        rt.engine.slot_offset = await _slot_offset(rt.db)
        await until_written(
            partial(
                process_lease.end_what_an_earlier_self_left,
                rt.db,
                rt.engine.holder,
                rt.engine.clock,
            ),
            "end what an earlier process of this host and pid left",
        )
        coordinator = Coordinator(rt.engine)
        interval = settings.cycle_seconds()
        scheduler = Scheduler(
            coordinator,
            interval,
            settings.sync.jitter_seconds,
            catch_up_seconds(interval, settings.sync.lease_seconds),
        )
        state = ServiceState(
            settings=rt.settings,
            runtime=rt,
            coordinator=coordinator,
            scheduler=scheduler,
            metrics=metrics,
            board=StatusBoard(
                status_reader, check_intervals=rt.settings.effective_check_intervals()
            ),
            api_token=read_secret(API_TOKEN_ENV, API_TOKEN_CREDENTIAL, environ),
            sandbox=sandbox,
            version=version("mls-sync"),
            event_watch=EventWatch(status_reader),
            user_syncs=UserSyncs(rt.engine),
            change_log_polls=ChangeLogPolls(rt.db, rt.engine),
        )
        state.change_log_polls.on_poll = lambda result: _after_poll(state, result)
        coordinator.on_report = lambda report, seconds: _after_cycle(
            state, notifier, report, seconds
        )
        if sandbox is not None:
            coordinator.before_cycle = _world_mover(sandbox)
        host, port = settings.daemon.http_host, settings.daemon.http_port
        server, url = await _listen(build_app(state), host, port, "daemon")
        push_host = settings.push.http_host
        if push_host:
            try:
                push_server, push_url = await _listen(
                    build_push_app(PushInbox.of(state), state.settings, state.version),
                    push_host,
                    settings.push.http_port,
                    "push",
                )
            except StartupError:
                await server.__aexit__(None, None, None)
                raise
            log.info("push_listening", url=push_url, path=PUSH_PATH)
        # Handlers first: systemd may send SIGHUP or SIGUSR1 the moment it reads READY=1,
        # and their default action ends the process. They stay until the server has closed:
        # a signal while stopping must not cut the stop short (the run left `running`).
        with anyio.open_signal_receiver(*HANDLED_SIGNALS) as received:
            try:
                async with anyio.create_task_group() as tg:
                    own = process_lease.ProcessLease(
                        rt.db, rt.engine.holder, settings.sync.lease_seconds, rt.engine.clock
                    )
                    rt.engine.witness = own.witness
                    await tg.start(own.keep)  # before any other lease of this process
                    tg.start_soon(coordinator.run)
                    tg.start_soon(state.user_syncs.run)
                    tg.start_soon(state.change_log_polls.run)
                    tg.start_soon(state.board.run)
                    deliveries = _delivery_process(state, environ, status_reader)
                    tg.start_soon(deliveries.run)
                    tg.start_soon(state.event_watch.run)
                    if rt.settings.email.enabled:
                        tg.start_soon(_mail_worker(state, environ, status_reader).run)
                    else:  # off by choice: turned on again, mail starts from then
                        await mail.forget_cursor(rt.db)
                    scheduler.start()
                    coordinator.trigger("startup")
                    tg.start_soon(notifier.watchdog_loop)
                    if sandbox is not None:  # its MLS pushes to our push route
                        tg.start_soon(sandbox.feed_pushes, push_url if push_host else url)
                    log.info(
                        "daemon_ready",
                        url=url,
                        sandbox=state.sandbox is not None,
                        interval_seconds=interval,
                        api="on" if await tokens.api_is_on(rt.db, state.api_token) else "off",
                        event_loop=eventloop.name(),
                    )
                    notifier.ready(f"serving {url}")
                    gc_tuning.settle()  # what start-up built lives as long as the process
                    await _signals(received, state, notifier, config_path, deliveries)
                    tg.start_soon(_ignore_signals, received)
                    deliveries.stop()  # nothing to drain: what it had not sent waits for us
                    await _stop(state, notifier, settings.daemon.shutdown_grace_seconds)
                    tg.cancel_scope.cancel()
            finally:
                if push_host:
                    await push_server.__aexit__(None, None, None)
                await server.__aexit__(None, None, None)
    log.info("daemon_stopped")


async def _listen(
    app: FastAPI, host: str, port: int, section: str
) -> tuple[AbstractAsyncContextManager[str], str]:
    """The app served on host:port: its server (to leave at the end) and its URL."""
    server = serving(app, host, port)
    try:
        url = await server.__aenter__()
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {host}:{port}: {exc.strerror}; set [{section}] http_port "
            f"(or MLS_SYNC_{section.upper()}__HTTP_PORT) to a free port"
        ) from None
    return server, url


def _mail_worker(
    state: ServiceState, environ: Mapping[str, str] | None, reader: database.Database
) -> MailWorker:
    """Its own task: a slow or dead SMTP server never holds up a cycle."""
    password = read_secret(SMTP_PASSWORD_ENV, SMTP_PASSWORD_CREDENTIAL, environ)
    if state.runtime.settings.email.username and password is None:
        log.warning(
            "smtp_password_missing",
            note=f"[email] username is set but no password: set {SMTP_PASSWORD_ENV} or "
            f"provide $CREDENTIALS_DIRECTORY/{SMTP_PASSWORD_CREDENTIAL}; mail is sent "
            "without logging in",
        )
    return MailWorker(
        state.runtime.db,
        state.runtime.settings.email,
        password.value if password else None,
        state.event_watch,
        hooks=state.metrics,
        reader=reader,
    )


def _delivery_process(
    state: ServiceState, environ: Mapping[str, str] | None, reader: database.Database
) -> DeliveryProcess:
    """The webhook worker, in a process of its own: a slow receiver never holds up a cycle,
    nor do the deliveries' round trips take the cycle's event loop."""
    settings = state.runtime.settings
    job = Job.of(settings, secret_key_text(settings, environ), database_password(settings, environ))
    return DeliveryProcess(job, state.metrics, reader)


def _announce(sandbox: Environment) -> None:
    log.warning(
        "sandbox_mode",
        **{what.lower(): where for what, where in sandbox.describe().items()},
        note="SANDBOX MODE: no real MLS or social platform is contacted",
    )


def _world_mover(sandbox: Environment) -> Callable[[], Awaitable[None]]:
    async def move() -> None:
        moves = sandbox.before_cycle()
        log.info("sandbox_market_moved", listings=len(moves))

    return move


async def _signals(
    received: AsyncIterator[int],
    state: ServiceState,
    notifier: Notifier,
    config_path: Path | None,
    deliveries: DeliveryProcess,
) -> None:
    """Returns on SIGTERM or SIGINT."""
    async for signum in received:
        if signum == signal.SIGUSR1:
            state.coordinator.trigger("signal")
        elif signum == signal.SIGHUP:
            logging_was = state.settings.logging
            _reload(state, notifier, config_path)
            if state.settings.logging != logging_was:  # the delivery process logs as we do
                deliveries.renew(state.settings.logging)
        else:
            log.info("signal_received", signal=signal.Signals(signum).name)
            return


async def _ignore_signals(received: AsyncIterator[int]) -> None:
    """While the daemon stops, every signal is logged and ignored: a second SIGTERM or SIGINT
    does not cut the grace short, and a reload or a sync would not outlive the process."""
    async for signum in received:
        log.warning(
            "signal_ignored", signal=signal.Signals(signum).name, note="the daemon is stopping"
        )


async def _stop(state: ServiceState, notifier: Notifier, grace: float) -> None:
    state.shutting_down = True
    notifier.stopping()
    log.info("daemon_stopping", grace_seconds=grace)
    state.scheduler.shutdown()
    state.event_watch.stop()
    async with anyio.create_task_group() as tg:  # both within the one grace
        tg.start_soon(state.coordinator.stop, grace)
        tg.start_soon(state.user_syncs.stop, grace)
        tg.start_soon(state.change_log_polls.stop, grace)


def _reload(state: ServiceState, notifier: Notifier, config_path: Path | None) -> None:
    notifier.reloading()
    try:
        new = load_settings(config_path)
    except ConfigError as exc:
        _refuse_reload(notifier, str(exc))
        return
    except Exception as exc:  # a bug in reading; a reload still never ends the daemon
        # Named like every refusal; the exception's text is left out, it may quote the file.
        path = config_path or DEFAULT_CONFIG_PATH
        _refuse_reload(notifier, f"{path}: unexpected {type(exc).__name__} reading it")
        return
    old = state.settings
    for section in RESTART_ONLY:
        if getattr(new, section) != getattr(old, section):
            needs_restart(section)
    effective = new.model_copy(update={s: getattr(old, s) for s in RESTART_ONLY})
    if state.sandbox is not None:  # keep the sandbox platforms' URLs
        effective = state.sandbox.pin(effective)
    state.settings = effective
    state.runtime.engine.apply_settings(effective)
    # Shown from the next summing.
    state.board.check_intervals = effective.effective_check_intervals()
    # In sandbox mode the scheduler keeps the sandbox's own (restart-only) interval.
    interval = effective.cycle_seconds()
    state.scheduler.reschedule(
        interval,
        effective.sync.jitter_seconds,
        catch_up_seconds(interval, effective.sync.lease_seconds),
    )
    state.recent_answers.clear()  # the next /status shows the new settings
    logs.configure(effective.logging.level, effective.logging.format, sys.stdout)
    log.info("reloaded", interval_seconds=interval, level=effective.logging.level)
    notifier.ready("reloaded")


def _refuse_reload(notifier: Notifier, error: str) -> None:
    log.error("reload_refused", error=error, note="the previous settings stay in effect")
    notifier.ready("reload refused: the previous settings stay in effect")


async def _after_cycle(
    state: ServiceState, notifier: Notifier, report: RunReport, seconds: float
) -> None:
    state.board.changed()  # the finished run shows in the next /status
    db = state.runtime.db
    state.metrics.record_run(
        report,
        seconds,
        await listings.transitions(db, report.run.id),
        await runs.tally(db, report.run),
    )
    state.metrics.set_cycle_health(await cycle_health.latest(db), utcnow().timestamp())
    notifier.status(cycle_status(report.run))
    await _prune_events(db, state.settings.events.retention_days, state.settings.email.enabled)


async def _after_poll(state: ServiceState, result: PollOutcome) -> None:
    """A read of a change log or an apply of pushed events between cycles: counted, and a
    run it made shows in the metrics and the next /status as a cycle's would."""
    state.metrics.change_log_polled(result)
    if result.report is None:
        return
    state.board.changed()
    db, run = state.runtime.db, result.report.run
    transitions = await listings.transitions(db, run.id)
    state.metrics.record_other_run(result.report, transitions, await runs.tally(db, run))


async def _slot_offset(db: database.Database) -> int:
    """The database's own offset of the cycle slots (daemon/sync/cycle_slots.py): the first
    daemon to start on it picks one at random, every other reads it back."""
    proposed = str(secrets.randbelow(OFFSET_RANGE_SECONDS))
    return int(await meta.first_value(db, meta.SLOT_OFFSET, proposed))


async def _prune_events(db: database.Database, retention_days: int, mail_on: bool) -> None:
    """Events past [events] retention_days go, and with them the records of deliveries and
    mail done with; a busy database only puts it off a cycle."""
    before = iso(utcnow() - timedelta(days=retention_days))
    try:
        pruned = await retention.prune(db, before, mail_on)
    except StoreError as exc:
        log.warning("events_not_pruned", error=str(exc), note="tried again after the next cycle")
        return
    if pruned.events or pruned.deliveries or pruned.mail:
        log.info(
            "events_pruned",
            events=pruned.events,
            deliveries=pruned.deliveries,
            mail=pruned.mail,
            before=before,
        )
    if pruned.held_for:
        log.warning(
            "events_kept_for_webhooks",
            endpoints=pruned.held_for,
            note="older events are kept until these endpoints have them: enable a disabled "
            "one, or remove it (mls-sync webhooks remove ID)",
        )
