-- Version 7: signed outbound webhooks (docs/webhooks.md). An endpoint follows the event log
-- from its own cursor; each event it takes becomes one delivery, and each try of a delivery
-- one attempt. Deliveries of an endpoint go strictly in event order: the next event is taken
-- only once the pending delivery is delivered or given up.
CREATE TABLE webhook_endpoints (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    url                       TEXT NOT NULL,
    event_types               TEXT NOT NULL,  -- JSON list: exact types, 'prefix.*', or '*'
    user_id                   TEXT,           -- only this user's events (NULL: every event)
    description               TEXT,
    enabled                   INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    disabled_reason           TEXT,
    secret_encrypted          TEXT NOT NULL,  -- whsec_..., encrypted with the SecretBox
    previous_secret_encrypted TEXT,           -- still signs until previous_secret_until
    previous_secret_until     TEXT,
    cursor                    INTEGER NOT NULL,  -- the last event id taken (or skipped)
    failing_since             TEXT,           -- the first failure since the last success
    created_at                TEXT NOT NULL,
    updated_at                TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id     INTEGER NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,             -- while pending
    last_status     INTEGER,          -- the HTTP status of the last attempt (NULL: no answer)
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
-- At most one pending delivery per endpoint: the order of its events.
CREATE UNIQUE INDEX webhook_deliveries_one_pending
    ON webhook_deliveries (endpoint_id) WHERE state = 'pending';

CREATE TABLE webhook_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at               TEXT NOT NULL,
    status_code      INTEGER,          -- NULL: no answer (timeout, refused connection...)
    latency_ms       INTEGER NOT NULL,
    error            TEXT,
    response_excerpt TEXT,             -- the answer's first 256 characters, never more
    replay           INTEGER NOT NULL DEFAULT 0 CHECK (replay IN (0, 1))
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);
