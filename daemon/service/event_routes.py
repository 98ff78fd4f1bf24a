"""GET /v1/events: the event log as a feed a client follows (docs/events.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from daemon.ops import queries
from daemon.ops.views import View
from daemon.service import schemas
from daemon.service.admin import ReadOps
from daemon.service.problems import PROBLEM_RESPONSES, declare_refusals, problem_responses
from daemon.service.state import ServiceState


def event_routes(state: ServiceState) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["events"], responses=PROBLEM_RESPONSES)

    @router.get(
        "/events",
        summary="The events after an id, oldest first; waits for one with `wait`",
        response_model=schemas.EventFeed,
        responses=problem_responses(409, 410, 422),
    )
    async def feed(ops: ReadOps, query: Annotated[queries.EventQuery, Query()]) -> View:
        """Send the answer's `next_after` as `after` next time: each event your filters pass
        comes exactly once, in order. With `wait` (seconds, up to 60), an empty answer is held
        until an event arrives. 410 when events after `after` were pruned; 409 when `after` is
        past the last event."""
        return await ops.events.feed(query, state.event_watch.wait_after)

    declare_refusals(router)
    return router
