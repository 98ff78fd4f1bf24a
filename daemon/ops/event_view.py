"""An event as the API and webhooks show it: `{"id", "type", "timestamp", "data"}`."""

from __future__ import annotations

import json

from daemon.ops.views import View
from daemon.store.records import EventRow


def event_view(row: EventRow) -> View:
    return {
        "id": row.id,
        "type": row.type,
        "timestamp": row.created_at,
        "data": json.loads(row.data),
    }


def event_body(row: EventRow) -> str:
    """The exact text a webhook sends (and signs): compact JSON, ASCII only."""
    return json.dumps(event_view(row), separators=(",", ":"))
