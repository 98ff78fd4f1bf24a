"""Named API tokens on a real SQLite file, and the scope check over real HTTP: a small app
whose routes need each scope, served by Uvicorn on 127.0.0.1 like the daemon's API."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from structlog.testing import capture_logs

from daemon.credentials import Secret
from daemon.errors import Conflict, NotFound
from daemon.ops import tokens
from daemon.ops.context import OpsContext
from daemon.ops.tokens import Caller, TokenOps
from daemon.scopes import Scope
from daemon.service.auth import API_OFF, WRONG_TOKEN, Reader, TokenCheck, Writer, require
from daemon.serving import serving
from daemon.specs import SpecError
from daemon.store.database import Database
from daemon.store.sqlite import SqliteDatabase
from tests.helpers import on_sqlite, sqlite_reader

CONFIGURED = Secret("configured-token-5ecret", "test")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    opened = await SqliteDatabase.open(tmp_path / "state" / "mls-sync.db")
    try:
        yield opened
    finally:
        await opened.close()


class Thing(BaseModel):
    name: str


def scoped_app(db: Database, configured: Secret | None) -> FastAPI:
    """A route per scope, each answering who called; the admin one takes its scope from its
    router, as a group of routes may. A body decoded before the check runs is answered as
    the daemon's API does: the token's refusal first."""
    app = FastAPI()
    app.state.tokens = TokenCheck(db, configured)

    @app.get("/v1/reads")
    async def read(who: Reader) -> dict[str, str]:
        return asdict(who)

    @app.post("/v1/writes")
    async def write(thing: Thing, who: Writer) -> dict[str, str]:
        return asdict(who)

    keys = APIRouter(prefix="/v1", dependencies=[Depends(require(Scope.ADMIN))])

    @keys.post("/keys")
    async def rotate(thing: Thing, who: Reader) -> dict[str, str]:
        return asdict(who)

    app.include_router(keys)

    @app.exception_handler(RequestValidationError)
    async def unreadable(request: Request, exc: RequestValidationError) -> JSONResponse:
        if refused := await app.state.tokens.refusal(request):
            return JSONResponse(
                {"detail": refused.detail}, refused.status_code, headers=refused.headers
            )
        return JSONResponse({"detail": "invalid body"}, 422)

    return app


async def served(
    db: Database, configured: Secret | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(scoped_app(db, configured)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        yield client


def ops(db: Database) -> TokenOps:
    return TokenOps(OpsContext(db, None))


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a configured token, as the daemon runs it today."""
    async for client in served(db, CONFIGURED):
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ROUTES = {Scope.READ: ("GET", "/v1/reads"), Scope.WRITE: ("POST", "/v1/writes")}
ROUTES[Scope.ADMIN] = ("POST", "/v1/keys")


async def call(api: httpx.AsyncClient, needed: Scope, token: str | None) -> httpx.Response:
    method, path = ROUTES[needed]
    body = None if needed is Scope.READ else {"name": "x"}
    return await api.request(method, path, json=body, headers=bearer(token) if token else {})


async def test_each_token_works_alone_within_its_scope_and_gets_403_naming_the_scope_beyond(
    db: Database, api: httpx.AsyncClient
) -> None:
    made = {scope: (await ops(db).create(f"app-{scope}", scope))[1] for scope in Scope}
    for held, token in made.items():
        for needed in Scope:
            answer = await call(api, needed, token)
            if held >= needed:
                assert answer.status_code == 200, (held, needed, answer.text)
                assert answer.json() == {"name": f"app-{held}", "scope": held}
            else:
                assert answer.status_code == 403, (held, needed)
                assert answer.json() == {"detail": f"this needs a token with the '{needed}' scope"}
                assert token not in answer.text


async def test_the_configured_token_keeps_working_as_an_admin_token(
    db: Database, api: httpx.AsyncClient
) -> None:
    await ops(db).create("monitoring", Scope.READ)
    for needed in Scope:
        answer = await call(api, needed, CONFIGURED.value)
        assert answer.status_code == 200, answer.text
        assert answer.json()["scope"] == "admin"


async def test_a_revoked_token_is_refused_from_the_next_request_on(
    db: Database, api: httpx.AsyncClient
) -> None:
    """Revoked from another connection to the file (as `mls-sync tokens revoke` does, from
    another process): nothing the server cached lets the token through."""
    _, token = await ops(db).create("ci", Scope.WRITE)
    _, other = await ops(db).create("app", Scope.WRITE)
    assert (await call(api, Scope.WRITE, token)).status_code == 200

    elsewhere = await SqliteDatabase.open(on_sqlite(db).path)
    try:
        revoked = await ops(elsewhere).revoke("ci")
    finally:
        await elsewhere.close()

    assert revoked["revoked_at"] is not None
    refused = await call(api, Scope.READ, token)
    assert refused.status_code == 401 and refused.json() == {"detail": WRONG_TOKEN}
    assert (await call(api, Scope.WRITE, other)).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer wrong-token", "Basic Y2k6c2VjcmV0", "mls_abc", "Bearer mls_abc def"],
)
async def test_no_token_or_a_wrong_one_gets_401_asking_for_a_bearer_token(
    db: Database, api: httpx.AsyncClient, authorization: str
) -> None:
    await ops(db).create("ci", Scope.ADMIN)
    headers = {"Authorization": authorization} if authorization else {}
    answer = await api.get("/v1/reads", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {"detail": WRONG_TOKEN}


async def test_the_stored_hash_is_not_a_token(db: Database, api: httpx.AsyncClient) -> None:
    """What a stolen copy of the database holds does not open the API."""
    _, token = await ops(db).create("ci", Scope.ADMIN)
    answer = await call(api, Scope.READ, tokens.token_sha256(token))
    assert answer.status_code == 401


async def test_with_no_token_configured_or_live_the_api_is_off_and_says_how_to_turn_it_on(
    db: Database,
) -> None:
    async for api in served(db, configured=None):
        off = await call(api, Scope.READ, "anything")
        assert off.status_code == 503 and off.json() == {"detail": API_OFF}
        assert "mls-sync tokens create" in API_OFF

        _, token = await ops(db).create("monitoring", Scope.READ)
        assert (await call(api, Scope.READ, token)).status_code == 200
        assert (await call(api, Scope.READ, None)).status_code == 401

        await ops(db).revoke("monitoring")
        assert (await call(api, Scope.READ, token)).status_code == 503


@pytest.mark.parametrize(
    ("held", "needed", "status"),
    [
        (None, Scope.WRITE, 401),
        (Scope.READ, Scope.WRITE, 403),
        (Scope.WRITE, Scope.WRITE, 422),
        (Scope.WRITE, Scope.ADMIN, 403),  # the admin route takes its scope from its router
        (Scope.ADMIN, Scope.ADMIN, 422),
    ],
)
async def test_a_token_without_the_scope_hears_so_before_anything_about_its_body(
    db: Database, api: httpx.AsyncClient, held: Scope | None, needed: Scope, status: int
) -> None:
    """FastAPI decodes a JSON body before the route's dependencies run: the refusal of the
    token still comes first, so a caller who may not write learns nothing about the body."""
    auth = bearer((await ops(db).create("someone", held))[1]) if held else {}
    headers = {"Content-Type": "application/json", **auth}
    answer = await api.post(ROUTES[needed][1], content=b'{"name": "x"', headers=headers)
    assert answer.status_code == status
    if status == 403:
        assert answer.json() == {"detail": f"this needs a token with the '{needed}' scope"}


async def test_the_openapi_document_names_the_bearer_scheme_on_each_route(
    api: httpx.AsyncClient,
) -> None:
    document = (await api.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    for method, path in ROUTES.values():
        assert document["paths"][path][method.lower()]["security"] == [{"bearer": []}]


async def test_the_database_holds_no_token_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    db = await SqliteDatabase.open(path)
    try:
        made = [(await ops(db).create(f"t{i}", Scope.READ))[1] for i in range(3)]
        await ops(db).revoke("t0")
        assert await tokens.authenticate(db, None, made[1]) == Caller("t1", Scope.READ)
    finally:
        await db.close()

    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("tokens"))
    for token in made:
        assert token.encode() not in stored
        assert token.removeprefix("mls_").encode() not in stored
        assert tokens.token_sha256(token).encode() in stored


async def test_the_list_shows_names_scopes_and_times_never_a_token_or_its_hash(
    db: Database,
) -> None:
    _, token = await ops(db).create("monitoring", Scope.READ)
    await ops(db).create("app", Scope.WRITE)
    await ops(db).revoke("monitoring")

    listed = await ops(db).list()

    assert [(t["name"], t["scope"], t["revoked_at"] is not None) for t in listed] == [
        ("app", "write", False),
        ("monitoring", "read", True),
    ]
    assert set(listed[0]) == {"id", "name", "scope", "created_at", "last_used_at", "revoked_at"}
    assert token not in repr(listed) and tokens.token_sha256(token) not in repr(listed)


async def test_a_name_already_taken_even_by_a_revoked_token_is_refused(db: Database) -> None:
    await ops(db).create("ci", Scope.READ)
    await ops(db).revoke("ci")
    with pytest.raises(Conflict, match="a token with this name exists already"):
        await ops(db).create("ci", Scope.ADMIN)
    assert [t["scope"] for t in await ops(db).list()] == ["read"]


@pytest.mark.parametrize("name", ["", " ci", "ci\n", "-ci", "c i", "x" * 129, "(configured)"])
async def test_a_bad_name_is_refused_saying_what_a_name_may_be(db: Database, name: str) -> None:
    with pytest.raises(SpecError, match="name: 1 to 128 letters, digits and"):
        await ops(db).create(name, Scope.READ)
    assert await ops(db).list() == []


async def test_revoking_an_unknown_or_revoked_token_says_which(db: Database) -> None:
    with pytest.raises(NotFound, match="no token has this name"):
        await ops(db).revoke("ci")
    await ops(db).create("ci", Scope.READ)
    await ops(db).revoke("ci")
    with pytest.raises(Conflict, match="token 'ci' was revoked already, at 20"):
        await ops(db).revoke("ci")


async def test_a_tokens_last_use_is_recorded_but_not_on_every_request(db: Database) -> None:
    _, token = await ops(db).create("ci", Scope.READ)
    assert (await ops(db).list())[0]["last_used_at"] is None

    await tokens.authenticate(db, None, token)
    first = (await ops(db).list())[0]["last_used_at"]
    await tokens.authenticate(db, None, token)

    assert first is not None
    assert (await ops(db).list())[0]["last_used_at"] == first


async def test_the_database_refuses_a_scope_it_does_not_know(db: Database) -> None:
    with (
        closing(sqlite3.connect(on_sqlite(db).path)) as conn,
        pytest.raises(sqlite3.IntegrityError),
    ):
        conn.execute(
            "INSERT INTO api_tokens (name, scope, token_sha256, created_at) "
            "VALUES ('x', 'root', 'h', '2026-01-01T00:00:00.000000Z')"
        )


async def test_creating_and_revoking_a_token_each_log_one_audit_line_without_the_token(
    db: Database,
) -> None:
    with capture_logs() as logged:
        _, token = await ops(db).create("ci", Scope.WRITE)
        await ops(db).revoke("ci")
    audit = [line for line in logged if line["event"] == "audit"]
    assert [(a["action"], a["record"], a["id"]) for a in audit] == [
        ("created", "api_token", "ci"),
        ("revoked", "api_token", "ci"),
    ]
    assert audit[0]["scope"] == "write"
    assert token not in repr(logged) and tokens.token_sha256(token) not in repr(logged)


async def test_a_token_is_accepted_even_where_its_use_cannot_be_written(db: Database) -> None:
    """When a token was last used is a hint for people, never a reason to refuse it: here
    through a read-only connection to the file."""
    _, token = await ops(db).create("ci", Scope.READ)
    with capture_logs() as logged:
        async with sqlite_reader(on_sqlite(db).path) as read_only:
            caller = await tokens.authenticate(read_only, None, token)
    assert caller == Caller("ci", Scope.READ)
    assert [line["event"] for line in logged] == ["token_use_not_recorded"]
    assert (await ops(db).list())[0]["last_used_at"] is None
