"""A resource's URL with a query this daemon encoded, made without parsing the whole URL again.

httpx checks every character of a URL given as text for control characters, in Python, one
character at a time; a by_key query of 50 keys is some 900 characters, and that check was
most of what building each request's URL cost, a measurable share of a cycle's CPU
(docs/benchmarks.md "The request's URL"). The resource's URL (base URL and path) is parsed by
httpx once per connection's server and resource; each query is then put in its place.

The query must be in the form httpx would leave it in: `query.encode_query`'s, whose every
character is one httpx's query keeps as it is. A test checks that the URL made here equals
httpx's parse of the same text, for any keys. Where httpx's URL is not made as this module
expects (another httpx), or the resource's URL has a query or fragment of its own, the whole
text is parsed as before: slower, never different.
"""

from __future__ import annotations

from functools import cache

import httpx


@cache
def url_of(text: str) -> httpx.URL:
    """A URL the daemon makes again and again from the same text (a connection's base URL,
    a resource's URL), parsed once per process: one entry per server, and per resource, the
    process has asked. A connection's client and its batches are made anew each run, and
    a fresh parse of each was a measurable share of a cycle (docs/benchmarks.md "The
    request's URL")."""
    return httpx.URL(text)


def with_query(resource: httpx.URL, query: str) -> httpx.URL:
    """`resource` (no query, no fragment) with `query`, an encoded query (see the module's
    docstring): equal to `httpx.URL(f"{resource}?{query}")`."""
    parsed = getattr(resource, "_uri_reference", None)
    replace = getattr(parsed, "_replace", None)
    if (
        replace is None
        or getattr(parsed, "query", "") is not None
        or getattr(parsed, "fragment", "") is not None
    ):
        return httpx.URL(f"{resource}?{query}")
    url = httpx.URL.__new__(httpx.URL)
    url._uri_reference = replace(query=query)
    return url
