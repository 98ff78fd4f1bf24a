"""What the /v1 API answers to a request it refuses, over real HTTP to the daemon as a
subprocess: the answer says what is wrong and how to fix it, never repeats what was sent
(a body may hold secrets), and the refused request changes nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from daemon.config import DaemonSettings
from daemon.encryption import generate_key
from tests.e2e.daemon_process import NOWHERE, api_client

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


def test_the_openapi_document_describes_a_422_as_it_is_answered(api: httpx.Client) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["HTTPValidationError"]["properties"] == {
        "detail": {"title": "Detail", "type": "string"}
    }
    assert "ValidationError" not in schemas


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
            "user_id": "u",
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


@pytest.mark.parametrize("body", [b'{"name": ', b"not json", b"[1]"], ids=["cut", "junk", "array"])
def test_a_bad_body_without_the_token_gets_401_not_a_word_about_the_body(
    api: httpx.Client, body: bytes
) -> None:
    answer = httpx.put(
        f"{api.base_url}/v1/mls-connections/c-anon", content=body, headers=JSON, timeout=10
    )
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
