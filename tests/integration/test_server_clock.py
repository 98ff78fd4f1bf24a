"""Lease times go by the database server's clock (docs/postgresql.md "Several daemons"):
daemons on machines whose clocks differ agree on when a lease expires."""

from __future__ import annotations

import time
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon import timestamps
from daemon.composition import open_runtime
from daemon.store import runs
from daemon.timestamps import parse_iso
from tests.helpers import Mls, add_sandbox_connection, make_settings

pytestmark = pytest.mark.postgresql_only


class _AnHourBehind(datetime):
    """This machine's clock, as the daemon reads it (daemon/timestamps.py), an hour slow."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _AnHourBehind:
        return cls.fromtimestamp(time.time() - 3600, tz)


async def test_a_daemon_whose_clock_is_an_hour_behind_keeps_time_by_the_servers_clock(
    tmp_path: Path, secret_key: str, mls: Mls, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    monkeypatch.setattr(timestamps, "datetime", _AnHourBehind)
    with capture_logs() as logs:
        async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
            await add_sandbox_connection(rt, mls, ["A"])
            report = await rt.engine.sync_connection("mls-1")
            run = (await runs.recent(rt.db, 1))[0]
    monkeypatch.undo()

    assert report.run.outcome == "ok"
    # The run, and the lease it ran under, by the server's clock: now, not an hour ago.
    assert abs((parse_iso(run.started_at) - datetime.now(UTC)).total_seconds()) < 30
    warned = [e for e in logs if e["event"] == "clock_differs_from_database"]
    assert warned and 3500 < warned[0]["seconds"] < 3700
