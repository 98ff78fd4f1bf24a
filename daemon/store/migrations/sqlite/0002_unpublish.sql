-- Version 2: what the unpublish reconciler records.

-- A link a person can open when the post needs to be removed by hand.
ALTER TABLE social_posts ADD COLUMN permalink TEXT;
-- How the post ended up unpublished ("deleted", "already gone: ...") or why it needs a person.
ALTER TABLE social_posts ADD COLUMN note TEXT;

ALTER TABLE sync_runs ADD COLUMN posts_already_gone INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN posts_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN posts_manual INTEGER NOT NULL DEFAULT 0;

CREATE INDEX social_posts_by_status ON social_posts (status, next_attempt_at);
