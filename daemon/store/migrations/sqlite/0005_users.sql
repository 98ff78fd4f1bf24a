-- Version 5: users. An agent (or a brokerage's person) owns MLS connections, listings and
-- platform accounts, and is who notifications go to.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    email         TEXT,
    time_zone     TEXT NOT NULL DEFAULT 'UTC',  -- an IANA name: when a daily digest goes out
    -- Which event types are e-mailed (a JSON list; empty: none) and how: at once or daily.
    notify_events TEXT NOT NULL DEFAULT '[]',
    notify_mode   TEXT NOT NULL DEFAULT 'immediate'
                  CHECK (notify_mode IN ('immediate', 'daily_digest')),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- Rows made before users existed belong to one default user; accounts keep the user they
-- already named, who becomes a user of their own.
INSERT INTO users (id, display_name, created_at, updated_at)
VALUES ('default', 'Default user', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
INSERT OR IGNORE INTO users (id, display_name, created_at, updated_at)
SELECT DISTINCT user_id, user_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM platform_accounts;

-- No REFERENCES: SQLite cannot add a referencing column with a non-NULL default while foreign
-- keys are on. The operations layer checks that the user exists.
ALTER TABLE mls_connections ADD COLUMN user_id TEXT NOT NULL DEFAULT 'default';
-- A listing's user is its connection's unless it was given one (a brokerage's connection
-- serves several agents).
ALTER TABLE listings ADD COLUMN user_id TEXT NOT NULL DEFAULT 'default';
CREATE INDEX listings_by_user ON listings (user_id, id);
CREATE INDEX platform_accounts_by_user ON platform_accounts (user_id, id);
CREATE INDEX mls_connections_by_user ON mls_connections (user_id, id);
