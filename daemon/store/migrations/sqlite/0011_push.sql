-- Push (RESO RCP-28, docs/mls-reso.md "Push"): the MLS POSTs change-log events to the daemon.
-- Each connection may have a bearer token for it; only its SHA-256 is kept (the token is
-- shown once). NULL: push is off for the connection.
ALTER TABLE mls_connections ADD COLUMN push_token_sha256 TEXT;
CREATE UNIQUE INDEX mls_connections_by_push_token
    ON mls_connections (push_token_sha256) WHERE push_token_sha256 IS NOT NULL;

-- Pushed events wait here between the answer to the MLS and their application: an event is
-- deleted in the transaction that applies what its record read said, so a crash in between
-- loses nothing (it is applied again: applying is idempotent).
CREATE TABLE pushed_events (
    id            INTEGER PRIMARY KEY,  -- the order of arrival
    connection_id TEXT NOT NULL REFERENCES mls_connections (id) ON DELETE CASCADE,
    sequence      INTEGER NOT NULL,  -- EntityEventSequence, as the MLS numbered it
    record_key    TEXT NOT NULL,  -- ResourceRecordKey: the ListingKey
    source        TEXT,  -- the EntityEventSource header, when the MLS sends one
    received_at   TEXT NOT NULL,
    -- Applies that could not read its listing: after a few the event is given up (with a
    -- recorded error), and the change log's poll and the full pass cover its listing.
    attempts      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX pushed_events_by_connection ON pushed_events (connection_id, id);
