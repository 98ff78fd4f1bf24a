"""The MLS server's client sends each page's GET straight to its engine
(`daemon/mls/engine_client.py`): the request a server receives is the one `AsyncClient.get`
would have sent, on both engines, and the features `get_now` skips cannot be asked of it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daemon.composition import USER_AGENT, http_client
from daemon.mls.engine_client import EngineClient
from daemon.serving import serving
from tests.helpers import closed_port_url, make_settings

ENGINES = ["aiohttp", "httpcore"]


def _echo_app(seen: list[list[tuple[str, str]]]) -> Starlette:
    async def echo(request: Request) -> Response:
        seen.append([(k.decode(), v.decode()) for k, v in request.headers.raw])
        return JSONResponse({"value": [], "query": str(request.url.query)})

    return Starlette(routes=[Route("/{path:path}", echo)])


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_page_request_carries_the_clients_headers_with_the_mls_clients_own(
    tmp_path: Path, engine: str
) -> None:
    """The client's User-Agent, the token, and the MLS client's Accept and Prefer in place of
    the client's own, each once: the headers `AsyncClient.get` would send; the URL's query
    as built; the answer read whole."""
    seen: list[list[tuple[str, str]]] = []
    settings = make_settings(tmp_path, MLS_SYNC_MLS__HTTP_ENGINE=engine)
    async with serving(_echo_app(seen)) as url, http_client(settings) as client:
        page = httpx.URL(f"{url}/Property?$filter=ListingKey+eq+'A'&$top=1")
        headers = {"Authorization": "Bearer t0k", "Accept": "application/json", "Prefer": "p=1"}
        answer = await client.get_now(page, headers, {})
        as_get_sends = client.build_request("GET", page, headers=headers).headers

    assert answer.status_code == 200
    assert answer.json()["query"] == "$filter=ListingKey+eq+'A'&$top=1"
    assert answer.request.url == page
    assert answer.request.headers.raw == as_get_sends.raw  # in order, as written
    [received] = seen
    names = [name.lower() for name, _ in received]
    assert len(names) == len(set(names))  # no header twice
    got = {name.lower(): value for name, value in received}
    assert got == dict(as_get_sends.multi_items())
    assert got["user-agent"] == USER_AGENT
    assert (got["authorization"], got["accept"], got["prefer"]) == (
        "Bearer t0k",
        "application/json",
        "p=1",
    )


@pytest.mark.parametrize("engine", ENGINES)
async def test_each_request_carries_the_headers_given_with_it_and_the_clients_as_set_now(
    tmp_path: Path, engine: str
) -> None:
    """The headers of a request are made once per server and set of headers
    (`EngineClient._headers_for`): a renewed token, another server, and the client's headers
    set anew or changed in place each reach the server; a Host given is the one sent."""
    seen: list[list[tuple[str, str]]] = []
    settings = make_settings(tmp_path, MLS_SYNC_MLS__HTTP_ENGINE=engine)
    async with (
        serving(_echo_app(seen)) as url,
        serving(_echo_app(seen)) as other_server,  # another port: another Host
        http_client(settings) as client,
    ):
        for base, token in [(url, "one"), (url, "one"), (url, "two"), (other_server, "two")]:
            await client.get_now(httpx.URL(f"{base}/Property"), {"Authorization": token}, {})
        client.headers = {"User-Agent": "another/1"}
        await client.get_now(httpx.URL(f"{url}/Property"), {"Authorization": "two"}, {})
        client.headers["User-Agent"] = "third/1"
        await client.get_now(httpx.URL(f"{url}/Property"), {"Authorization": "two"}, {})
        await client.get_now(httpx.URL(f"{url}/Property"), {"Host": "mls.example"}, {})

    got = [{name.lower(): value for name, value in received} for received in seen]
    hosts = [url, url, url, other_server, url, url]
    assert [g["host"] for g in got[:6]] == [httpx.URL(b).netloc.decode() for b in hosts]
    assert [g.get("authorization") for g in got] == ["one", "one"] + ["two"] * 4 + [None]
    assert [g["user-agent"] for g in got] == [USER_AGENT] * 4 + ["another/1"] + ["third/1"] * 2
    assert [v for name, v in seen[-1] if name.lower() == "host"] == ["mls.example"]


async def test_a_client_sending_for_many_tokens_still_sends_each_its_own(tmp_path: Path) -> None:
    """More tokens than a client keeps headers for (tokens renewed over months, many
    connections on one server): each request still carries its own, and what is kept stays
    bounded."""
    seen: list[list[tuple[str, str]]] = []
    async with serving(_echo_app(seen)) as url, http_client(make_settings(tmp_path)) as client:
        tokens = [f"token-{n}" for n in range(300)]
        for token in tokens:
            await client.get_now(httpx.URL(f"{url}/Property"), {"Authorization": token}, {})
        kept = len(client._made)

    assert [dict(received)["authorization"] for received in seen] == tokens
    assert kept <= 256


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_page_request_that_finds_no_server_fails_as_httpx_fails_naming_its_request(
    tmp_path: Path, engine: str
) -> None:
    settings = make_settings(tmp_path, MLS_SYNC_MLS__HTTP_ENGINE=engine)
    page = httpx.URL(f"{closed_port_url()}/Property")
    async with http_client(settings) as client:
        with pytest.raises(httpx.ConnectError) as failure:
            await client.get_now(page, {}, {})
    assert failure.value.request.url == page


async def test_a_closed_client_sends_nothing(tmp_path: Path) -> None:
    client = http_client(make_settings(tmp_path))
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_now(httpx.URL("http://127.0.0.1:9/"), {}, {})


@pytest.mark.parametrize(
    "option",
    [
        {"follow_redirects": True},
        {"auth": ("user", "password")},
        {"event_hooks": {"request": [print]}},
        {"mounts": {"http://": httpx.AsyncHTTPTransport()}},
        {"proxy": "http://127.0.0.1:9"},
        {"params": {"a": "1"}},
        {"base_url": "http://127.0.0.1:9"},
    ],
    ids=["redirects", "auth", "hooks", "mounts", "proxy", "params", "base URL"],
)
def test_a_client_cannot_be_given_what_its_page_requests_would_skip(
    option: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match="EngineClient"):
        EngineClient(transport=httpx.AsyncHTTPTransport(), **option)
