-- Results are restore tests or posture scans (inventory, locations, credentials; no restore).
-- Keep in step with ../postgres/0002_result_kind.sql.
ALTER TABLE results ADD COLUMN kind TEXT NOT NULL DEFAULT 'restore';
