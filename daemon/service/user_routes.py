"""/v1/users: the users that own connections, listings and accounts, and the sync of every
connection of one user (the `syncAllMLSConnections` of the app this daemon serves)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from daemon.errors import Unavailable
from daemon.ops import queries
from daemon.ops.views import View
from daemon.service import schemas
from daemon.service.admin import Q, ReadOps, WriteOps, paged
from daemon.service.bodies import UserBody, UserId
from daemon.service.problems import PROBLEM_RESPONSES, declare_refusals, problem_responses
from daemon.service.state import ServiceState


def user_routes(state: ServiceState) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["users"], responses=PROBLEM_RESPONSES)

    @router.get("/users", summary="List users", response_model=schemas.Page[schemas.User])
    async def list_users(
        request: Request, response: Response, ops: ReadOps, query: Q[queries.PageQuery]
    ) -> View:
        return paged(request, response, await ops.users.list(query))

    @router.put(
        "/users/{user_id}",
        summary="Create or replace a user",
        response_model=schemas.User,
        responses=schemas.created(schemas.User),
    )
    async def put_user(user_id: UserId, body: UserBody, response: Response, ops: WriteOps) -> View:
        """422 naming each field that is wrong (e-mail, time zone, an event type)."""
        view, created = await ops.users.put(user_id, body.model_dump(exclude_unset=True))
        response.status_code = 201 if created else 200
        return view

    @router.get("/users/{user_id}", response_model=schemas.User, responses=problem_responses(404))
    async def get_user(user_id: UserId, ops: ReadOps) -> View:
        return await ops.users.get(user_id)

    @router.delete(
        "/users/{user_id}",
        summary="Remove a user",
        response_model=schemas.UserRemoved,
        responses=problem_responses(404, 409),
    )
    async def delete_user(user_id: UserId, ops: WriteOps) -> View:
        """409 while the user still owns connections, listings or platform accounts."""
        return await ops.users.remove(user_id)

    @router.post(
        "/users/{user_id}/sync",
        status_code=202,
        summary="Sync every active connection of one user (coalesced per user)",
        response_model=schemas.UserSyncRequested,
        responses=problem_responses(404),
    )
    async def sync_user(user_id: UserId, ops: WriteOps, response: Response) -> View:
        """The answer names the run that will report the sync (`run_id`, and Location): a
        request for a user whose sync has yet to begin shares its run."""
        if state.shutting_down:
            raise Unavailable("shutting down: no new syncs")
        view = await ops.users.sync(user_id, "http")
        response.headers["Location"] = f"/v1/runs/{view['run_id']}"
        return view

    declare_refusals(router)
    return router
