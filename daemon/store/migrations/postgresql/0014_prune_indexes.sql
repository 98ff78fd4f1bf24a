-- The prune after every cycle (daemon/store/retention.py) read whole history tables to find
-- what was past the retention: every delivery record, every digest item, every mail sent.
-- That read grew with each day the daemon ran, though nothing was old enough to go. Each
-- prune now finds its rows through an index on the time it prunes by (partial, over the
-- rows it may delete, where the planners allow).
CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (updated_at)
    WHERE state != 'pending';
-- Not partial, unlike the others: PostgreSQL keeps statistics of an index's expression only
-- for an index over every row, and without them it guessed a third of the table would go
-- and read all of it.
CREATE INDEX mail_outbox_done ON mail_outbox (status, coalesce(sent_at, created_at));
CREATE INDEX mail_digest_items_digested ON mail_digest_items (due_at)
    WHERE message_id IS NOT NULL;
