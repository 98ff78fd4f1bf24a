-- Whether the listing's key is one the server fails a by-key query of alone (an error of its
-- own for any query that names it, while it answers for the keys beside it): each sync asks
-- it alone, first, so that its batch is not split down to it again, which spent a sync's
-- budget for splitting on keys already known (docs/reliability.md "One key the server fails
-- on"). Kept here, and not only in the memory of the daemon that found them, so that a
-- daemon restarted, or another daemon taking the connection over, knows them from its first
-- sync. Set with the listing's error in the write of the answer that found it; cleared by a
-- read of the record (daemon/store/listings.py MARK_CHECKED) and by a move to another key
-- (INSERT). Another error leaves it as it was (SET_ERROR).
-- A check writes it as it was (0) in the usual case: an unchanged value keeps the update HOT.
ALTER TABLE listings ADD COLUMN fails_alone bigint NOT NULL DEFAULT 0;
-- It holds those listings alone: none, on a server that answers for every key.
CREATE INDEX listings_failing_alone ON listings (connection_id) WHERE fails_alone = 1;
