"""Unauthenticated routes: liveness, readiness, status and metrics (docs/runtime.md, "Health").

Machines read the status code; the bodies are for people. /readyz speaks
application/health+json (draft-inadarei-api-health-check).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from daemon.service.board import BoardUnavailable
from daemon.service.change_log_polls import ChangeLogPolls
from daemon.service.coordinator import Progress
from daemon.service.state import ServiceState
from daemon.timestamps import iso

HEALTH_JSON = "application/health+json"
DATABASE_TIMEOUT = 2.0  # seconds for the database to answer before /readyz says it failed
RECENT_ANSWER_SECONDS = 0.5  # /readyz and /status answers are reused for this long


def health_routes(state: ServiceState) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/livez", summary="The process and its event loop answer")
    @router.get("/healthz", summary="Alias of /livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "pass"}

    @router.get(
        "/readyz",
        summary="Database, scheduler and recent cycles are fine",
        response_class=Response,
        responses={200: {"content": {HEALTH_JSON: {}}}, 503: {"content": {HEALTH_JSON: {}}}},
    )
    async def readyz() -> Response:
        return _response(await readyz_answer(state))

    @router.get(
        "/status",
        summary="What the daemon is doing and has done",
        description="The database part (`as_of` onwards) is a snapshot at most a second old.",
        response_class=Response,
        responses={200: {"content": {"application/json": {}}}, 503: {}},
    )
    async def status() -> Response:
        return _response(await status_answer(state))

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        try:
            snapshot = await state.board.current()
        except BoardUnavailable as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        state.metrics.set_state(
            snapshot.connections_by_state, snapshot.listings_by_status, snapshot.posts_by_status
        )
        state.metrics.follow(snapshot.running_cycle)
        running = state.coordinator.running
        state.metrics.set_live(running.started_at if running else None, state.scheduler.interval)
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


# -- the polled answers: also served by api.PolledRoutes, without FastAPI's routing -----------

Answer = tuple[int, str, bytes]  # status code, media type, body


async def readyz_answer(state: ServiceState) -> Answer:
    recent = _recent(state, "/readyz", None)
    if recent is not None:
        return recent
    checks, failing = await _readiness(state)
    body: dict[str, Any] = {
        "status": "fail" if failing else "pass",
        "checks": checks,
        "notes": ["SANDBOX MODE: the MLS and platforms are simulated on loopback"]
        if state.sandbox is not None
        else [],
    }
    if failing:
        body["output"] = "failing: " + ", ".join(failing)
    answer = (503 if failing else 200, HEALTH_JSON, json.dumps(body).encode())
    state.recent_answers["/readyz"] = (time.monotonic(), None, answer)
    return answer


async def status_answer(state: ServiceState) -> Answer:
    try:
        snapshot = await state.board.current()
    except BoardUnavailable as exc:
        return 503, "application/json", json.dumps({"detail": str(exc)}).encode()
    recent = _recent(state, "/status", snapshot)
    if recent is not None:
        return recent
    # The live part is small and rendered per answer; the database part was rendered once per
    # snapshot. Both are JSON objects with distinct keys: joined into one.
    live = json.dumps(_live_status(state)).encode()
    answer = (200, "application/json", live[:-1] + b", " + snapshot.body[1:])
    state.recent_answers["/status"] = (time.monotonic(), snapshot, answer)
    return answer


def _recent(state: ServiceState, path: str, snapshot: object) -> Answer | None:
    """The answer given less than RECENT_ANSWER_SECONDS ago from the same snapshot: at a
    hundred probes a second, most of them need not build it again."""
    recent = state.recent_answers.get(path)
    if recent is None or recent[1] is not snapshot:
        return None
    if time.monotonic() - recent[0] >= RECENT_ANSWER_SECONDS:
        return None
    return recent[2]


def _response(answer: Answer) -> Response:
    status, media_type, body = answer
    return Response(body, status_code=status, media_type=media_type)


async def _readiness(state: ServiceState) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    checks: dict[str, list[dict[str, Any]]] = {}
    failing: list[str] = []

    def check(name: str, ok: bool, **extra: Any) -> None:
        checks[name] = [{"status": "pass" if ok else "fail", **extra}]
        if not ok:
            failing.append(name)

    started = time.perf_counter()
    try:
        with anyio.fail_after(DATABASE_TIMEOUT):
            await state.board.ping()
        db_ok = True
    except Exception:  # any failure to answer is "not ready", with the reason in the logs
        db_ok = False
    check(
        f"{state.runtime.db.dialect}:responseTime",
        db_ok,
        observedValue=round((time.perf_counter() - started) * 1000, 2),
        observedUnit="ms",
    )
    check("scheduler:running", state.scheduler.running)
    interval = state.scheduler.interval
    last = state.coordinator.last_completed_monotonic
    uptime = time.monotonic() - state.started_monotonic
    if last is None:
        ok = uptime < state.settings.daemon.startup_grace_seconds
        check(
            "cycle:age",
            ok,
            observedValue=None,
            observedUnit="s",
            output=None if ok else "no cycle has completed since start",
        )
    else:
        age = time.monotonic() - last
        check("cycle:age", age < 2 * interval, observedValue=round(age, 1), observedUnit="s")
    check("daemon:shutdown", not state.shutting_down)
    return checks, failing


def _live_status(state: ServiceState) -> dict[str, Any]:
    coordinator = state.coordinator
    running = coordinator.running
    next_run = state.scheduler.next_run()
    return {
        "version": state.version,
        "sandbox": state.sandbox is not None,
        "uptime_seconds": round(time.monotonic() - state.started_monotonic, 1),
        "interval_seconds": state.scheduler.interval,
        "next_run": iso(next_run) if next_run else None,
        "shutting_down": state.shutting_down,
        "running": None if running is None else progress(running),
        "follow_up_queued": coordinator.pending is not None,
        "change_log_polls": change_log_polls(state.change_log_polls),
    }


def change_log_polls(polls: ChangeLogPolls) -> dict[str, dict[str, Any]]:
    """Each events-mode connection's last read of its change log between cycles, and when the
    next one is due."""
    out: dict[str, dict[str, Any]] = {}
    for connection_id in sorted(polls.next_due):
        last = polls.last.get(connection_id)
        next_in = polls.next_poll_in(connection_id)
        out[connection_id] = {
            "last_at": None if last is None else iso(datetime.fromtimestamp(last.at, UTC)),
            "last_outcome": None if last is None else last.outcome,
            "last_run_id": None if last is None else last.run_id,
            "next_in_seconds": None if next_in is None else round(next_in, 1),
        }
    return out


def progress(running: Progress) -> dict[str, Any]:
    """Totals, not one entry per connection: a thousand connections would make every answer
    long and costly while a cycle runs."""
    return {
        "trigger": running.trigger,
        "seconds": round(time.monotonic() - running.started_monotonic, 1),
        "connections_started": len(running.connections),
        "connections_finished": running.connections_finished,
        "listings_done": running.listings_done,
        "listings_total": running.listings_total,
    }
