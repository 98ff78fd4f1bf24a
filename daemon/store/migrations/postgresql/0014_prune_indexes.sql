-- The prune after every cycle (daemon/store/retention.py) read whole history tables to find
-- what was past the retention: every delivery record, every digest item, every mail sent.
-- That read grew with each day the daemon ran, though nothing was old enough to go. Each
-- prune now finds its rows through an index on the time it prunes by, over the rows it may
-- delete.
CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (updated_at)
    WHERE state != 'pending';
CREATE INDEX mail_outbox_done ON mail_outbox (status, coalesce(sent_at, created_at))
    WHERE status IN ('sent', 'failed');
CREATE INDEX mail_digest_items_digested ON mail_digest_items (due_at)
    WHERE message_id IS NOT NULL;
