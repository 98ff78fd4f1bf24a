"""Which event types a filter names: exact types (`listing.sold`) or a family (`listing.*`).

One rule for every place that takes such a filter: the event feed's `types`, a webhook
endpoint's event types, a user's e-mail notifications. Pure.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from daemon.enums import EventType


class UnknownEventType(ValueError):
    """A filter entry that names no event type; the message says which entry (by position,
    never by its text) and lists the types."""


def expand(patterns: Iterable[str]) -> frozenset[EventType]:
    """The types `patterns` name; `*` alone names every type. Raises UnknownEventType for an
    entry that names none."""
    chosen: set[EventType] = set()
    for n, pattern in enumerate(patterns, 1):
        matched = _matching(pattern)
        if not matched:
            known = ", ".join(EventType)
            raise UnknownEventType(
                f"event type filter entry {n} names no event type; use one of: {known}, "
                "a family such as `listing.*`, or `*`"
            )
        chosen |= matched
    return frozenset(chosen)


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether an event of `event_type` passes the filter (an empty filter passes none)."""
    return any(event_type in _matching(p) for p in patterns)


@functools.lru_cache(maxsize=256)
def _matching(pattern: str) -> frozenset[EventType]:
    """Once per pattern: a webhook endpoint asks for every event it reads."""
    if pattern == "*":
        return frozenset(EventType)
    if pattern.endswith(".*"):
        family = pattern[:-1]  # keeps the dot: `listing.`
        return frozenset(t for t in EventType if t.startswith(family))
    return frozenset(t for t in EventType if t == pattern)
