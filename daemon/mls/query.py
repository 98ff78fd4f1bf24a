"""Building RESO Web API (OData) query URLs. Pure: strings in, strings out.

String operators are not part of Web API Core, so how a set of keys is asked for is a
per-server setting: `in` (OData 4.01), an `or`-chain of `eq`, or one request per key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from urllib.parse import quote_plus, urlencode

import httpx

from daemon.enums import KeyFilter
from daemon.mls.encoded_url import url_of, with_query
from daemon.timestamps import iso

SELECT = "ListingKey,StandardStatus,MlsStatus,ModificationTimestamp"
# MLS Grid marks removed records with MlgCanView=false; other servers reject unknown fields in
# $select, so it is only asked for where the connection says the server has it.
SELECT_WITH_MLG = SELECT + ",MlgCanView"


def quote(value: str) -> str:
    """An OData string literal: single quotes, inner quotes doubled."""
    return "'" + _inner(value) + "'"


def _inner(value: str) -> str:
    """`value` as it reads between an OData literal's quotes: its own quotes doubled."""
    return value.replace("'", "''")


def keys_filter(keys: Sequence[str], form: KeyFilter) -> str:
    if not keys:
        raise ValueError("no keys to ask for")
    # Each key as `quote` writes it, the quotes around them shared with the separators:
    # a batch's filter is made for each of its requests, and quoting its keys one by one
    # cost about as much as the rest of its URL (docs/benchmarks.md "The request's URL").
    if "'" in "".join(keys):  # a quote to double (a rare key)
        keys = [_inner(k) for k in keys]
    if form is KeyFilter.IN and len(keys) > 1:
        return "ListingKey in ('" + "','".join(keys) + "')"
    return "ListingKey eq '" + "' or ListingKey eq '".join(keys) + "'"


def odata_timestamp(moment: datetime) -> str:
    """Timestamps are written bare in a filter: ModificationTimestamp ge 2026-01-01T00:00:00Z."""
    return iso(moment)


# Left as they are in a query string (RFC 3986 allows them there; OData's own examples
# write them so): what a filter is made of. Anything else is percent-encoded, a `+` as %2B;
# a space is a `+`, as httpx's own encoding wrote it (%20 would make an `or` filter of 50
# keys 200 characters longer, and split batches that fit before).
QUERY_SAFE = "$,'():"


def resource_url(base_url: str, path: str, params: Mapping[str, str] | None = None) -> httpx.URL:
    """`path` under the server's base URL, with `params` as its query. The query is encoded
    here in one pass of the standard library's quoting: httpx's own `params=` encodes it,
    then parses the URL it made again, twice the cost on a 50-key filter, a measurable share
    of a by_key cycle's CPU (docs/benchmarks.md). The URL without it is parsed once
    (daemon/mls/encoded_url.py)."""
    resource = url_of(f"{base_url.rstrip('/')}/{path}")
    return with_query(resource, encode_query(params)) if params else resource


def encode_query(params: Mapping[str, str]) -> str:
    """`params` as a query, each character one httpx keeps as it is (see QUERY_SAFE)."""
    return urlencode(params, safe=QUERY_SAFE, quote_via=quote_plus)


def by_key_url(
    base_url: str, resource: str, keys: Sequence[str], form: KeyFilter, select: str = SELECT
) -> httpx.URL:
    params = {"$filter": keys_filter(keys, form), "$select": select, "$top": str(len(keys))}
    return resource_url(base_url, resource, params)


OLDEST_FIRST = "ModificationTimestamp,ListingKey"


def changes_url(
    base_url: str,
    resource: str,
    since: datetime,
    page_size: int,
    select: str = SELECT,
    newest_first: bool = False,
) -> httpx.URL:
    """Records changed at or after `since`, oldest first (or newest first: the check that
    the server keeps the order asked). `ge` rather than `gt`: records that share the cursor's
    timestamp are asked for again (and applied idempotently) instead of lost."""
    condition = f"ModificationTimestamp ge {odata_timestamp(since)}"
    return _changes(base_url, resource, condition, page_size, select, newest_first)


def changes_after_url(
    base_url: str,
    resource: str,
    after: tuple[datetime, str],
    page_size: int,
    select: str = SELECT,
    moment_text: str | None = None,
) -> httpx.URL:
    """Keyset continuation: the records after (timestamp, key) in the same order
    (docs/mls-paging.md). `moment_text`: the timestamp as the server wrote it, sent instead
    of ours (which is cut to microseconds)."""
    moment, key = moment_text or odata_timestamp(after[0]), quote(after[1])
    keyset = (
        f"ModificationTimestamp gt {moment} or "
        f"(ModificationTimestamp eq {moment} and ListingKey gt {key})"
    )
    return _changes(base_url, resource, keyset, page_size, select)


def _changes(
    base_url: str,
    resource: str,
    condition: str,
    page_size: int,
    select: str,
    newest_first: bool = False,
) -> httpx.URL:
    order = "ModificationTimestamp desc,ListingKey desc" if newest_first else OLDEST_FIRST
    params = {"$filter": condition, "$select": select, "$orderby": order, "$top": str(page_size)}
    return resource_url(base_url, resource, params)


def page_size_preference(page_size: int) -> str:
    """The OData way to ask for a page size (`$top` is, by the standard, a total)."""
    return f"odata.maxpagesize={page_size}"


def keys_per_request(form: KeyFilter, batch_size: int) -> int:
    """The most keys one request asks for (before its URL's length splits it)."""
    return 1 if form is KeyFilter.EACH else batch_size


def key_batches(
    keys: Sequence[str],
    form: KeyFilter,
    batch_size: int,
    url_length: Callable[[Sequence[str]], int],
    max_url_length: int,
) -> Iterator[list[str]]:
    """Batches of at most `batch_size` keys (one per key for EACH), each split further until
    its URL fits in `max_url_length`. A single key whose URL is too long is still yielded: the
    server decides (413/414 is then that listing's error)."""
    size = keys_per_request(form, batch_size)
    for start in range(0, len(keys), size):
        yield from split_to_fit(list(keys[start : start + size]), url_length, max_url_length)


def split_to_fit(
    keys: list[str], url_length: Callable[[Sequence[str]], int], max_url_length: int
) -> Iterator[list[str]]:
    if len(keys) <= 1 or url_length(keys) <= max_url_length:
        yield keys
        return
    middle = len(keys) // 2
    yield from split_to_fit(keys[:middle], url_length, max_url_length)
    yield from split_to_fit(keys[middle:], url_length, max_url_length)


ENTITY_EVENT = "EntityEvent"  # RESO's change log resource (docs/mls-reso.md "The change log")


def entity_events_url(base_url: str, after: int, page_size: int) -> httpx.URL:
    """The change log's events after sequence `after`, in sequence order (docs/mls-reso.md
    "The change log")."""
    params = {
        "$filter": f"EntityEventSequence gt {after}",
        "$orderby": "EntityEventSequence",
        "$top": str(page_size),
    }
    return resource_url(base_url, ENTITY_EVENT, params)


def metadata_url(base_url: str) -> httpx.URL:
    """The server's `$metadata`: the resources it serves."""
    return resource_url(base_url, "$metadata")


def last_event_url(base_url: str) -> httpx.URL:
    """The change log's last event: where a reader starts after a full pass."""
    params = {"$orderby": "EntityEventSequence desc", "$top": "1"}
    return resource_url(base_url, ENTITY_EVENT, params)
