"""Both engines under the MLS client (`[mls] http_engine`) behave the same where a user can
tell: statuses applied, faults retried, failures named in the same words, redirects never
followed. The rest of the suite runs on the default engine (aiohttp); these keep the fallback
(httpcore) honest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.aiohttp_transport import AiohttpTransport
from daemon.composition import Runtime, open_runtime
from daemon.sandbox.faults import Fault
from tests.helpers import Mls, add_connection, closed_port_url, make_settings, status_of, track

ENGINES = ["aiohttp", "httpcore"]


@pytest.fixture(params=ENGINES)
async def on_engine(
    request: pytest.FixtureRequest, tmp_path: Path, secret_key: str
) -> AsyncIterator[Runtime]:
    # A short timeout, so that the answers held longer time out in a fraction of a second.
    settings = make_settings(
        tmp_path, MLS_SYNC_MLS__HTTP_ENGINE=request.param, MLS_SYNC_MLS__TIMEOUT_SECONDS="0.4"
    )
    assert settings.mls.http_engine == request.param
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        client = rt.http.for_url("http://127.0.0.1:1")
        in_use = isinstance(client._transport, AiohttpTransport)  # the engine really used
        assert in_use == (request.param == "aiohttp")
        yield rt


async def test_a_sale_is_applied_after_a_503_and_a_slow_answer_are_retried(
    on_engine: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    sandbox.put("A", "Closed")
    sandbox.put("B", "Active")
    await add_connection(on_engine, url)
    await track(on_engine, "mls-1", ["A", "B"], status="active")
    sandbox.faults.add(Fault("status", status=503))
    sandbox.faults.add(Fault("slow", seconds=1.0))

    report = await on_engine.engine.sync_all()

    assert (report.run.errors, report.run.mls_requests) == (0, 3)
    assert (await status_of(on_engine, "A"), await status_of(on_engine, "B")) == ("sold", "active")


async def test_a_server_that_refuses_connections_is_named_as_such(
    on_engine: Runtime, mls: Mls
) -> None:
    dead = closed_port_url()
    await add_connection(on_engine, dead)
    await track(on_engine, "mls-1", ["A"])

    report = await on_engine.engine.sync_all()

    [error] = report.errors
    assert "connection refused" in error.message


async def test_a_server_that_never_answers_is_named_as_timed_out(
    on_engine: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    sandbox.put("A", "Closed")
    await add_connection(on_engine, url)
    await track(on_engine, "mls-1", ["A"])
    sandbox.faults.add(Fault("slow", seconds=1.0, times=on_engine.settings.mls.max_attempts))

    report = await on_engine.engine.sync_all()

    [error] = report.errors
    assert "timed out" in error.message
    assert await status_of(on_engine, "A") is None


async def test_a_redirect_is_not_followed(on_engine: Runtime, mls: Mls) -> None:
    """A redirect must not carry the bearer token to another address."""
    sandbox, url = mls
    sandbox.put("A", "Closed")
    await add_connection(on_engine, url)
    await track(on_engine, "mls-1", ["A"])
    elsewhere = {"Location": f"{url}/elsewhere/Property"}
    sandbox.faults.add(Fault("status", status=302, headers=elsewhere))

    report = await on_engine.engine.sync_all()

    [error] = report.errors
    assert "HTTP 302" in error.message
    assert report.run.mls_requests == 1
    assert await status_of(on_engine, "A") is None
