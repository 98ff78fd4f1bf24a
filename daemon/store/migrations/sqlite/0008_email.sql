-- Version 8: e-mail notifications (docs/email.md). The mail worker follows the event log and,
-- in the transaction that moves its cursor (meta key 'mail_cursor'), writes what each event
-- means for each notified user: a message (mail_outbox) or an item of a daily digest
-- (mail_digest_items). So a crash neither loses nor doubles a message.
CREATE TABLE mail_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    kind            TEXT NOT NULL,  -- the event type it reports, or 'digest'
    -- held: a sale waiting for the end of its run (the posts come down later in that run);
    -- pending: composed, to send; sent; failed: given up after [email] give_up_after_hours.
    status          TEXT NOT NULL CHECK (status IN ('held', 'pending', 'sent', 'failed')),
    run_id          INTEGER,        -- held until this run is no longer running
    listing_id      TEXT,           -- a held sale's listing: its post events join the message
    facts           TEXT NOT NULL,  -- JSON: the event data a held message is composed from
    event_ids       TEXT NOT NULL,  -- JSON list: the events the message reports
    subject         TEXT,
    body            TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (status, next_attempt_at);
CREATE INDEX mail_outbox_held ON mail_outbox (user_id, listing_id) WHERE status = 'held';

CREATE TABLE mail_digest_items (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    event_id   INTEGER NOT NULL,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,      -- the event's data (JSON), kept: the log may be pruned
    due_at     TEXT NOT NULL,      -- the user's next digest hour after the event, in UTC
    message_id INTEGER,            -- the digest that reported it, once made
    UNIQUE (user_id, event_id)
);
CREATE INDEX mail_digest_items_due ON mail_digest_items (due_at) WHERE message_id IS NULL;
