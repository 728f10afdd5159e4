-- Scheduled drills, verdicts over time, escalation, operators and evidence (PostgreSQL flavour).
-- Keep in step with ../sqlite/0003_drills.sql.

-- One test per (environment, asset): from the inventory of the agents of that environment,
-- optionally overridden centrally (override_* columns win; paused stops scheduling).
CREATE TABLE tests (
    environment              TEXT    NOT NULL,
    asset                    TEXT    NOT NULL,
    schedule                 TEXT    NOT NULL,
    timeout_seconds          BIGINT  NOT NULL,
    -- How often the asset must pass (dead-man's switch), and its RPO/RTO, from the inventory.
    interval_seconds         BIGINT  NOT NULL,
    rpo_seconds              BIGINT  NOT NULL,
    rto_seconds              BIGINT  NOT NULL,
    override_schedule        TEXT,
    override_timeout_seconds BIGINT ,
    paused                   BOOLEAN NOT NULL DEFAULT FALSE,
    -- The next due time the scheduler will materialise (unix ms).
    next_due_at              BIGINT ,
    updated_at               BIGINT  NOT NULL,
    PRIMARY KEY (environment, asset)
);

-- Due runs, materialised once per (test, due time) and leased to one agent at a time.
CREATE TABLE runs (
    run_id           UUID    PRIMARY KEY,
    environment      TEXT    NOT NULL,
    asset            TEXT    NOT NULL,
    due_at           BIGINT  NOT NULL,
    -- A run not started by then is missed, not started late.
    start_deadline   BIGINT  NOT NULL,
    timeout_seconds  BIGINT  NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'missed', 'failed', 'cancelled')),
    attempts         BIGINT  NOT NULL DEFAULT 0,
    max_attempts     BIGINT  NOT NULL,
    manual           BOOLEAN NOT NULL DEFAULT FALSE,
    agent_id         UUID,
    leased_by        TEXT,
    lease_expires_at BIGINT ,
    result_id        UUID,
    outcome          TEXT,
    last_error       TEXT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    UNIQUE (environment, asset, due_at)
);

CREATE INDEX runs_state_due ON runs (state, due_at);
CREATE INDEX runs_asset_due ON runs (environment, asset, due_at DESC);

-- The current verdict of every asset; `since` is when it last flipped.
CREATE TABLE verdicts (
    environment        TEXT    NOT NULL,
    asset              TEXT    NOT NULL,
    recoverable        BOOLEAN NOT NULL,
    -- The findings that make it not recoverable (or the open ones when it is), worst first (JSON).
    reasons            TEXT    NOT NULL,
    last_passed_at     BIGINT ,
    backup_age_seconds BIGINT ,
    restore_seconds    DOUBLE PRECISION,
    rpo_seconds        BIGINT ,
    rto_seconds        BIGINT ,
    since              BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    PRIMARY KEY (environment, asset)
);

-- Every change of a verdict, with its reasons.
CREATE TABLE flips (
    id          BIGSERIAL PRIMARY KEY,
    environment TEXT    NOT NULL,
    asset       TEXT    NOT NULL,
    recoverable BOOLEAN NOT NULL,
    reasons     TEXT    NOT NULL,
    at          BIGINT  NOT NULL
);

CREATE INDEX flips_at ON flips (at DESC);
CREATE INDEX flips_asset ON flips (environment, asset, at DESC);

-- Messages to deliver, written in the transaction that decided them; claimed by one worker at a
-- time (claim_expires_at), delivered with retries.
CREATE TABLE outbox (
    id               BIGSERIAL PRIMARY KEY,
    flip_id          BIGINT ,
    channel          TEXT    NOT NULL,
    event            TEXT    NOT NULL CHECK (event IN ('trigger', 'resolve', 'reminder', 'channel_alert')),
    dedup_key        TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead', 'silenced')),
    attempts         BIGINT  NOT NULL DEFAULT 0,
    not_before       BIGINT  NOT NULL,
    claimed_by       TEXT,
    claim_expires_at BIGINT ,
    delivered_at     BIGINT ,
    external_id      TEXT,
    last_error       TEXT,
    created_at       BIGINT  NOT NULL
);

CREATE INDEX outbox_pending ON outbox (state, not_before);

-- Silences: matching messages are not sent until `until`.
CREATE TABLE silences (
    id          BIGSERIAL PRIMARY KEY,
    environment TEXT,
    asset       TEXT,
    until       BIGINT  NOT NULL,
    reason      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- Operator API tokens, stored hashed.
CREATE TABLE operator_tokens (
    token_hash TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT ,
    revoked_at BIGINT 
);

-- The evidence log: every run result, chained by hash (hash = sha256(prev_hash || record)).
CREATE TABLE evidence (
    seq         BIGSERIAL PRIMARY KEY,
    recorded_at BIGINT  NOT NULL,
    environment TEXT    NOT NULL,
    asset       TEXT    NOT NULL,
    result_id   UUID    NOT NULL UNIQUE,
    record      TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);

CREATE INDEX evidence_recorded ON evidence (recorded_at);
CREATE INDEX results_env_asset_kind ON results (environment, asset, kind, finished_at DESC);
