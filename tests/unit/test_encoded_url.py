"""A request's URL made from its resource's parsed URL and an encoded query is the URL httpx
makes of the whole text (daemon/mls/encoded_url.py): same text, same parts, same length."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote_plus, urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.enums import KeyFilter
from daemon.mls.encoded_url import url_of, with_query
from daemon.mls.query import QUERY_SAFE, SELECT, by_key_url, changes_url, keys_filter

BASE_URLS = [
    "https://mls.example/odata",
    "https://mls.example/odata/",
    "HTTPS://MLS.Example:443/odata",
    "http://127.0.0.1:8080/reso/v2",
    "http://[::1]:9000/api",
    "https://mls.example/a path/ünï",
    "https://mls.example/odata?token=x",  # a query of its own: parsed whole, as before
    "https://mls.example",
]


def httpx_parse_of(base_url: str, resource: str, keys: list[str], form: KeyFilter) -> httpx.URL:
    """The URL as it was made before: the whole text, parsed by httpx."""
    params = {"$filter": keys_filter(keys, form), "$select": SELECT, "$top": str(len(keys))}
    query = urlencode(params, safe=QUERY_SAFE, quote_via=quote_plus)
    return httpx.URL(f"{base_url.rstrip('/')}/{resource}?{query}")


@given(
    base_url=st.sampled_from(BASE_URLS),
    resource=st.sampled_from(["Property", "Property Alt", "Prop%20erty"]),
    keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6),
    form=st.sampled_from(list(KeyFilter)),
)
def test_a_by_key_url_is_the_one_httpx_makes_of_its_text(
    base_url: str, resource: str, keys: list[str], form: KeyFilter
) -> None:
    made = by_key_url(base_url, resource, keys, form)
    expected = httpx_parse_of(base_url, resource, keys, form)
    assert str(made) == str(expected)
    assert made.raw_path == expected.raw_path
    assert (made.scheme, made.host, made.port) == (expected.scheme, expected.host, expected.port)
    assert made.params == expected.params
    assert len(str(made)) == len(str(expected))  # what a batch's split is decided on


def test_a_changes_url_is_the_one_httpx_makes_of_its_text() -> None:
    made = changes_url(
        "https://mls.example/odata", "Property", datetime(2026, 1, 2, tzinfo=UTC), 200
    )
    assert str(made) == str(httpx.URL(str(made)))
    assert made.params["$filter"].startswith("ModificationTimestamp ge 2026-01-02T00:00:00")


def test_the_query_is_put_in_place_without_parsing_the_url_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the httpx the daemon ships with, the fast way is the one taken: an httpx that
    made its URLs otherwise would still be right (the whole text parsed), but slower."""
    resource = url_of("https://mls.example/odata/Property")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the URL was parsed again")

    monkeypatch.setattr(httpx.URL, "__init__", refuse)
    url = with_query(resource, "$top=1")
    assert str(url) == "https://mls.example/odata/Property?$top=1"
