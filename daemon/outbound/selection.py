"""Which events an endpoint takes: its event types (exact, `prefix.*`, or `*` for all).
Its user filter is applied when the log is read."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from daemon.enums import EventType
from daemon.specs import SpecError

ALL = "*"
_PATTERN = re.compile(r"[a-zA-Z0-9_]+(\.[a-zA-Z0-9_]+)*(\.\*)?")


def check_types(types: Sequence[str]) -> list[str]:
    """The patterns, each an event type, `prefix.*` that some type starts with, or `*`."""
    if not types:
        return [ALL]
    known = [t.value for t in EventType]
    for pattern in types:
        if pattern == ALL:
            continue
        if not _PATTERN.fullmatch(pattern):
            raise SpecError(
                "event_types: each is a type (listing.sold), a prefix with .* (listing.*) or *"
            )
        if not any(matches(pattern, t) for t in known):
            raise SpecError(f"event_types: one matches no event type; known: {', '.join(known)}")
    return sorted(set(types))


def matches(pattern: str, event_type: str) -> bool:
    if pattern == ALL:
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def wants(patterns: Sequence[str], endpoint_id: int, event_type: str, data: str) -> bool:
    """Whether the endpoint takes this event. An endpoint never gets the event of its own
    disabling (it was disabled: that event would tell a receiver that is not listening)."""
    if not any(matches(p, event_type) for p in patterns):
        return False
    if event_type == EventType.WEBHOOK_ENDPOINT_DISABLED:
        endpoint = json.loads(data).get("endpoint") or {}
        return bool(endpoint.get("id") != endpoint_id)
    return True
