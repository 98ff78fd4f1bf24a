-- Until when a listing an event named is read again, once a slot of the clock's cycles: a
-- server's reads may lag its change log (a cache, a replica), so the read an event caused can
-- still show the record from before the change, which no later event names again. It is the
-- event's read plus the connection's overlap_seconds (docs/mls-reso.md "The change log"), and
-- is cleared by the first check after it (daemon/store/listings.py MARK_CHECKED). Compared
-- as text, as every time the store keeps: byte order is time order.
ALTER TABLE listings ADD COLUMN read_again_until text COLLATE "C";
-- It holds those listings alone: none in by_key and incremental mode, a few in events mode.
CREATE INDEX listings_read_again ON listings (connection_id) WHERE read_again_until IS NOT NULL;
