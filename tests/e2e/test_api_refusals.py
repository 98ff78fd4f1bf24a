"""What the /v1 API answers to a request it refuses, over real HTTP to the daemon as a
subprocess: the answer says what is wrong and how to fix it, never repeats what was sent
(a body may hold secrets), and the refused request changes nothing."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.config import DaemonSettings
from daemon.encryption import generate_key
from daemon.service.problems import PROBLEM_JSON
from tests.e2e.daemon_process import API_TOKEN, DATABASE, NOWHERE, api_client

SECRET = "tok-5ecret-0f9e7d"  # stands for any secret a caller may put in a body
JSON = {"Content-Type": "application/json"}
LIMIT = DaemonSettings().max_body_bytes


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The daemon with the API on, and a client holding its token."""
    with api_client(tmp_path_factory.mktemp("api-refusals"), generate_key()) as client:
        yield client


REFUSED_BODIES = {
    "a field of the wrong type": b'{"name": 5, "base_url": "%s", "secret": "%s"}',
    "a URL that is not http": b'{"name": "C", "base_url": "ftp://%s/%s", "secret": "x"}',
    "an unknown field": b'{"name": "C", "base_url": "%s", "token": "%s"}',
    "a secret pasted as a field name": b'{"name": "C", "base_url": "%s", "%s": "x"}',
    "an array, not an object": b'["%s", "%s"]',
    "JSON cut short": b'{"name": "C", "base_url": "%s", "secret": "%s"',
}


@pytest.mark.parametrize("what", sorted(REFUSED_BODIES))
def test_a_refused_body_is_named_in_the_answer_but_never_repeated(
    api: httpx.Client, what: str
) -> None:
    """A 422 names the field and the rule, without the value sent or any other part of the body."""
    body = REFUSED_BODIES[what] % (NOWHERE.encode(), SECRET.encode())
    answer = api.put("/v1/mls-connections/c-422", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    assert SECRET not in answer.text and NOWHERE not in answer.text
    assert isinstance(answer.json()["detail"], str) and answer.json()["detail"]
    assert api.get("/v1/mls-connections/c-422").status_code == 404


def test_a_base_url_holding_a_password_is_refused_without_repeating_it(api: httpx.Client) -> None:
    body = {"name": "C", "base_url": f"http://agent:{SECRET}@127.0.0.1:9/odata", "secret": "x"}
    answer = api.put("/v1/mls-connections/c-userinfo", json=body)
    assert answer.status_code == 422
    assert "base_url must not hold a user name or password" in answer.json()["detail"]
    assert SECRET not in answer.text
    assert api.get("/v1/mls-connections/c-userinfo").status_code == 404


def test_a_422_names_each_bad_field_and_what_it_must_be(api: httpx.Client) -> None:
    body = {"name": 5, "batch_size": 0, "secret": SECRET}
    answer = api.put("/v1/mls-connections/c-fields", json=body)
    detail = answer.json()["detail"]
    assert answer.status_code == 422
    assert "name: Input should be a valid string" in detail
    assert "base_url: required" in detail
    assert "batch_size: Input should be greater than or equal to 1" in detail
    assert SECRET not in answer.text


def test_a_put_without_a_body_says_the_body_is_required(api: httpx.Client) -> None:
    answer = api.put("/v1/mls-connections/c-empty")
    assert answer.status_code == 422 and answer.json()["detail"] == "body: required"


def test_a_bad_query_parameter_is_named_but_not_repeated(api: httpx.Client) -> None:
    answer = api.get("/v1/runs", params={"limit": SECRET})
    assert answer.status_code == 422
    assert "limit" in answer.json()["detail"] and SECRET not in answer.text


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data", None]
)
def test_a_body_that_is_not_sent_as_json_gets_415_saying_how_to_send_it(
    api: httpx.Client, content_type: str | None
) -> None:
    """curl -d sends form encoding: the answer says which header to add, and stores nothing."""
    body = f'{{"name": "C", "base_url": "{NOWHERE}", "secret": "{SECRET}"}}'
    headers = {"Content-Type": content_type} if content_type else {}
    answer = api.put("/v1/mls-connections/c-form", content=body, headers=headers)
    assert answer.status_code == 415, answer.text
    assert "Content-Type: application/json" in answer.json()["detail"]
    assert SECRET not in answer.text
    assert api.get("/v1/mls-connections/c-form").status_code == 404


def test_a_json_body_with_a_json_content_type_is_still_accepted(api: httpx.Client) -> None:
    body = f'{{"name": "C", "base_url": "{NOWHERE}", "secret": "{SECRET}"}}'
    for content_type in ("application/json", "application/json; charset=utf-8"):
        answer = api.put(
            "/v1/mls-connections/c-ok", content=body, headers={"Content-Type": content_type}
        )
        assert answer.status_code in (200, 201), answer.text


async def _chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    """A JSON body sent with Transfer-Encoding: chunked (no Content-Length)."""
    head = b'{"name": "'
    tail = f'", "base_url": "{NOWHERE}", "secret": "x"}}'.encode()
    yield head
    left = total - len(head) - len(tail)
    while left > 0:
        yield b"n" * min(size, left)
        left -= size
    yield tail


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_gets_413_whether_its_length_is_declared_or_not(
    api: httpx.Client, declared: bool
) -> None:
    total = LIMIT + 10_000
    async with httpx.AsyncClient(base_url=str(api.base_url), headers=api.headers) as client:
        if declared:
            body = b"".join([chunk async for chunk in _chunks(total)])
            answer = await client.put("/v1/mls-connections/c-big", content=body, headers=JSON)
        else:
            answer = await client.put(
                "/v1/mls-connections/c-big", content=_chunks(total), headers=JSON
            )
            assert answer.request.headers["transfer-encoding"] == "chunked"
        stored = await client.get("/v1/mls-connections/c-big")
    assert answer.status_code == 413, answer.text
    assert answer.json()["detail"] == f"request body over {LIMIT} bytes"
    assert stored.status_code == 404


async def test_a_chunked_body_under_the_limit_is_read_whole(api: httpx.Client) -> None:
    async with httpx.AsyncClient(base_url=str(api.base_url), headers=api.headers) as client:
        answer = await client.put(
            "/v1/mls-connections/c-chunked", content=_chunks(150), headers=JSON
        )
    assert answer.status_code == 201, answer.text
    assert set(answer.json()["name"]) == {"n"} and len(answer.json()["name"]) > 80


@dataclass(frozen=True)
class Refused:
    status: int
    method: str
    path: str
    sent: dict[str, Any] = field(default_factory=dict)  # what else to send (httpx's arguments)
    caller: str = "admin"  # or "reader" (a token with the read scope), or "nobody" (no token)


REFUSED = {
    "an unknown route": Refused(404, "GET", "/v1/nothing-here"),
    "an unknown record": Refused(404, "GET", "/v1/listings/no-such-listing"),
    "a method the route has not": Refused(405, "DELETE", "/v1/runs"),
    "no token": Refused(401, "GET", "/v1/runs", caller="nobody"),
    "a token without the scope": Refused(403, "PUT", "/v1/listings/L-x", caller="reader"),
    "a new connection without its secret": Refused(
        409, "PUT", "/v1/mls-connections/c-new", {"json": {"name": "C", "base_url": NOWHERE}}
    ),
    "a body over the limit": Refused(413, "PUT", "/v1/listings/L-x", {"content": b"x" * LIMIT * 2}),
    "a body not sent as JSON": Refused(415, "PUT", "/v1/listings/L-x", {"data": {"k": "v"}}),
    "a body that does not validate": Refused(422, "PUT", "/v1/listings/L-x", {"json": [1]}),
    "a parameter that does not validate": Refused(422, "GET", "/v1/runs/one"),
    "a body that is not UTF-8": Refused(
        400, "PUT", "/v1/listings/L-x", {"content": b'{"\xff": 1}', "headers": JSON}
    ),
}


@pytest.fixture(scope="module")
def reader(api: httpx.Client) -> str:
    """A token with the read scope."""
    made = api.post("/v1/tokens", json={"name": "refusals-reader", "scope": "read"})
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


@pytest.mark.parametrize("what", list(REFUSED))
def test_every_refusal_is_a_problem_detail_of_one_shape(
    api: httpx.Client, reader: str, what: str
) -> None:
    """RFC 9457 problem details, as application/problem+json: type, title, status, and a
    detail that says what is wrong."""
    refused = REFUSED[what]
    sent = dict(refused.sent)
    token = {"admin": API_TOKEN, "reader": reader, "nobody": None}[refused.caller]
    headers = {**sent.pop("headers", {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    answer = httpx.request(
        refused.method, f"{api.base_url}{refused.path}", headers=headers, timeout=10, **sent
    )
    assert answer.status_code == refused.status, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    body = answer.json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["type"] == "about:blank" and body["status"] == refused.status
    assert body["title"] == HTTPStatus(refused.status).phrase
    assert isinstance(body["detail"], str) and len(body["detail"]) > 8


def test_a_405_says_which_methods_the_route_has(api: httpx.Client) -> None:
    answer = api.delete("/v1/runs")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"


def _until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_connection_whose_listings_have_live_posts_is_removed_only_when_forced(
    api: httpx.Client,
) -> None:
    """A sold listing's post whose delete waits for a retry keeps its connection until forced:
    removing it would drop the only record that the post must still come down."""
    for path, body in {
        "/v1/mls-connections/c-live": {"name": "C", "base_url": NOWHERE, "secret": "x"},
        "/v1/listings/L-sold": {"connection_id": "c-live", "listing_key": "K9", "status": "sold"},
        "/v1/platform-accounts/a-live": {
            "user_id": "default",
            "platform": "facebook",
            "access_token": "t",
        },
        "/v1/posts/p-live": {
            "listing_id": "L-sold",
            "account_id": "a-live",
            "platform_post_id": "1_2",
        },
    }.items():
        assert api.put(path, json=body).status_code == 201, path
    assert api.post("/v1/sync").status_code == 202
    _until(lambda: api.get("/v1/posts/p-live").json()["attempts"] >= 1)  # nothing answers it
    waiting = api.get("/v1/posts/p-live").json()
    assert waiting["status"] == "published" and waiting["next_attempt_at"]

    refused = api.delete("/v1/mls-connections/c-live", params={"with_listings": "true"})

    assert refused.status_code == 409
    assert "1 post(s) of its listings are still live" in refused.json()["detail"]
    assert "force" in refused.json()["detail"]
    for kept in ("/v1/mls-connections/c-live", "/v1/listings/L-sold", "/v1/posts/p-live"):
        assert api.get(kept).status_code == 200, kept
    forced = api.delete(
        "/v1/mls-connections/c-live", params={"with_listings": "true", "force": "true"}
    )
    assert forced.status_code == 200, forced.text
    assert forced.json() == {"removed": "c-live", "listings_removed": 1, "live_posts_removed": 1}
    assert api.get("/v1/posts/p-live").status_code == 404


@pytest.mark.parametrize(
    "body",
    [b'{"name": ', b"not json", b"[1]", b'{"\xff": 1}'],
    ids=["cut", "junk", "array", "not-utf8"],
)
def test_a_bad_body_without_the_token_gets_401_not_a_word_about_the_body(
    api: httpx.Client, body: bytes
) -> None:
    answer = httpx.put(
        f"{api.base_url}/v1/mls-connections/c-anon", content=body, headers=JSON, timeout=10
    )
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_failure_nobody_foresaw_is_a_problem_detail_too_without_its_internals(
    tmp_path: Path,
) -> None:
    """A table gone from under the running daemon: a 500 in the one shape, pointing at the
    log, with no SQL or traceback in the answer."""
    with api_client(tmp_path, generate_key()) as client:
        with sqlite3.connect(tmp_path / DATABASE) as db:
            db.execute("ALTER TABLE social_posts RENAME TO social_posts_gone")
        answer = client.get("/v1/posts")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == PROBLEM_JSON, answer.text
    assert answer.json()["detail"] == "the daemon failed to answer: the reason is in its log"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "application/x-ndjson",
            f'{{"id": "L-1", "connection_id": "c", "listing_key": "K", "{SECRET}": 1}}\n',
        ),
        ("text/csv", f"id,connection_id,listing_key,{SECRET}\nL-1,c,K,x\n"),
        ("text/csv", f"id,connection_id,listing_key\nL-1,{SECRET},K\n"),
    ],
    ids=["an unknown json key", "an unknown csv column", "an unknown connection"],
)
def test_a_refused_import_names_its_lines_but_never_repeats_them(
    api: httpx.Client, content_type: str, body: str
) -> None:
    answer = api.post("/v1/listings/import", content=body, headers={"Content-Type": content_type})

    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["line"] >= 1
    assert SECRET not in answer.text


def test_a_token_name_taken_is_refused_without_repeating_it(api: httpx.Client) -> None:
    name = f"n{SECRET}"
    assert api.post("/v1/tokens", json={"name": name, "scope": "read"}).status_code == 201
    again = api.post("/v1/tokens", json={"name": name, "scope": "read"})
    assert again.status_code == 409
    assert SECRET not in again.text and "exists already" in again.json()["detail"]


def test_an_unknown_query_parameter_is_said_to_be_one(api: httpx.Client) -> None:
    answer = api.get("/v1/listings", params={SECRET: "1"})
    assert answer.status_code == 422
    assert "query string" in answer.text and "body" not in answer.json()["detail"]
    assert SECRET not in answer.text


def test_a_write_token_may_not_force_a_live_post_to_be_forgotten(api: httpx.Client) -> None:
    """Forgetting a live post leaves it on its platform with nothing to take it down: a
    `write` token is refused (403 naming `admin`) before anything is looked up."""
    made = api.post("/v1/tokens", json={"name": "app-writer", "scope": "write"})
    assert made.status_code == 201, made.text
    writer = {"Authorization": f"Bearer {made.json()['token']}"}
    for path in ("/v1/posts/p-1", "/v1/listings/L-1"):
        forced = api.delete(path, params={"force": "true"}, headers=writer)
        assert forced.status_code == 403, (path, forced.text)
        assert "'admin'" in forced.json()["detail"]
        plain = api.delete(path, headers=writer)
        assert plain.status_code == 404, (path, plain.text)  # allowed: there is no such record
