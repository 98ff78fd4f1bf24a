"""Bad API bodies (issue 6.3): hypothesis writes the bodies of the four PUT routes (arbitrary
JSON, the routes' own field names, read from /openapi.json, with values of any type, and
bytes that are not JSON at all) and sends them over real HTTP to the running daemon, at
records that exist.

No body gets a 5xx, and a refused one (4xx) leaves every record exactly as it was and is not
repeated in the answer (a marker standing for a secret is among the values). A body that is
not sent as JSON is never accepted. A body that is accepted may change its record, as it
should: the next example compares against that.

The default run sends 150 bodies; MLS_SYNC_BAD_BODIES=2000 sends more.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from daemon.encryption import generate_key
from tests.e2e.daemon_process import NOWHERE, api_client

EXAMPLES = int(os.environ.get("MLS_SYNC_BAD_BODIES", "150"))
MARKER = "mk-5ecret-61d0"  # stands for a secret: no refusal may repeat it
RECORDS = {
    "/v1/mls-connections/c1": {"name": "C", "base_url": f"{NOWHERE}/mls", "secret": "s3cret-1"},
    "/v1/listings/L1": {"connection_id": "c1", "listing_key": "K1"},
    "/v1/platform-accounts/a1": {
        "user_id": "default",
        "platform": "facebook",
        "access_token": "t-1",
    },
    "/v1/posts/p1": {"listing_id": "L1", "account_id": "a1", "platform_post_id": "1_2"},
    "/v1/users/u1": {"display_name": "U", "email": "u@example.com", "time_zone": "UTC"},
}


@dataclass
class Api:
    client: httpx.Client
    fields: dict[str, list[str]]  # route -> the field names of its request body


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_client(tmp_path_factory.mktemp("bad-bodies"), generate_key()) as client:
        for path, body in RECORDS.items():
            assert client.put(path, json=body).status_code in (200, 201), path
        schema = client.get("/openapi.json").json()
        yield Api(client, {path: _fields(schema, path) for path in RECORDS})


def _fields(schema: dict[str, Any], path: str) -> list[str]:
    pattern = re.escape(path.rsplit("/", 1)[0]) + r"/\{[^}/]+\}"
    template = next(p for p in schema["paths"] if re.fullmatch(pattern, p))
    ref = schema["paths"][template]["put"]["requestBody"]["content"]["application/json"]
    name = ref["schema"]["$ref"].rsplit("/", 1)[1]
    return sorted(schema["components"]["schemas"][name]["properties"])


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=5,
)
# Values that would be valid somewhere, so that some bodies pass and some fail on one field.
_plausible = st.sampled_from(
    [
        *("c1", "L1", "a1", "K1", "facebook", "linkedin", "sold", "by_key", "in", NOWHERE),
        *(50, 2.0, True, "", "x" * 5_000, MARKER),
    ]
)


@st.composite
def bodies(draw: st.DrawFn, path: str, fields: list[str]) -> bytes:
    form = draw(st.sampled_from(["one field off", "fields", "any json", "not json"]))
    if form == "one field off":  # the record's own valid body with one field changed
        body: dict[str, object] = dict(RECORDS[path])
        body[draw(st.sampled_from(fields))] = draw(_plausible | _values)
        return json.dumps(body).encode()
    if form == "not json":
        return draw(st.sampled_from([b"", MARKER.encode()])) + draw(st.binary(max_size=200))
    if form == "any json":
        return json.dumps(draw(_values)).encode()
    chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
    body = {name: draw(_plausible | _values) for name in chosen}
    if draw(st.booleans()):
        body[draw(_text)] = draw(_values)  # a field nobody asked for
    return json.dumps(body).encode()


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data(), path=st.sampled_from(sorted(RECORDS)))
def test_no_api_body_gets_a_server_error_and_a_refused_one_changes_nothing(
    api: Api, data: st.DataObject, path: str
) -> None:
    body = data.draw(bodies(path, api.fields[path]), label="body")
    sent_as = data.draw(st.sampled_from(["application/json", "application/x-www-form-urlencoded"]))
    before = {p: api.client.get(p).json() for p in RECORDS}
    answer = api.client.put(path, content=body, headers={"Content-Type": sent_as})
    assert answer.status_code < 500, (answer.status_code, answer.text, body)
    event(f"answered {answer.status_code}")
    if sent_as != "application/json":
        assert answer.status_code >= 400, (answer.text, body)
    if answer.status_code >= 400:
        assert "detail" in answer.json()  # says what was wrong
        assert MARKER not in answer.text, (answer.text, body)
        after = {p: api.client.get(p).json() for p in RECORDS}
        assert after == before, (path, body)
