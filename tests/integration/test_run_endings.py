"""A run ends on every way out: Ctrl-C, SIGTERM or a database error leave its history row
`interrupted` or `failed` (never `running`) and free the leases it took."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from daemon.composition import Runtime, open_runtime
from daemon.config import load_settings
from daemon.sandbox.faults import Fault
from daemon.store import leases, runs
from daemon.store.records import RunRow
from tests.e2e.daemon_process import Daemon, DaemonConfig
from tests.helpers import (
    Mls,
    OtherWriter,
    Platforms,
    add_connection,
    cli_sync,
    make_settings,
    status_of,
    track,
    wait_until,
    write_locked,
)

pytestmark = pytest.mark.both_databases


async def _last_run(rt: Runtime) -> RunRow:
    [run] = await runs.recent(rt.db, 1)
    return run


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
async def test_mls_sync_sync_cut_by_a_signal_records_its_run_interrupted(
    tmp_path: Path, secret_key: str, mls: Mls, sig: signal.Signals, code: int, said: str
) -> None:
    """Ctrl-C (or SIGTERM) while the MLS holds its answer: exit code 130 (143), one line,
    the run recorded `interrupted` (not left `running` until the next start), the
    connection's lease freed."""
    sandbox, url = mls
    sandbox.put("A", "Closed")
    settings = make_settings(tmp_path)
    keys = {"MLS_SYNC_SECRET_KEY": secret_key}
    async with open_runtime(settings, keys) as rt:
        await add_connection(rt, url)
        await track(rt, "mls-1", ["A"], status="active")
    sandbox.faults.add(Fault("slow", seconds=30))

    with cli_sync(tmp_path, secret_key, MLS_SYNC_MLS__TIMEOUT_SECONDS="60") as sync:
        await wait_until(lambda: sandbox.in_flight == 1)
        sync.send_signal(sig)
        await wait_until(lambda: sync.poll() is not None, timeout=20)
        _, err = sync.communicate()

    assert sync.returncode == code, err
    assert err == f"mls-sync: {said}; the run is recorded as interrupted (mls-sync history)\n"
    async with open_runtime(settings, keys) as rt:
        run = await _last_run(rt)
        assert (run.outcome, run.finished_at is not None) == ("interrupted", True)
        assert await leases.holder_of(rt.db, "mls-1") is None
        assert await status_of(rt, "A") == "active"


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
async def test_a_second_signal_does_not_stop_mls_sync_sync_from_recording_its_run(
    tmp_path: Path, secret_key: str, mls: Mls, sig: signal.Signals, code: int, said: str
) -> None:
    """Ctrl-C (SIGTERM) while the MLS holds its answer and another process holds the
    database's write lock, so recording the run waits; the same signal again meanwhile: the
    run is still recorded `interrupted` once the lock is gone, and its lease freed."""
    sandbox, url = mls
    sandbox.put("A", "Closed")
    settings = make_settings(tmp_path, MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100")
    keys = {"MLS_SYNC_SECRET_KEY": secret_key}
    async with open_runtime(settings, keys) as rt:
        await add_connection(rt, url)
        await track(rt, "mls-1", ["A"], status="active")
    sandbox.faults.add(Fault("slow", seconds=30))

    with cli_sync(
        tmp_path,
        secret_key,
        MLS_SYNC_MLS__TIMEOUT_SECONDS="60",
        MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100",
    ) as sync:
        await wait_until(lambda: sandbox.in_flight == 1)
        other = OtherWriter(settings)
        await other.hold()  # a backup, a CLI command, ... holds the lock
        sync.send_signal(sig)
        await anyio.sleep(0.5)
        sync.send_signal(sig)
        await anyio.sleep(0.5)
        other.release()
        await wait_until(lambda: sync.poll() is not None, timeout=20)
        _, err = sync.communicate()

    assert sync.returncode == code, err
    assert err == f"mls-sync: {said}; the run is recorded as interrupted (mls-sync history)\n"
    async with open_runtime(settings, keys) as rt:
        run = await _last_run(rt)
        assert (run.outcome, run.finished_at is not None) == ("interrupted", True)
        assert await leases.holder_of(rt.db, "mls-1") is None


@pytest.mark.sqlite_only  # the sandbox's store is the SQLite file
async def test_mls_sync_sync_cut_before_its_run_began_does_not_claim_a_run(
    tmp_path: Path, secret_key: str
) -> None:
    """SIGTERM while `mls-sync sync` still sets up a 20,000-listing sandbox: exit 143, and
    the message does not speak of a run, since none was recorded."""
    settings = make_settings(tmp_path)
    with cli_sync(
        tmp_path,
        secret_key,
        MLS_SYNC_SANDBOX__ENABLED="true",
        MLS_SYNC_SANDBOX__LISTINGS="20000",
        PYTHONUNBUFFERED="1",
    ) as sync:
        # The database exists: the sandbox's 20,000 listings are being wired into it.
        await wait_until(lambda: settings.database.path.exists() or sync.poll() is not None)
        assert sync.poll() is None
        sync.send_signal(signal.SIGTERM)
        await wait_until(lambda: sync.poll() is not None, timeout=30)
        _, err = sync.communicate()

    assert sync.returncode == 143, err
    assert err == "mls-sync: terminated before its run began; nothing was synced\n"
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        assert await runs.recent(rt.db, 1) == []


async def test_sigterm_stops_the_daemon_with_its_run_interrupted_and_its_lease_freed(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms
) -> None:
    """SIGTERM during a cycle whose MLS answer outlasts the shutdown grace: the daemon exits
    0 with the cycle's run recorded `interrupted` and no lease left behind."""
    async with _daemon_mid_cycle(tmp_path, secret_key, mls, platforms[1], grace=0.5) as daemon:
        daemon.send(signal.SIGTERM)
        code, _ = await daemon.wait_exit(timeout=10)

    assert code == 0, daemon.log()
    await _assert_interrupted_and_freed(tmp_path, secret_key)


@pytest.mark.parametrize(
    "second", [signal.SIGHUP, signal.SIGUSR1, signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name
)
async def test_a_signal_while_the_daemon_stops_does_not_cut_its_stop_short(
    tmp_path: Path,
    secret_key: str,
    mls: Mls,
    platforms: Platforms,
    second: signal.Signals,
) -> None:
    """SIGTERM mid-cycle, then (the instant STOPPING=1 arrives) SIGHUP, SIGUSR1, SIGINT or
    SIGTERM again: the daemon still stops as a clean stop does, exit 0, its run
    `interrupted` and its lease freed."""
    async with _daemon_mid_cycle(tmp_path, secret_key, mls, platforms[1], grace=1.0) as daemon:
        await daemon.signal_on_notify("STOPPING=1", second, first=signal.SIGTERM)
        code, _ = await daemon.wait_exit(timeout=10)

    assert code == 0, daemon.log()
    assert "signal_ignored" in daemon.log()
    await _assert_interrupted_and_freed(tmp_path, secret_key)


async def test_a_database_error_inside_a_run_ends_it_failed_and_frees_its_lease(
    tmp_path: Path, secret_key: str, mls: Mls
) -> None:
    """Another process holds the database's write lock past the busy timeout just as a run
    writes an MLS answer: the run cannot write; once the lock is gone its row says `failed`,
    naming the database error, and its lease is free for the next run. (Whether the error
    met a write of the connection's or of the run's depends on the timing: the first is
    recorded as the connection's, the second stops the run.)"""
    sandbox, url = mls
    sandbox.put("A", "Closed")
    settings = make_settings(tmp_path, MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100")
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        await add_connection(rt, url)
        await track(rt, "mls-1", ["A"], status="active")
        sandbox.faults.add(Fault("slow", seconds=0.5))
        stopped_by: list[Exception] = []

        async def cycle() -> None:
            try:
                await rt.engine.sync_all()
            except Exception as exc:
                stopped_by.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(cycle)
            await wait_until(lambda: sandbox.in_flight == 1)
            other = OtherWriter(rt.settings)
            await other.hold()  # a backup, a CLI command, ... holds the lock
            await wait_until(lambda: sandbox.in_flight == 0)
            await anyio.sleep(1.5)  # every write the run tries meanwhile fails
            other.release()

        run = await _last_run(rt)
        problems = [e.message for e in await runs.errors_of(rt.db, run.id)]
        assert run.outcome == "failed"
        assert any("database error: database is locked" in p for p in problems), problems
        assert await leases.holder_of(rt.db, "mls-1") is None
        assert await status_of(rt, "A") == "active"  # nothing half-written


@pytest.mark.slow
async def test_a_database_lock_during_a_lease_renewal_does_not_end_the_run(
    tmp_path: Path, secret_key: str, mls: Mls
) -> None:
    """The first renewal of a 30 s lease (at 10 s) meets another process's write lock past
    the busy timeout: the run carries on, renews later, and applies the MLS answer."""
    sandbox, url = mls
    sandbox.put("A", "Closed")
    settings = make_settings(
        tmp_path,
        MLS_SYNC_DATABASE__BUSY_TIMEOUT_MS="100",
        MLS_SYNC_SYNC__LEASE_SECONDS="30",
        MLS_SYNC_MLS__TIMEOUT_SECONDS="30",
    )
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        await add_connection(rt, url)
        await track(rt, "mls-1", ["A"], status="active")
        sandbox.faults.add(Fault("slow", seconds=12))
        reports = []

        async def cycle() -> None:
            reports.append(await rt.engine.sync_all())

        async with anyio.create_task_group() as tg:
            tg.start_soon(cycle)
            await wait_until(lambda: sandbox.in_flight == 1)
            await anyio.sleep(9)
            async with write_locked(rt.settings):
                await anyio.sleep(2)  # the renewal due at 10 s fails meanwhile

        [report] = reports
        assert (report.run.outcome, report.run.errors) == ("ok", 0)
        assert await status_of(rt, "A") == "sold"


@asynccontextmanager
async def _daemon_mid_cycle(
    tmp_path: Path, secret_key: str, mls: Mls, platforms_url: str, grace: float
) -> AsyncIterator[Daemon]:
    """`mls-sync run` with one listing whose MLS answer outlasts the shutdown grace, yielded
    once its first cycle's request is out."""
    sandbox, url = mls
    sandbox.put("A", "Closed")
    config = DaemonConfig.write(tmp_path, platforms_url, secret_key, grace=grace)
    async with config.runtime() as rt:
        await add_connection(rt, url)
        await track(rt, "mls-1", ["A"], status="active")
    sandbox.faults.add(Fault("slow", seconds=30, times=2))
    daemon = config.start()
    try:
        await daemon.wait_notify("READY=1")
        await wait_until(lambda: sandbox.in_flight == 1)
        yield daemon
    finally:
        daemon.stop()


async def _assert_interrupted_and_freed(tmp_path: Path, secret_key: str) -> None:
    """The daemon's first (startup) run is recorded `interrupted`, and its lease is free."""
    settings = load_settings(tmp_path / "config.toml", {})
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        run = await _last_run(rt)
        assert (run.trigger, run.outcome) == ("startup", "interrupted")
        assert await leases.holder_of(rt.db, "mls-1") is None
