-- Counting restore results by outcome since a time (the status page, /metrics) reads this index
-- instead of the whole results table. Keep in step with ../sqlite/0004_results_by_kind.sql.
CREATE INDEX results_kind_finished ON results (kind, finished_at, outcome);
