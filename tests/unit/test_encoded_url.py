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
from daemon.mls.query import (
    OLDEST_FIRST,
    QUERY_SAFE,
    SELECT,
    by_key_url,
    changes_url,
    keys_filter,
    odata_timestamp,
)

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
    assert str(made) == str(expected)  # and so its length, which a batch's split is decided on
    assert made == expected
    assert made._uri_reference == expected._uri_reference  # every part, as httpx holds it


@given(query=st.text(alphabet=st.characters(blacklist_categories=["Cc", "Cs"]), max_size=40))
def test_any_query_put_in_place_is_the_one_httpx_makes_of_the_whole_text(query: str) -> None:
    """A query with characters httpx would quote (a space, `#`, a lone `%`, `é`) is parsed
    whole; one it keeps as it is, put in place: the same URL either way."""
    resource = url_of("https://mls.example/odata/Property")
    made = with_query(resource, query)
    expected = httpx.URL(f"{resource}?{query}")
    assert str(made) == str(expected)
    assert made._uri_reference == expected._uri_reference


def test_a_changes_url_is_the_one_httpx_makes_of_its_text() -> None:
    since = datetime(2026, 1, 2, tzinfo=UTC)
    made = changes_url("https://mls.example/odata/", "Property", since, 200)
    params = {
        "$filter": f"ModificationTimestamp ge {odata_timestamp(since)}",
        "$select": SELECT,
        "$orderby": OLDEST_FIRST,
        "$top": "200",
    }
    query = urlencode(params, safe=QUERY_SAFE, quote_via=quote_plus)
    expected = httpx.URL(f"https://mls.example/odata/Property?{query}")
    assert str(made) == str(expected)
    assert made._uri_reference == expected._uri_reference


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


def test_a_query_past_httpxs_limit_is_refused_as_httpx_refuses_it() -> None:
    resource = url_of("https://mls.example/odata/Property")
    with pytest.raises(httpx.InvalidURL):
        with_query(resource, "$filter=" + "a" * 70_000)
