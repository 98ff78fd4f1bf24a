-- Whether a listing waits for a read of its own: never checked since it was tracked (or
-- moved to another key, or included again), or last checked without a usable answer. A read
-- of changes never returns a record that has not changed, so an incremental or events
-- connection reads these by key every cycle (daemon/store/listings.py UNCONFIRMED). A flag
-- of its own, set and cleared with the check: an index over the time of each check would make
-- every check on PostgreSQL write every index of the row anew (no HOT update), where the flag
-- changes only when a listing starts or stops waiting.
-- Added as 0 (no rewrite of the table), then set on the few rows that wait: an UPDATE of
-- every row would leave a dead copy of each behind.
ALTER TABLE listings ADD COLUMN needs_read bigint NOT NULL DEFAULT 0;
UPDATE listings SET needs_read = 1 WHERE last_checked_at IS NULL OR last_error IS NOT NULL;
ALTER TABLE listings ALTER COLUMN needs_read SET DEFAULT 1;
-- It holds the waiting listings alone, so finding them costs nothing when there are none.
CREATE INDEX listings_unconfirmed ON listings (connection_id) WHERE needs_read = 1;
