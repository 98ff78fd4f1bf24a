"""Unauthenticated routes: liveness, readiness, status and metrics (runtime.md, "Health").

Machines read the status code; the bodies are for people. /readyz speaks
application/health+json (draft-inadarei-api-health-check).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from daemon.clock import iso
from daemon.service.state import ServiceState
from daemon.store import connections, listings, posts, runs

HEALTH_JSON = "application/health+json"


def health_routes(state: ServiceState) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/livez", summary="The process and its event loop answer")
    @router.get("/healthz", summary="Alias of /livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "pass"}

    @router.get("/readyz", summary="Database, scheduler and recent cycles are fine")
    async def readyz() -> Response:
        checks, failing = await _readiness(state)
        body: dict[str, Any] = {
            "status": "fail" if failing else "pass",
            "checks": checks,
            "notes": ["SANDBOX MODE: the MLS and platforms are simulated on loopback"]
            if state.sandbox
            else [],
        }
        if failing:
            body["output"] = "failing: " + ", ".join(failing)
        return JSONResponse(body, status_code=503 if failing else 200, media_type=HEALTH_JSON)

    @router.get("/status", summary="What the daemon is doing and has done")
    async def status() -> dict[str, Any]:
        return await _status(state)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        db = state.runtime.db
        state.metrics.set_state(
            await connections.count_by_state(db),
            await listings.count_by_status(db),
            await posts.count_by_status(db),
        )
        state.metrics.cycle_running.set(1 if state.coordinator.running else 0)
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _readiness(state: ServiceState) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    checks: dict[str, list[dict[str, Any]]] = {}
    failing: list[str] = []

    def check(name: str, ok: bool, **extra: Any) -> None:
        checks[name] = [{"status": "pass" if ok else "fail", **extra}]
        if not ok:
            failing.append(name)

    started = time.perf_counter()
    try:
        async with state.runtime.db.reading() as conn, conn.execute("SELECT 1") as cur:
            await cur.fetchone()
        db_ok = True
    except Exception:  # any failure to answer is "not ready", with the reason in the logs
        db_ok = False
    check(
        "sqlite:responseTime",
        db_ok,
        observedValue=round((time.perf_counter() - started) * 1000, 2),
        observedUnit="ms",
    )
    check("scheduler:running", state.clock.running)
    interval = state.clock.interval
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


async def _status(state: ServiceState) -> dict[str, Any]:
    db = state.runtime.db
    coordinator = state.coordinator
    running = coordinator.running
    next_run = state.clock.next_run()
    return {
        "version": state.version,
        "sandbox": state.sandbox,
        "uptime_seconds": round(time.monotonic() - state.started_monotonic, 1),
        "interval_seconds": state.clock.interval,
        "next_run": iso(next_run) if next_run else None,
        "shutting_down": state.shutting_down,
        "running": None
        if running is None
        else {
            "trigger": running.trigger,
            "seconds": round(time.monotonic() - running.started_monotonic, 1),
            "connections": {
                cid: {"done": d, "total": t} for cid, (d, t) in running.connections.items()
            },
        },
        "follow_up_queued": coordinator.pending is not None,
        "last_runs": [asdict(r) for r in await runs.recent(db, 5)],
        "connections": [
            {
                k: c.public()[k]
                for k in ("id", "name", "mode", "state", "last_synced_at", "last_error")
            }
            for c in await connections.list_all(db)
        ],
        "listings_by_status": await listings.count_by_status(db),
        "posts_by_status": await posts.count_by_status(db),
    }
