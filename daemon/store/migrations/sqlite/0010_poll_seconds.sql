-- Events mode reads the change log between cycles, on each connection's own interval
-- (docs/mls-reso.md "The change log"); the other modes leave it unused.
ALTER TABLE mls_connections
    ADD COLUMN poll_seconds INTEGER NOT NULL DEFAULT 60 CHECK (poll_seconds > 0);
