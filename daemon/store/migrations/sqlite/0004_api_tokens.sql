-- Version 4: named API tokens, each with a scope (read < write < admin).
-- Only the SHA-256 of a token is kept: the token itself is shown once, when it is created.
-- A revoked token keeps its row (and its name), so that the list and the audit lines that
-- name it still say which token it was.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    token_sha256 TEXT NOT NULL UNIQUE,  -- hex; what a presented token is looked up by
    created_at   TEXT NOT NULL,
    last_used_at TEXT,  -- to the minute: not written on every request
    revoked_at   TEXT
);
