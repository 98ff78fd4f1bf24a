-- Version 3: a DELETE sent whose answer is not recorded yet.
-- Set (committed) before each DELETE; cleared when the post is done or needs a person. A post
-- found with it set (after a crash, a timeout, a failed try) is read before another DELETE.
ALTER TABLE social_posts ADD COLUMN delete_sent_at TEXT;
