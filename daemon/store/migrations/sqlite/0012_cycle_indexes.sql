-- Two statements every run makes read tables that only grow (docs/benchmarks.md "Scenario I"):
-- a run's changes counted by kind at its end, and the runs left `running` by a dead process,
-- looked for at its start. Each is now found by an index.
CREATE INDEX status_changes_by_run ON status_changes (run_id);
CREATE INDEX sync_runs_running ON sync_runs (id) WHERE outcome = 'running';
