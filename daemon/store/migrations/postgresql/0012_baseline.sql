-- PostgreSQL's first migration: the whole schema as SQLite's stands after its migration 0012
-- (daemon/store/migrations/sqlite/), in one step. Later migrations carry the same numbers on
-- both databases. Text is compared byte by byte (COLLATE "C"), as SQLite compares it, so that
-- ISO times and ids sort the same on both; integers are bigint, as SQLite's are 64-bit.

CREATE TABLE meta (
    key   text COLLATE "C" PRIMARY KEY,
    value text COLLATE "C" NOT NULL
);

CREATE TABLE mls_connections (
    id                     text COLLATE "C" PRIMARY KEY,
    name                   text COLLATE "C" NOT NULL,
    base_url               text COLLATE "C" NOT NULL,
    resource               text COLLATE "C" NOT NULL DEFAULT 'Property',
    auth_kind              text COLLATE "C" NOT NULL CHECK (auth_kind IN ('bearer', 'oauth2')),
    token_url              text COLLATE "C",
    client_id              text COLLATE "C",
    scope                  text COLLATE "C",
    secret_encrypted       text COLLATE "C" NOT NULL,  -- the bearer token or the OAuth client secret
    mode                   text COLLATE "C" NOT NULL DEFAULT 'by_key'
                           CHECK (mode IN ('by_key', 'incremental', 'events')),
    key_filter             text COLLATE "C" NOT NULL DEFAULT 'in' CHECK (key_filter IN ('in', 'or', 'each')),
    batch_size             bigint NOT NULL DEFAULT 50 CHECK (batch_size BETWEEN 1 AND 1000),
    page_size              bigint NOT NULL DEFAULT 200 CHECK (page_size BETWEEN 1 AND 10000),
    rate_per_second        double precision NOT NULL DEFAULT 2 CHECK (rate_per_second > 0),
    overlap_seconds        bigint NOT NULL DEFAULT 1200 CHECK (overlap_seconds >= 0),
    full_reconcile_seconds bigint NOT NULL DEFAULT 86400 CHECK (full_reconcile_seconds > 0),
    select_mlg_can_view    bigint NOT NULL DEFAULT 0 CHECK (select_mlg_can_view IN (0, 1)),
    state                  text COLLATE "C" NOT NULL DEFAULT 'active'
                           CHECK (state IN ('active', 'paused', 'needs_reauth')),
    last_error             text COLLATE "C",
    -- incremental mode: the ModificationTimestamp reached; events mode: the last sequence
    cursor                 text COLLATE "C",
    last_full_reconcile_at text COLLATE "C",
    last_synced_at         text COLLATE "C",
    created_at             text COLLATE "C" NOT NULL,
    updated_at             text COLLATE "C" NOT NULL,
    user_id                text COLLATE "C" NOT NULL DEFAULT 'default',
    poll_seconds           bigint NOT NULL DEFAULT 60 CHECK (poll_seconds > 0),
    push_token_sha256      text COLLATE "C"
);

CREATE TABLE listings (
    id                  text COLLATE "C" PRIMARY KEY,
    connection_id       text COLLATE "C" NOT NULL REFERENCES mls_connections (id),
    listing_key         text COLLATE "C" NOT NULL,
    status              text COLLATE "C" CHECK (status IN ('coming_soon', 'active', 'pending', 'sold', 'off_market')),
    mls_standard_status text COLLATE "C",
    mls_status          text COLLATE "C",
    mls_modified_at     text COLLATE "C",
    status_changed_at   text COLLATE "C",
    last_checked_at     text COLLATE "C",
    last_error          text COLLATE "C",
    excluded            bigint NOT NULL DEFAULT 0 CHECK (excluded IN (0, 1)),
    created_at          text COLLATE "C" NOT NULL,
    updated_at          text COLLATE "C" NOT NULL,
    user_id             text COLLATE "C" NOT NULL DEFAULT 'default',
    UNIQUE (connection_id, listing_key)
);

CREATE INDEX listings_by_status ON listings (status);

CREATE TABLE platform_accounts (
    id                       text COLLATE "C" PRIMARY KEY,
    user_id                  text COLLATE "C" NOT NULL,
    platform                 text COLLATE "C" NOT NULL CHECK (platform IN ('facebook', 'instagram', 'linkedin')),
    connected_via            text COLLATE "C" CHECK (connected_via IN ('facebook_login', 'instagram_login')),
    access_token_encrypted   text COLLATE "C" NOT NULL,
    access_token_expires_at  text COLLATE "C",
    refresh_token_encrypted  text COLLATE "C",
    refresh_token_expires_at text COLLATE "C",
    client_id                text COLLATE "C",
    client_secret_encrypted  text COLLATE "C",
    state                    text COLLATE "C" NOT NULL DEFAULT 'active'
                             CHECK (state IN ('active', 'needs_reauth', 'disabled')),
    last_error               text COLLATE "C",
    created_at               text COLLATE "C" NOT NULL,
    updated_at               text COLLATE "C" NOT NULL
);

CREATE TABLE social_posts (
    id               text COLLATE "C" PRIMARY KEY,
    listing_id       text COLLATE "C" NOT NULL REFERENCES listings (id),
    account_id       text COLLATE "C" NOT NULL REFERENCES platform_accounts (id),
    platform_post_id text COLLATE "C" NOT NULL,
    status           text COLLATE "C" NOT NULL DEFAULT 'published'
                     CHECK (status IN ('published', 'unpublished', 'manual_required')),
    published_at     text COLLATE "C",
    unpublished_at   text COLLATE "C",
    attempts         bigint NOT NULL DEFAULT 0,
    last_error       text COLLATE "C",
    next_attempt_at  text COLLATE "C",
    created_at       text COLLATE "C" NOT NULL,
    updated_at       text COLLATE "C" NOT NULL,
    permalink        text COLLATE "C",
    note             text COLLATE "C",
    delete_sent_at   text COLLATE "C"
);

CREATE INDEX social_posts_by_listing ON social_posts (listing_id, status);

CREATE TABLE sync_runs (
    id                bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    trigger           text COLLATE "C" NOT NULL,
    scope             text COLLATE "C" NOT NULL,  -- 'all', 'connection:<id>' or 'listing:<id>'
    holder            text COLLATE "C" NOT NULL,  -- host:pid of the process that ran it
    started_at        text COLLATE "C" NOT NULL,
    finished_at       text COLLATE "C",
    outcome           text COLLATE "C" NOT NULL DEFAULT 'running'
                      CHECK (outcome IN ('running', 'ok', 'partial', 'failed', 'interrupted')),
    connections       bigint NOT NULL DEFAULT 0,
    listings_checked  bigint NOT NULL DEFAULT 0,
    status_changes    bigint NOT NULL DEFAULT 0,
    posts_unpublished bigint NOT NULL DEFAULT 0,
    errors            bigint NOT NULL DEFAULT 0,
    warnings          bigint NOT NULL DEFAULT 0,
    mls_requests      bigint NOT NULL DEFAULT 0,
    posts_already_gone bigint NOT NULL DEFAULT 0,
    posts_failed      bigint NOT NULL DEFAULT 0,
    posts_manual      bigint NOT NULL DEFAULT 0
);

CREATE TABLE status_changes (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    listing_id          text COLLATE "C" NOT NULL,
    connection_id       text COLLATE "C" NOT NULL,
    from_status         text COLLATE "C",
    to_status           text COLLATE "C" NOT NULL,
    mls_standard_status text COLLATE "C",
    mls_status          text COLLATE "C",
    event               text COLLATE "C" NOT NULL,
    run_id              bigint REFERENCES sync_runs (id),
    changed_at          text COLLATE "C" NOT NULL
);

CREATE INDEX status_changes_by_listing ON status_changes (listing_id, id);

CREATE TABLE run_errors (
    id            bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id        bigint NOT NULL REFERENCES sync_runs (id),
    scope         text COLLATE "C" NOT NULL CHECK (scope IN ('run', 'connection', 'batch', 'listing', 'post', 'account')),
    severity      text COLLATE "C" NOT NULL DEFAULT 'error' CHECK (severity IN ('error', 'warning')),
    connection_id text COLLATE "C",
    listing_id    text COLLATE "C",
    message       text COLLATE "C" NOT NULL,
    at            text COLLATE "C" NOT NULL
);

CREATE INDEX run_errors_by_run ON run_errors (run_id);

CREATE TABLE sync_leases (
    connection_id text COLLATE "C" PRIMARY KEY,
    holder        text COLLATE "C" NOT NULL,
    expires_at    text COLLATE "C" NOT NULL
);

CREATE INDEX social_posts_by_status ON social_posts (status, next_attempt_at);

CREATE TABLE api_tokens (
    id           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name         text COLLATE "C" NOT NULL UNIQUE,
    scope        text COLLATE "C" NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    token_sha256 text COLLATE "C" NOT NULL UNIQUE,  -- hex; what a presented token is looked up by
    created_at   text COLLATE "C" NOT NULL,
    last_used_at text COLLATE "C",  -- to the minute: not written on every request
    revoked_at   text COLLATE "C"
);

CREATE TABLE users (
    id            text COLLATE "C" PRIMARY KEY,
    display_name  text COLLATE "C" NOT NULL,
    email         text COLLATE "C",
    time_zone     text COLLATE "C" NOT NULL DEFAULT 'UTC',  -- an IANA name: when a daily digest goes out
    -- Which event types are e-mailed (a JSON list; empty: none) and how: at once or daily.
    notify_events text COLLATE "C" NOT NULL DEFAULT '[]',
    notify_mode   text COLLATE "C" NOT NULL DEFAULT 'immediate'
                  CHECK (notify_mode IN ('immediate', 'daily_digest')),
    created_at    text COLLATE "C" NOT NULL,
    updated_at    text COLLATE "C" NOT NULL
);

CREATE INDEX listings_by_user ON listings (user_id, id);

CREATE INDEX platform_accounts_by_user ON platform_accounts (user_id, id);

CREATE TABLE events (
    id            bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    type          text COLLATE "C" NOT NULL,  -- listing.sold, post.unpublished... (daemon/enums.py)
    user_id       text COLLATE "C",           -- whose record it is about (NULL: the whole daemon's)
    connection_id text COLLATE "C",
    listing_id    text COLLATE "C",
    post_id       text COLLATE "C",
    account_id    text COLLATE "C",
    run_id        bigint,
    data          text COLLATE "C" NOT NULL,  -- JSON: what a receiver needs, never a secret
    created_at    text COLLATE "C" NOT NULL
);

CREATE INDEX events_by_user ON events (user_id, id);

CREATE INDEX events_by_type ON events (type, id);

CREATE TABLE webhook_endpoints (
    id                        bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    url                       text COLLATE "C" NOT NULL,
    event_types               text COLLATE "C" NOT NULL,  -- JSON list: exact types, 'prefix.*', or '*'
    user_id                   text COLLATE "C",           -- only this user's events (NULL: every event)
    description               text COLLATE "C",
    enabled                   bigint NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    disabled_reason           text COLLATE "C",
    secret_encrypted          text COLLATE "C" NOT NULL,  -- whsec_..., encrypted with the SecretBox
    previous_secret_encrypted text COLLATE "C",           -- still signs until previous_secret_until
    previous_secret_until     text COLLATE "C",
    cursor                    bigint NOT NULL,  -- the last event id taken (or skipped)
    failing_since             text COLLATE "C",           -- the first failure since the last success
    created_at                text COLLATE "C" NOT NULL,
    updated_at                text COLLATE "C" NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    endpoint_id     bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        bigint NOT NULL,
    state           text COLLATE "C" NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        bigint NOT NULL DEFAULT 0,
    next_attempt_at text COLLATE "C",             -- while pending
    last_status     bigint,          -- the HTTP status of the last attempt (NULL: no answer)
    last_error      text COLLATE "C",
    created_at      text COLLATE "C" NOT NULL,
    updated_at      text COLLATE "C" NOT NULL,
    UNIQUE (endpoint_id, event_id)
);

CREATE UNIQUE INDEX webhook_deliveries_one_pending
    ON webhook_deliveries (endpoint_id) WHERE state = 'pending';

CREATE TABLE webhook_attempts (
    id               bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    delivery_id      bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at               text COLLATE "C" NOT NULL,
    status_code      bigint,          -- NULL: no answer (timeout, refused connection...)
    latency_ms       bigint NOT NULL,
    error            text COLLATE "C",
    response_excerpt text COLLATE "C",             -- the answer's first 256 characters, never more
    replay           bigint NOT NULL DEFAULT 0 CHECK (replay IN (0, 1))
);

CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);

CREATE TABLE mail_outbox (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id         text COLLATE "C" NOT NULL,
    recipient       text COLLATE "C" NOT NULL,
    kind            text COLLATE "C" NOT NULL,  -- the event type it reports, or 'digest'
    -- held: a sale waiting for the end of its run (the posts come down later in that run);
    -- pending: composed, to send; sent; failed: given up after [email] give_up_after_hours.
    status          text COLLATE "C" NOT NULL CHECK (status IN ('held', 'pending', 'sent', 'failed')),
    run_id          bigint,        -- held until this run is no longer running
    listing_id      text COLLATE "C",           -- a held sale's listing: its post events join the message
    facts           text COLLATE "C" NOT NULL,  -- JSON: the event data a held message is composed from
    event_ids       text COLLATE "C" NOT NULL,  -- JSON list: the events the message reports
    subject         text COLLATE "C",
    body            text COLLATE "C",
    attempts        bigint NOT NULL DEFAULT 0,
    next_attempt_at text COLLATE "C" NOT NULL,
    last_error      text COLLATE "C",
    created_at      text COLLATE "C" NOT NULL,
    sent_at         text COLLATE "C"
);

CREATE INDEX mail_outbox_due ON mail_outbox (status, next_attempt_at);

CREATE INDEX mail_outbox_held ON mail_outbox (user_id, listing_id) WHERE status = 'held';

CREATE TABLE mail_digest_items (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id    text COLLATE "C" NOT NULL,
    recipient  text COLLATE "C" NOT NULL,
    event_id   bigint NOT NULL,
    type       text COLLATE "C" NOT NULL,
    data       text COLLATE "C" NOT NULL,      -- the event's data (JSON), kept: the log may be pruned
    due_at     text COLLATE "C" NOT NULL,      -- the user's next digest hour after the event, in UTC
    message_id bigint,            -- the digest that reported it, once made
    UNIQUE (user_id, event_id)
);

CREATE INDEX mail_digest_items_due ON mail_digest_items (due_at) WHERE message_id IS NULL;

CREATE INDEX mls_connections_by_user ON mls_connections (user_id, id);

CREATE UNIQUE INDEX mls_connections_by_push_token
    ON mls_connections (push_token_sha256) WHERE push_token_sha256 IS NOT NULL;

CREATE TABLE pushed_events (
    id            bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,  -- the order of arrival
    connection_id text COLLATE "C" NOT NULL REFERENCES mls_connections (id) ON DELETE CASCADE,
    sequence      bigint NOT NULL,  -- EntityEventSequence, as the MLS numbered it
    record_key    text COLLATE "C" NOT NULL,  -- ResourceRecordKey: the ListingKey
    source        text COLLATE "C",  -- the EntityEventSource header, when the MLS sends one
    received_at   text COLLATE "C" NOT NULL,
    -- Applies that could not read its listing: after a few the event is given up (with a
    -- recorded error), and the change log's poll and the full pass cover its listing.
    attempts      bigint NOT NULL DEFAULT 0
);

CREATE INDEX pushed_events_by_connection ON pushed_events (connection_id, id);

CREATE INDEX status_changes_by_run ON status_changes (run_id);

CREATE INDEX sync_runs_running ON sync_runs (id) WHERE outcome = 'running';

-- The user every record belongs to until others are added (SQLite's migration 0005 made it).
INSERT INTO users (id, display_name, created_at, updated_at)
VALUES ('default', 'Default user',
        to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
