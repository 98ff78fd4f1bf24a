-- The listings no read has confirmed: never checked since they were tracked (or moved to
-- another key), or last checked without a usable answer. An incremental or events
-- connection reads them by key every cycle, since a read of changes never returns a record
-- that has not changed (daemon/store/listings.py UNCONFIRMED). The index holds them alone,
-- so finding them costs nothing when there are none.
CREATE INDEX listings_unconfirmed ON listings (connection_id)
    WHERE last_checked_at IS NULL OR last_error IS NOT NULL;
