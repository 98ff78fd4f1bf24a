"""Which events an endpoint takes: its event types, by the one filter rule every part of
mls-sync uses (daemon/event_types.py: exact types, `family.*`, or `*`). Its user filter is
applied when the log is read."""

from __future__ import annotations

import json
from collections.abc import Sequence

from daemon import event_types
from daemon.enums import EventType
from daemon.specs import SpecError

ALL = "*"


def check_types(types: Sequence[str]) -> list[str]:
    """The endpoint's filter as stored: the entries given (none: `*`, every type)."""
    if not types:
        return [ALL]
    try:
        event_types.expand(types)
    except event_types.UnknownEventType as exc:
        raise SpecError(f"event_types: {exc}") from None
    return sorted(set(types))


def wants(patterns: Sequence[str], endpoint_id: int, event_type: str, data: str) -> bool:
    """Whether the endpoint takes this event. An endpoint never gets the event of its own
    disabling (it was disabled: that event would tell a receiver that is not listening)."""
    if not event_types.matches(patterns, event_type):
        return False
    if event_type == EventType.WEBHOOK_ENDPOINT_DISABLED:
        endpoint = json.loads(data).get("endpoint") or {}
        return bool(endpoint.get("id") != endpoint_id)
    return True
