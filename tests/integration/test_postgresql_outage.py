"""PostgreSQL going away under a run, on the engine with a server of the test's own: what is
logged is what an operator must read (no bug, so no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.composition import open_runtime
from daemon.store.posts import DueScope
from daemon.sync.unpublish import PostResult
from tests.helpers import make_settings
from tests.postgres_server import PostgresServer


async def test_the_database_going_away_as_the_unpublish_pass_begins_is_a_warning_not_a_crash(
    tmp_path: Path, secret_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass's first read meets the outage (a CI run met it so, by chance): one warning
    with the driver's reason, and the run goes on to its end. Before, `unpublish_crashed`
    with a traceback, which reads as a bug and alerts as one."""
    with PostgresServer.running() as server:
        settings = make_settings(tmp_path, MLS_SYNC_DATABASE__URL=server.new_database())
        environ = {"MLS_SYNC_SECRET_KEY": secret_key, "MLS_SYNC_DATABASE_PASSWORD": server.password}
        async with open_runtime(settings, environ) as rt:
            reconcile = rt.engine.unpublisher.reconcile

            async def after_an_outage(run_id: int, scope: DueScope) -> list[PostResult]:
                server.pause()
                try:
                    return await reconcile(run_id, scope)
                finally:
                    server.resume()

            monkeypatch.setattr(rt.engine.unpublisher, "reconcile", after_an_outage)
            with capture_logs() as said:
                report = await rt.engine.sync_all()

    events = {line["event"]: line for line in said}
    assert "unpublish_crashed" not in events
    assert events["unpublish_database_error"]["log_level"] == "warning"
    assert events["unpublish_database_error"]["error"]  # the driver's reason
    assert "exc_info" not in events["unpublish_database_error"]
    assert report.run.outcome == "partial"  # recorded, its end written once the server was back
    assert any("unpublishing stopped" in e.message for e in report.errors)
