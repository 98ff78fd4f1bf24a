"""Building RESO queries and reading RESO answers: pure functions, through tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from daemon.enums import KeyFilter
from daemon.mls.client import _answer_for, ignores_order, parse_retry_after
from daemon.mls.payload import BadPayload, parse_changes_page, parse_page
from daemon.mls.query import SELECT, by_key_url, key_batches, keys_filter, quote
from daemon.sandbox.odata_filter import compile_filter


@pytest.mark.parametrize(
    ("keys", "form", "expected"),
    [
        (["a", "b"], KeyFilter.IN, "ListingKey in ('a','b')"),
        (["a"], KeyFilter.IN, "ListingKey eq 'a'"),
        (["a", "b"], KeyFilter.OR, "ListingKey eq 'a' or ListingKey eq 'b'"),
        (["a"], KeyFilter.EACH, "ListingKey eq 'a'"),
        (["O'Neil"], KeyFilter.OR, "ListingKey eq 'O''Neil'"),
        (["O'Neil", "b"], KeyFilter.IN, "ListingKey in ('O''Neil','b')"),
        (["a", "'b'"], KeyFilter.OR, "ListingKey eq 'a' or ListingKey eq '''b'''"),
    ],
)
def test_key_filters(keys: list[str], form: KeyFilter, expected: str) -> None:
    assert keys_filter(keys, form) == expected


@given(
    st.lists(
        st.text(
            # Quotes, commas and spaces often: what the separators between keys are made of.
            st.sampled_from("a',( )") | st.characters(exclude_categories=("Cc", "Cs")),
            min_size=1,
            max_size=12,
        ),
        min_size=1,
        max_size=6,
    )
)
@example(["a','b", "c"])  # keys that hold the separators themselves
@example(["a' or ListingKey eq 'b", "c"])
def test_a_filter_names_exactly_its_keys_each_as_an_odata_literal(keys: list[str]) -> None:
    """A quote in a key, or text in it that looks like what separates two keys, never
    makes a filter ask for other keys than its batch's (the sandbox's parser is
    odata-query's grammar)."""
    for form in (KeyFilter.IN, KeyFilter.OR):
        assert compile_filter(keys_filter(keys, form)).keys == frozenset(keys)
    # And the text is each key as `quote` writes it, in order: the URL's length, which
    # decides how a batch is split (`key_batches`), is what it was before.
    assert keys_filter(keys, KeyFilter.OR) == " or ".join(f"ListingKey eq {quote(k)}" for k in keys)
    if len(keys) > 1:
        assert keys_filter(keys, KeyFilter.IN) == f"ListingKey in ({','.join(map(quote, keys))})"


def test_quote_doubles_single_quotes() -> None:
    assert quote("a'b''c") == "'a''b''''c'"


def test_by_key_url_selects_only_what_the_sync_needs() -> None:
    url = by_key_url("https://mls.example/odata/", "Property", ["a"], KeyFilter.IN)
    assert url.params["$select"] == "ListingKey,StandardStatus,MlsStatus,ModificationTimestamp"
    assert str(url).startswith("https://mls.example/odata/Property?")


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5))
def test_any_keys_reach_the_server_as_they_were_asked_for(keys: list[str]) -> None:
    """Whatever a key holds (a space, `+`, `&`, `#`, `%`, a quote, any letter), the server
    decodes the very filter that was built, in either form."""
    for form in (KeyFilter.IN, KeyFilter.EACH):
        url = by_key_url("https://mls.example/odata", "Property", keys, form)
        assert url.params["$filter"] == keys_filter(keys, form)
        assert url.params["$top"] == str(len(keys))


def test_a_filter_is_no_longer_in_the_url_than_httpx_would_make_it() -> None:
    """Quotes and parentheses are left bare, a space is a `+` (a `+` in a key is %2B): a
    batch that fitted [mls] max_url_length with httpx's own encoding still fits."""
    keys = ["A 1", "B+2"]
    for form in (KeyFilter.IN, KeyFilter.OR):
        url = by_key_url("https://mls.example/odata", "Property", keys, form)
        params = {"$filter": keys_filter(keys, form), "$select": SELECT, "$top": "2"}
        assert len(str(url)) < len(str(httpx.URL("https://mls.example/odata", params=params)))
    url = by_key_url("https://mls.example/odata", "Property", keys, KeyFilter.IN)
    assert "$filter=ListingKey+in+('A+1','B%2B2')" in str(url)


@pytest.mark.parametrize(
    ("n", "form", "batch_size", "max_len", "sizes"),
    [
        (120, KeyFilter.IN, 50, 100_000, [50, 50, 20]),
        (3, KeyFilter.EACH, 50, 100_000, [1, 1, 1]),
        (8, KeyFilter.IN, 50, 45, [2, 2, 2, 2]),
        (1, KeyFilter.IN, 50, 5, [1]),  # one key too long is still asked: the server says
        (5, KeyFilter.IN, 50, 60, [2, 3]),  # halves, until each fits
        (7, KeyFilter.OR, 3, 100_000, [3, 3, 1]),
        (2, KeyFilter.EACH, 50, 5, [1, 1]),
        (0, KeyFilter.IN, 50, 100_000, []),
    ],
)
def test_key_batches_respect_size_and_url_length(
    n: int, form: KeyFilter, batch_size: int, max_len: int, sizes: list[int]
) -> None:
    keys = [f"k{i:02d}" for i in range(n)]
    length = lambda ks: 20 * len(ks)  # noqa: E731 - a stand-in for the real URL length
    batches = list(key_batches(keys, form, batch_size, length, max_len))
    assert [len(b) for b in batches] == sizes
    assert [k for b in batches for k in b] == keys


NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Tue, 24 Nov 2026 12:00:30 GMT", 30.0),
        ("Tue, 24 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        (None, None),
        ("-5", None),
    ],
)
def test_retry_after_takes_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_a_page_is_read_record_by_record() -> None:
    page = parse_page(
        b'{"value": ['
        b'{"ListingKey": "a", "StandardStatus": "Active",'
        b' "ModificationTimestamp": "2026-01-01T00:00:00Z"},'
        b'{"ListingKey": "b", "StandardStatus": 7},'
        b'{"ListingKey": "c", "StandardStatus": "Closed", "MlgCanView": false},'
        b'{"StandardStatus": "Closed"},'
        b'{"ListingKey": "d", "ModificationTimestamp": "yesterday"}'
        b'], "@odata.nextLink": "https://mls.example/Property?$skip=5"}'
    )
    assert [r.listing_key for r in page.records] == ["a"]
    assert page.hidden == ["c"]
    assert [(e.listing_key, "malformed" in e.message) for e in page.errors] == [
        ("b", True),
        (None, True),
        ("d", True),
    ]
    assert page.next_link == "https://mls.example/Property?$skip=5"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html>502</html>", "not JSON"),
        (b'{"value": ', "not JSON"),
        (b'{"items": []}', "no `value` list"),
        (b"[]", "no `value` list"),
        (b'{"value": [], "@odata.nextLink": 5}', "nextLink is not a string"),
    ],
)
def test_an_unusable_page_is_refused_whole(body: bytes, fragment: str) -> None:
    with pytest.raises(BadPayload, match=fragment):
        parse_page(body)


def test_keys_left_out_are_removed_unless_an_unreadable_record_could_be_them() -> None:
    clean = parse_page(b'{"value": [{"ListingKey": "a", "StandardStatus": "Active"}]}')
    answer, absent = _answer_for(["a", "b"], [clean])
    assert list(answer.records) == ["a"] and list(answer.removed) == ["b"] and absent == []

    murky = parse_page(b'{"value": [{"ListingKey": "a", "StandardStatus": "Active"}, {"x": 1}]}')
    answer, absent = _answer_for(["a", "b"], [murky])
    assert answer.removed == {} and absent == []
    assert "not confirmed" in answer.errors["b"]


def test_a_key_left_out_of_an_answer_of_several_pages_is_given_back_not_removed() -> None:
    """An answer read by offset may have skipped its record: it is asked again."""
    first = parse_page(b'{"value": [{"ListingKey": "a", "StandardStatus": "Active"}]}')
    second = parse_page(b'{"value": [{"ListingKey": "c", "StandardStatus": "Active"}]}')
    answer, absent = _answer_for(["a", "b", "c"], [first, second])
    assert list(answer.records) == ["a", "c"] and answer.removed == {} and absent == ["b"]


T1, T2 = datetime(2026, 12, 1, 10, tzinfo=UTC), datetime(2026, 12, 1, 11, tzinfo=UTC)


T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("oldest", "newest", "first_read", "ignored"),
    [
        ((T1, "A"), (T2, "B"), None, False),  # kept
        ((T1, "999"), (T1, "1000"), None, False),  # one timestamp: keys as the server collates
        ((T1, "b"), (T1, "A"), None, False),
        ((T1, "A"), (T2, "A"), None, False),  # changed between the two requests
        ((T1, "A"), (T1, "A"), None, True),  # the same record both ways
        ((T2, "B"), (T1, "A"), None, True),  # the newer one given as the oldest
        (None, (T1, "A"), None, False),  # no timestamp: nothing to judge by
        ((T1, "A"), (T2, "B"), (T1, "A"), False),  # the first page began with the oldest
        ((T1, "A"), (T2, "B"), (T1, "B"), False),  # a tie: keys are not compared
        ((T1, "B"), (T2, "C"), (T0, "A"), False),  # the first one read changed since
        ((T0, "A"), (T2, "B"), (T1, "C"), True),  # the first page left an older one out
    ],
)
def test_a_server_ignores_the_order_when_the_oldest_newest_and_first_read_say_so(
    oldest: tuple[datetime, str] | None,
    newest: tuple[datetime, str] | None,
    first_read: tuple[datetime, str] | None,
    ignored: bool,
) -> None:
    assert ignores_order(oldest, newest, first_read) is ignored


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("2026-12-01T10:00:00.1234567Z", True),  # seven digits, as SQL Server writes them
        ("2026-12-01T12:00:00.1234567+02:00", True),
        ("2026-12-01T10:00:00Z", True),
        # Read as timestamps, but not in the form sent back into a filter: ours is sent.
        ("2026-12-01T10:00Z", False),
        ("2026-12-01T10:00:00.1234567z", False),
        ("2026-12-01T10:00:00+0000", False),
        ("2026-12-01 10:00:00Z", False),
    ],
)
def test_a_page_of_changes_keeps_its_last_timestamp_as_the_server_wrote_it_if_it_is_plain(
    written: str, kept: bool
) -> None:
    record = {"ListingKey": "K2", "StandardStatus": "Active", "ModificationTimestamp": written}
    first = {**record, "ListingKey": "K1", "ModificationTimestamp": "2026-12-01T09:00:00Z"}
    body = json.dumps({"value": [first, record]}).encode()
    page = parse_changes_page(body, page_size=2)
    assert page.last_position is not None and page.last_position[1] == "K2"
    assert page.last_moment == (written if kept else None)
    assert parse_changes_page(body, page_size=3).last_moment is None  # the read ends here
