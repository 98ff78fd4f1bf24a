-- Version 6: the event log. Each row is written in the transaction of the change it reports,
-- so an event exists exactly when its change committed (docs/events.md). Ids only grow
-- (AUTOINCREMENT never reuses one, even after pruning): a reader that saw id N has seen every
-- event up to N.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    type          TEXT NOT NULL,  -- listing.sold, post.unpublished... (daemon/enums.py)
    user_id       TEXT,           -- whose record it is about (NULL: the whole daemon's)
    connection_id TEXT,
    listing_id    TEXT,
    post_id       TEXT,
    account_id    TEXT,
    run_id        INTEGER,
    data          TEXT NOT NULL,  -- JSON: what a receiver needs, never a secret
    created_at    TEXT NOT NULL
);
CREATE INDEX events_by_user ON events (user_id, id);
CREATE INDEX events_by_type ON events (type, id);
