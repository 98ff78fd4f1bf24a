"""/v1/webhooks: signed outbound webhook endpoints, their deliveries and attempts
(docs/webhooks.md). Thin routes over `Operations.webhooks`.

Endpoints are an `admin`'s (each has a signing secret, and a URL the daemon will call); their
deliveries and attempts are readable with `read`. A secret is in exactly two answers: the
201 that creates its endpoint and the answer of its rotation.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from daemon.ops.views import View
from daemon.ops.webhooks import EndpointSpec
from daemon.service.admin import AdminOps, ReadOps
from daemon.service.problems import PROBLEM_RESPONSES, declare_refusals, problem_responses
from daemon.service.schemas import Endpoint, Shape
from daemon.specs import Identifier

EndpointId = Annotated[int, Path(ge=1, le=2**63 - 1, examples=[1])]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, examples=[1])]


class EndpointBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://app.example.com/hooks/mls-sync", "event_types": ["listing.*"]}
            ]
        },
    )

    url: str = Field(max_length=2048, description="https; never echoed in an error")
    event_types: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="exact types, `prefix.*`, or `*`; empty: every type",
    )
    user_id: Identifier | None = Field(default=None, description="only this user's events")
    description: str | None = Field(default=None, max_length=200)
    after_event: int | None = Field(
        default=None,
        ge=0,
        le=2**63 - 1,
        description="deliver the events after this id (0: every event kept); default: from now",
    )


class EndpointWithSecret(Endpoint):
    secret: str = Field(description="whsec_...: shown in this answer only, never again")


class Endpoints(Shape):
    items: list[Endpoint]


class Removed(Shape):
    removed: int


class Delivery(Shape):
    id: int
    endpoint_id: int
    event_id: int
    webhook_id: str
    state: str
    attempts: int
    next_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    created_at: str
    updated_at: str


class Deliveries(Shape):
    items: list[Delivery]


class Attempt(Shape):
    id: int
    delivery_id: int
    at: str
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None = Field(description="the answer's first 256 characters")
    replay: bool


class DeliveryAttempts(Delivery):
    items: list[Attempt]


class Replayed(Shape):
    delivery_id: int
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None


def webhook_routes() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["webhooks"], responses=PROBLEM_RESPONSES)

    @router.get("/webhooks", summary="The webhook endpoints", response_model=Endpoints)
    async def list_endpoints(ops: AdminOps) -> View:
        return {"items": await ops.webhooks.list()}

    @router.post(
        "/webhooks",
        status_code=201,
        summary="Register an endpoint: the answer shows its signing secret, once",
        response_model=EndpointWithSecret,
    )
    async def create_endpoint(body: EndpointBody, ops: AdminOps) -> View:
        """422 naming what is wrong with the URL (https only; no private addresses), the
        types or the user; nothing is stored then."""
        made, secret = await ops.webhooks.create(EndpointSpec(**body.model_dump()))
        return {**made, "secret": secret}

    @router.get(
        "/webhooks/{endpoint_id}", response_model=Endpoint, responses=problem_responses(404)
    )
    async def get_endpoint(endpoint_id: EndpointId, ops: AdminOps) -> View:
        return await ops.webhooks.get(endpoint_id)

    @router.delete(
        "/webhooks/{endpoint_id}",
        summary="Remove an endpoint, its deliveries and their attempts",
        response_model=Removed,
        responses=problem_responses(404),
    )
    async def remove_endpoint(endpoint_id: EndpointId, ops: AdminOps) -> View:
        return await ops.webhooks.remove(endpoint_id)

    @router.post(
        "/webhooks/{endpoint_id}/enable",
        summary="Enable again (from its cursor, with a fresh retry window)",
        response_model=Endpoint,
        responses=problem_responses(404),
    )
    async def enable_endpoint(endpoint_id: EndpointId, ops: AdminOps) -> View:
        return await ops.webhooks.enable(endpoint_id)

    @router.post(
        "/webhooks/{endpoint_id}/disable",
        summary="Stop delivering (events wait at its cursor)",
        response_model=Endpoint,
        responses=problem_responses(404),
    )
    async def disable_endpoint(endpoint_id: EndpointId, ops: AdminOps) -> View:
        return await ops.webhooks.disable(endpoint_id)

    @router.post(
        "/webhooks/{endpoint_id}/rotate-secret",
        summary="A new signing secret, shown once; the old one signs too until the overlap ends",
        response_model=EndpointWithSecret,
        responses=problem_responses(404),
    )
    async def rotate_secret(endpoint_id: EndpointId, ops: AdminOps) -> View:
        made, secret = await ops.webhooks.rotate_secret(endpoint_id)
        return {**made, "secret": secret}

    @router.get(
        "/webhooks/{endpoint_id}/deliveries",
        summary="An endpoint's deliveries, newest first",
        response_model=Deliveries,
        responses=problem_responses(404),
    )
    async def list_deliveries(
        endpoint_id: EndpointId,
        ops: ReadOps,
        before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> View:
        return {"items": await ops.webhooks.deliveries(endpoint_id, before, limit)}

    @router.get(
        "/webhook-deliveries/{delivery_id}",
        summary="A delivery and every attempt of it",
        response_model=DeliveryAttempts,
        responses=problem_responses(404),
    )
    async def get_delivery(delivery_id: DeliveryId, ops: ReadOps) -> View:
        return await ops.webhooks.attempts(delivery_id)

    @router.post(
        "/webhook-deliveries/{delivery_id}/replay",
        summary="Send a delivery's event once more, now (recorded as an attempt)",
        response_model=Replayed,
        responses=problem_responses(404, 409),
    )
    async def replay_delivery(delivery_id: DeliveryId, ops: AdminOps) -> View:
        return await ops.webhooks.replay(delivery_id)

    declare_refusals(router)
    return router
