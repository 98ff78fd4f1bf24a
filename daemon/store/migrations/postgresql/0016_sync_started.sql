-- When the connection's last complete sync began. Whether a slot's work is done is judged by
-- it (daemon/sync/cycle_slots.py): a sync that began in the slot before and ended in this one
-- read its first listings before this slot began, and they are due again in it. The end time
-- (last_synced_at) stays what operators see.
ALTER TABLE mls_connections ADD COLUMN last_sync_started_at text COLLATE "C";
UPDATE mls_connections SET last_sync_started_at = last_synced_at;
