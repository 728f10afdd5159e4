-- Leasing looks up the queued runs of one environment's assets, and whether an agent already
-- holds a lease: both by index, so a lease costs the same with 10 or 10,000 runs queued.
-- Keep in step with ../sqlite/0005_lease_indexes.sql.
CREATE INDEX runs_queued ON runs (environment, state, asset, due_at);
CREATE INDEX runs_agent_state ON runs (agent_id, state);
