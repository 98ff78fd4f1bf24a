"""A reload's bounds on requests in flight, as the engine applies them: held to the size of
the connection pools the HTTP clients were made with at start (a request over it would wait
inside a pool); a larger one waits for a restart, and the log says so each time."""

from __future__ import annotations

from structlog.testing import capture_logs

from daemon.composition import Runtime
from daemon.config import Settings


def _with_bounds(settings: Settings, mls: int, platforms: int) -> Settings:
    return settings.model_copy(
        update={
            "mls": settings.mls.model_copy(update={"max_concurrent_requests": mls}),
            "platforms": settings.platforms.model_copy(
                update={"max_concurrent_requests": platforms}
            ),
        }
    )


async def test_a_reloaded_bound_on_requests_is_held_to_the_pools_made_at_start(
    runtime: Runtime,
) -> None:
    mls = runtime.settings.mls.max_concurrent_requests
    platforms = runtime.settings.platforms.max_concurrent_requests
    applied = []
    for asked in [(mls + 1, platforms + 1), (mls + 1, platforms + 1), (1, 1), (mls, platforms)]:
        with capture_logs() as logs:
            runtime.engine.apply_settings(_with_bounds(runtime.settings, *asked))
        waiting = sorted(e["section"] for e in logs if e["event"] == "reload_needs_restart")
        in_flight = (
            runtime.engine.access.concurrency.total_tokens,
            runtime.engine.unpublisher._in_flight.total_tokens,  # the bound on DELETEs out
        )
        applied.append((in_flight, waiting))

    assert applied == [
        ((mls, platforms), ["mls", "platforms"]),
        ((mls, platforms), ["mls", "platforms"]),  # said again at each reload that asks
        ((1, 1), []),
        ((mls, platforms), []),
    ]
