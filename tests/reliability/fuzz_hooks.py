"""Schemathesis hooks for tests/reliability/test_api_fuzz.py (loaded through
SCHEMATHESIS_HOOKS): JSON lines bodies (the bulk import) are sent as the text they are, as
schemathesis sends text/csv."""

from __future__ import annotations

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")


@schemathesis.hook
def map_query(
    context: schemathesis.HookContext, query: dict[str, object] | None
) -> dict[str, object] | None:
    """A valid `wait` on /v1/events holds the answer up to a minute when no event comes: the
    fuzz run checks answers, not patience, so a number is kept under a second."""
    if query and isinstance(query.get("wait"), int | float):
        query["wait"] = min(float(query["wait"]), 0.5)  # type: ignore[arg-type]
    return query


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: object) -> object:
    """A connection's server is a dead port on loopback: a connection in mode events is
    stored only once its server's $metadata was asked for, and a fuzzed host name must never
    send the daemon looking for a real one."""
    if isinstance(body, dict):
        for field, url in (("base_url", DEAD_SERVER), ("token_url", DEAD_SERVER + "/token")):
            if isinstance(body.get(field), str):
                body[field] = url
    return body


DEAD_SERVER = "http://127.0.0.1:9/odata"  # the discard port: nothing listens there
