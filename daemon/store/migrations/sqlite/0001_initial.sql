-- mls-sync schema, version 1. Times are UTC ISO-8601 text with microseconds and a Z, so that
-- text order is time order.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE mls_connections (
    id                     TEXT PRIMARY KEY,
    name                   TEXT NOT NULL,
    base_url               TEXT NOT NULL,
    resource               TEXT NOT NULL DEFAULT 'Property',
    auth_kind              TEXT NOT NULL CHECK (auth_kind IN ('bearer', 'oauth2')),
    token_url              TEXT,
    client_id              TEXT,
    scope                  TEXT,
    secret_encrypted       TEXT NOT NULL,  -- the bearer token or the OAuth client secret
    mode                   TEXT NOT NULL DEFAULT 'by_key' CHECK (mode IN ('by_key', 'incremental')),
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
    cursor                 TEXT,  -- incremental mode: ModificationTimestamp reached
    last_full_reconcile_at TEXT,
    last_synced_at         TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);

CREATE TABLE listings (
    id                  TEXT PRIMARY KEY,
    connection_id       TEXT NOT NULL REFERENCES mls_connections (id),
    listing_key         TEXT NOT NULL,
    status              TEXT CHECK (status IN ('coming_soon', 'active', 'pending', 'sold', 'off_market')),
    mls_standard_status TEXT,
    mls_status          TEXT,
    mls_modified_at     TEXT,
    status_changed_at   TEXT,
    last_checked_at     TEXT,
    last_error          TEXT,
    excluded            INTEGER NOT NULL DEFAULT 0 CHECK (excluded IN (0, 1)),
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (connection_id, listing_key)
);
CREATE INDEX listings_by_status ON listings (status);

CREATE TABLE platform_accounts (
    id                       TEXT PRIMARY KEY,
    user_id                  TEXT NOT NULL,
    platform                 TEXT NOT NULL CHECK (platform IN ('facebook', 'instagram', 'linkedin')),
    connected_via            TEXT CHECK (connected_via IN ('facebook_login', 'instagram_login')),
    access_token_encrypted   TEXT NOT NULL,
    access_token_expires_at  TEXT,
    refresh_token_encrypted  TEXT,
    refresh_token_expires_at TEXT,
    client_id                TEXT,
    client_secret_encrypted  TEXT,
    state                    TEXT NOT NULL DEFAULT 'active'
                             CHECK (state IN ('active', 'needs_reauth', 'disabled')),
    last_error               TEXT,
    created_at               TEXT NOT NULL,
    updated_at               TEXT NOT NULL
);

CREATE TABLE social_posts (
    id               TEXT PRIMARY KEY,
    listing_id       TEXT NOT NULL REFERENCES listings (id),
    account_id       TEXT NOT NULL REFERENCES platform_accounts (id),
    platform_post_id TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'published'
                     CHECK (status IN ('published', 'unpublished', 'manual_required')),
    published_at     TEXT,
    unpublished_at   TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX social_posts_by_listing ON social_posts (listing_id, status);

CREATE TABLE sync_runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger           TEXT NOT NULL,
    scope             TEXT NOT NULL,  -- 'all', 'connection:<id>' or 'listing:<id>'
    holder            TEXT NOT NULL,  -- host:pid of the process that ran it
    started_at        TEXT NOT NULL,
    finished_at       TEXT,
    outcome           TEXT NOT NULL DEFAULT 'running'
                      CHECK (outcome IN ('running', 'ok', 'partial', 'failed', 'interrupted')),
    connections       INTEGER NOT NULL DEFAULT 0,
    listings_checked  INTEGER NOT NULL DEFAULT 0,
    status_changes    INTEGER NOT NULL DEFAULT 0,
    posts_unpublished INTEGER NOT NULL DEFAULT 0,
    errors            INTEGER NOT NULL DEFAULT 0,
    warnings          INTEGER NOT NULL DEFAULT 0,
    mls_requests      INTEGER NOT NULL DEFAULT 0
);

-- The audit log (5.5). No foreign key to listings: history outlives a removed listing.
CREATE TABLE status_changes (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    listing_id          TEXT NOT NULL,
    connection_id       TEXT NOT NULL,
    from_status         TEXT,
    to_status           TEXT NOT NULL,
    mls_standard_status TEXT,
    mls_status          TEXT,
    event               TEXT NOT NULL,
    run_id              INTEGER REFERENCES sync_runs (id),
    changed_at          TEXT NOT NULL
);
CREATE INDEX status_changes_by_listing ON status_changes (listing_id, id);

CREATE TABLE run_errors (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        INTEGER NOT NULL REFERENCES sync_runs (id),
    scope         TEXT NOT NULL CHECK (scope IN ('run', 'connection', 'batch', 'listing', 'post', 'account')),
    severity      TEXT NOT NULL DEFAULT 'error' CHECK (severity IN ('error', 'warning')),
    connection_id TEXT,
    listing_id    TEXT,
    message       TEXT NOT NULL,
    at            TEXT NOT NULL
);
CREATE INDEX run_errors_by_run ON run_errors (run_id);

-- One sync of a connection at a time, across processes; a crashed holder's lease expires.
CREATE TABLE sync_leases (
    connection_id TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
