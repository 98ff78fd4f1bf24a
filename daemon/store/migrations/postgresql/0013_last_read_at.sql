-- When each connection's MLS was last read: the end of its last sync that recorded no
-- connection or batch error. The alerting gauges read it (daemon/store/cycle_health.py). It
-- was worked out from the run history, which cannot say which daemon's run synced which
-- connection when several daemons share the database: another daemon's run of the same
-- slot, which synced nothing, hid a connection whose MLS failed.
ALTER TABLE mls_connections ADD COLUMN last_read_at text COLLATE "C";

-- Backfilled from the run history, by the rule the gauge read it with until now: the end of
-- the last cycle (or sync of the connection) that ran no later than its last sync and
-- recorded no connection or batch error for it.
UPDATE mls_connections SET last_read_at = (
    SELECT r.finished_at FROM sync_runs AS r
    WHERE r.scope IN ('all', 'connection:' || mls_connections.id)
        AND r.outcome IN ('ok', 'partial', 'failed')
        AND r.started_at >= mls_connections.created_at
        AND r.started_at <= mls_connections.last_synced_at
        AND NOT EXISTS (
            SELECT 1 FROM run_errors AS e
            WHERE e.run_id = r.id AND e.connection_id = mls_connections.id
                AND e.severity = 'error' AND e.scope IN ('connection', 'batch')
        )
    ORDER BY r.id DESC LIMIT 1
);
