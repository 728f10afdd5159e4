-- Scheduled drills, verdicts over time, escalation, operators and evidence (SQLite flavour).
-- Keep in step with ../postgres/0003_drills.sql.

-- One test per (environment, asset): from the inventory of the agents of that environment,
-- optionally overridden centrally (override_* columns win; paused stops scheduling).
CREATE TABLE tests (
    environment              TEXT    NOT NULL,
    asset                    TEXT    NOT NULL,
    schedule                 TEXT    NOT NULL,
    timeout_seconds          INTEGER NOT NULL,
    -- How often the asset must pass (dead-man's switch), and its RPO/RTO, from the inventory.
    interval_seconds         INTEGER NOT NULL,
    rpo_seconds              INTEGER NOT NULL,
    rto_seconds              INTEGER NOT NULL,
    override_schedule        TEXT,
    override_timeout_seconds INTEGER,
    paused                   INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- The next due time the scheduler will materialise (unix ms).
    next_due_at              INTEGER,
    updated_at               INTEGER NOT NULL,
    PRIMARY KEY (environment, asset)
) STRICT;

-- Due runs, materialised once per (test, due time) and leased to one agent at a time.
CREATE TABLE runs (
    run_id           BLOB    PRIMARY KEY NOT NULL,
    environment      TEXT    NOT NULL,
    asset            TEXT    NOT NULL,
    due_at           INTEGER NOT NULL,
    -- A run not started by then is missed, not started late.
    start_deadline   INTEGER NOT NULL,
    timeout_seconds  INTEGER NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'missed', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    manual           INTEGER NOT NULL DEFAULT 0 CHECK (manual IN (0, 1)),
    agent_id         BLOB,
    leased_by        TEXT,
    lease_expires_at INTEGER,
    result_id        BLOB,
    outcome          TEXT,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (environment, asset, due_at)
) STRICT;

CREATE INDEX runs_state_due ON runs (state, due_at);
CREATE INDEX runs_asset_due ON runs (environment, asset, due_at DESC);

-- The current verdict of every asset; `since` is when it last flipped.
CREATE TABLE verdicts (
    environment        TEXT    NOT NULL,
    asset              TEXT    NOT NULL,
    recoverable        INTEGER NOT NULL CHECK (recoverable IN (0, 1)),
    -- The findings that make it not recoverable (or the open ones when it is), worst first (JSON).
    reasons            TEXT    NOT NULL,
    last_passed_at     INTEGER,
    backup_age_seconds INTEGER,
    restore_seconds    REAL,
    rpo_seconds        INTEGER,
    rto_seconds        INTEGER,
    since              INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (environment, asset)
) STRICT;

-- Every change of a verdict, with its reasons.
CREATE TABLE flips (
    id          INTEGER PRIMARY KEY,
    environment TEXT    NOT NULL,
    asset       TEXT    NOT NULL,
    recoverable INTEGER NOT NULL CHECK (recoverable IN (0, 1)),
    reasons     TEXT    NOT NULL,
    at          INTEGER NOT NULL
) STRICT;

CREATE INDEX flips_at ON flips (at DESC);
CREATE INDEX flips_asset ON flips (environment, asset, at DESC);

-- Messages to deliver, written in the transaction that decided them; claimed by one worker at a
-- time (claim_expires_at), delivered with retries.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    flip_id          INTEGER,
    channel          TEXT    NOT NULL,
    event            TEXT    NOT NULL CHECK (event IN ('trigger', 'resolve', 'reminder', 'channel_alert')),
    dedup_key        TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead', 'silenced')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    not_before       INTEGER NOT NULL,
    claimed_by       TEXT,
    claim_expires_at INTEGER,
    delivered_at     INTEGER,
    external_id      TEXT,
    last_error       TEXT,
    created_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX outbox_pending ON outbox (state, not_before);

-- Silences: matching messages are not sent until `until`.
CREATE TABLE silences (
    id          INTEGER PRIMARY KEY,
    environment TEXT,
    asset       TEXT,
    until       INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- Operator API tokens, stored hashed.
CREATE TABLE operator_tokens (
    token_hash TEXT    PRIMARY KEY NOT NULL,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) STRICT;

-- The evidence log: every run result, chained by hash (hash = sha256(prev_hash || record)).
CREATE TABLE evidence (
    seq         INTEGER PRIMARY KEY,
    recorded_at INTEGER NOT NULL,
    environment TEXT    NOT NULL,
    asset       TEXT    NOT NULL,
    result_id   BLOB    NOT NULL UNIQUE,
    record      TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
) STRICT;

CREATE INDEX evidence_recorded ON evidence (recorded_at);
CREATE INDEX results_env_asset_kind ON results (environment, asset, kind, finished_at DESC);
