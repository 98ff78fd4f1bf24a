"""A resource's URL with a query this daemon encoded, made without parsing the whole URL again.

httpx checks every character of a URL given as text for control characters, in Python, one
character at a time; a by_key query of 50 keys is some 900 characters, and that check was
most of what building each request's URL cost, a measurable share of a cycle's CPU
(docs/benchmarks.md "The request's URL"). The resource's URL (base URL and path) is parsed by
httpx once per connection's server and resource; each query is then put in its place, in
the parsed form httpx keeps (its `_uri_reference`, httpx's own and not part of its API).

So that the URL made is the one httpx would make of the whole text:
- the query must be made only of characters httpx's query keeps as they are (`kept_as_is`);
  `query.encode_query`'s always are, and any other query is parsed whole;
- this httpx must make its URLs as this module expects: checked once, at import, on a
  sample, else every URL is parsed whole (slower, the same URL);
- a resource's URL with a query or fragment of its own is parsed whole with the query, and
  so is a query too long to put in place (`LONGEST_IN_PLACE`): httpx refuses a URL over
  its own limit, and such a URL must be refused as before.
A test checks, for any keys, that the URL made here is httpx's parse of the same text.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import httpx

# Characters httpx's query quoting leaves as they are: RFC 3986's unreserved characters, the
# sub-delimiters, `:@/?` and `%` (httpx takes a `%` as the start of an escape made already,
# and leaves even a lone one). httpx keeps a few more; a query with any character outside
# these (a space, `#`, `"`, `<`, `>`, a non-ASCII character) is parsed whole, as before.
_KEPT_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")


def kept_as_is(query: str) -> bool:
    """Whether httpx's query quoting leaves `query` as it is (one pass of a pattern, in C)."""
    return _KEPT_CHARACTERS.fullmatch(query) is not None


# Queries longer than this are parsed whole, with their URL (slower, the same URL): well
# under httpx's limit on a whole URL (65,536 characters), and eight times the URLs a
# connection makes by default (`[mls] max_url_length`).
LONGEST_IN_PLACE = 16_384


@cache
def url_of(text: str) -> httpx.URL:
    """A URL the daemon makes again and again from the same text (a connection's base URL,
    a resource's URL), parsed once per process: one entry per server, and per resource, the
    process has asked (docs/benchmarks.md "The request's URL")."""
    return httpx.URL(text)


def with_query(resource: httpx.URL, query: str) -> httpx.URL:
    """`resource` with `query` as its query: equal to `httpx.URL(f"{resource}?{query}")`
    (see the module's docstring)."""
    parsed: Any = getattr(resource, "_uri_reference", None)
    if (
        not _PARSED_IN_PLACE
        or parsed is None
        or parsed.query is not None
        or parsed.fragment is not None
        or len(query) > LONGEST_IN_PLACE
        or not kept_as_is(query)
    ):
        return httpx.URL(f"{resource}?{query}")
    url = httpx.URL.__new__(httpx.URL)
    url._uri_reference = parsed._replace(query=query)
    return url


def _parsed_in_place() -> bool:
    """Whether this httpx's URL is what `with_query` expects: its parse alone in its state,
    a named tuple with a query, and a sample made both ways the same."""
    resource = httpx.URL("https://mls.example/odata/Property")
    parsed = getattr(resource, "_uri_reference", None)
    if set(vars(resource)) != {"_uri_reference"} or "query" not in getattr(
        type(parsed), "_fields", ()
    ):
        return False
    query = "$filter=ListingKey+in+('a','b%27c')&$top=2"
    made = httpx.URL.__new__(httpx.URL)
    made._uri_reference = parsed._replace(query=query)  # type: ignore[union-attr]
    whole = httpx.URL(f"{resource}?{query}")
    return bool(made._uri_reference == whole._uri_reference and str(made) == str(whole))


_PARSED_IN_PLACE = _parsed_in_place()
