"""An event as the feed shows it and a webhook delivers it: the Standard Webhooks payload
shape (`type`, `timestamp`, `data`) with the event's id and user (docs/events.md). Written once
here, below both the operations layer (GET /v1/events) and the delivery worker."""

from __future__ import annotations

import json
from typing import Any

from daemon.platforms.links import post_link
from daemon.store.records import EventRow


def event_view(row: EventRow) -> dict[str, Any]:
    """A post's link is made here, as everywhere a post is shown (daemon/platforms/links.py)."""
    data = json.loads(row.data)
    if isinstance(shown := data.get("post"), dict):
        shown["link"] = post_link(shown["platform"], shown["platform_post_id"], shown["permalink"])
    return {
        "id": row.id,
        "type": row.type,
        "timestamp": row.created_at,
        "user_id": row.user_id,
        "data": data,
    }


def event_body(row: EventRow) -> str:
    """The exact text a delivery sends and signs: the event as the feed shows it, compact
    JSON, ASCII only."""
    return json.dumps(event_view(row), separators=(",", ":"))
