"""Whether the event log holds exactly the changes that committed: the tests that crash,
move markets or deliver events check the database with it."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class EventLogCheck:
    events: int
    missing: int  # committed changes without their one event
    extra: int  # events without a committed change, or a second event for one


# (what, which record, which move) of every committed change, and of every event: the audit
# trail's rows, the posts that came down, the runs that ended.
_CHANGES = """
SELECT 'listing', listing_id, coalesce(from_status, '') || '>' || to_status FROM status_changes
UNION ALL SELECT 'post', id, 'unpublished' FROM social_posts WHERE status = 'unpublished'
UNION ALL SELECT 'run', CAST(id AS TEXT), outcome FROM sync_runs WHERE outcome != 'running'
"""
_EVENTS = """
SELECT 'listing', listing_id,
    coalesce(json_extract(data, '$.change.from'), '') || '>' || json_extract(data, '$.change.to')
FROM events WHERE type LIKE 'listing.%'
UNION ALL SELECT 'post', post_id, 'unpublished' FROM events WHERE type = 'post.unpublished'
UNION ALL SELECT 'run', CAST(run_id AS TEXT), json_extract(data, '$.run.outcome')
FROM events WHERE type = 'run.finished'
"""


def event_log_against_what_committed(db: sqlite3.Connection) -> EventLogCheck:
    """Each committed change has exactly one event, and each event a committed change."""
    changes = Counter(db.execute(_CHANGES).fetchall())
    logged = Counter(db.execute(_EVENTS).fetchall())
    total = db.execute("SELECT count(*) FROM events").fetchone()[0]
    return EventLogCheck(total, sum((changes - logged).values()), sum((logged - changes).values()))
