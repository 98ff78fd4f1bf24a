-- Connections may read RESO's change log: mode 'events' (docs/mls-reso.md "The change log").
-- SQLite cannot alter a CHECK, so the table is rebuilt: its statement as migrations 1-8 left
-- it, with the new mode (the migration runs with foreign keys off and checks them before it
-- commits: daemon/store/database.py); `cursor` holds, in this mode, the last sequence applied.
CREATE TABLE mls_connections_new (
    id                     TEXT PRIMARY KEY,
    name                   TEXT NOT NULL,
    base_url               TEXT NOT NULL,
    resource               TEXT NOT NULL DEFAULT 'Property',
    auth_kind              TEXT NOT NULL CHECK (auth_kind IN ('bearer', 'oauth2')),
    token_url              TEXT,
    client_id              TEXT,
    scope                  TEXT,
    secret_encrypted       TEXT NOT NULL,  -- the bearer token or the OAuth client secret
    mode                   TEXT NOT NULL DEFAULT 'by_key'
                           CHECK (mode IN ('by_key', 'incremental', 'events')),
    key_filter             TEXT NOT NULL DEFAULT 'in' CHECK (key_filter IN ('in', 'or', 'each')),
    batch_size             INTEGER NOT NULL DEFAULT 50 CHECK (batch_size BETWEEN 1 AND 1000),
    page_size              INTEGER NOT NULL DEFAULT 200 CHECK (page_size BETWEEN 1 AND 10000),
    rate_per_second        REAL NOT NULL DEFAULT 2 CHECK (rate_per_second > 0),
    overlap_seconds        INTEGER NOT NULL DEFAULT 1200 CHECK (overlap_seconds >= 0),
    full_reconcile_seconds INTEGER NOT NULL DEFAULT 86400 CHECK (full_reconcile_seconds > 0),
    select_mlg_can_view    INTEGER NOT NULL DEFAULT 0 CHECK (select_mlg_can_view IN (0, 1)),
    state                  TEXT NOT NULL DEFAULT 'active'
                           CHECK (state IN ('active', 'paused', 'needs_reauth')),
    last_error             TEXT,
    -- incremental mode: the ModificationTimestamp reached; events mode: the last sequence
    cursor                 TEXT,
    last_full_reconcile_at TEXT,
    last_synced_at         TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    user_id                TEXT NOT NULL DEFAULT 'default'
);
INSERT INTO mls_connections_new (
    id, name, base_url, resource, auth_kind, token_url, client_id, scope, secret_encrypted,
    mode, key_filter, batch_size, page_size, rate_per_second, overlap_seconds,
    full_reconcile_seconds, select_mlg_can_view, state, last_error, cursor,
    last_full_reconcile_at, last_synced_at, created_at, updated_at, user_id
)
SELECT
    id, name, base_url, resource, auth_kind, token_url, client_id, scope, secret_encrypted,
    mode, key_filter, batch_size, page_size, rate_per_second, overlap_seconds,
    full_reconcile_seconds, select_mlg_can_view, state, last_error, cursor,
    last_full_reconcile_at, last_synced_at, created_at, updated_at, user_id
FROM mls_connections;
DROP TABLE mls_connections;
ALTER TABLE mls_connections_new RENAME TO mls_connections;
CREATE INDEX mls_connections_by_user ON mls_connections (user_id, id);
