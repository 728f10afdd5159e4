-- Lifeboat coordinator schema, SQLite flavour.
--
-- Keep in step with ../postgres/0001_init.sql: the same tables, columns and indexes, so that one
-- set of queries serves both engines. Only the types differ: ids are 16-byte BLOBs (sqlx's UUID
-- encoding), booleans are INTEGER 0/1, floats are REAL. Times are unix milliseconds, JSON
-- documents are TEXT. Tables are STRICT so that a value of the wrong type is refused, as
-- PostgreSQL would refuse it.

-- Join tokens, stored hashed: the secret itself is shown once, at creation.
CREATE TABLE join_tokens (
    token_hash    TEXT    PRIMARY KEY NOT NULL,
    environment   TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    uses_allowed  INTEGER NOT NULL CHECK (uses_allowed >= 0),
    uses_consumed INTEGER NOT NULL DEFAULT 0 CHECK (uses_consumed >= 0),
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE agents (
    id                 BLOB    PRIMARY KEY NOT NULL,
    name               TEXT    NOT NULL,
    environment        TEXT    NOT NULL,
    hostname           TEXT,
    version            TEXT,
    capabilities       TEXT    NOT NULL DEFAULT 'null',
    connected          INTEGER NOT NULL DEFAULT 0 CHECK (connected IN (0, 1)),
    -- The coordinator replica holding the session; only it may mark the agent disconnected.
    connected_instance TEXT,
    last_seen          INTEGER,
    cert_not_after     INTEGER,
    revoked_at         INTEGER,
    created_at         INTEGER NOT NULL
) STRICT;

CREATE INDEX agents_environment_name ON agents (environment, name);
CREATE INDEX agents_revoked ON agents (revoked_at) WHERE revoked_at IS NOT NULL;

-- One row per (token, key): a retried enrollment with the same key finds its agent here instead
-- of consuming another use of the token.
CREATE TABLE enrollments (
    token_hash      TEXT    NOT NULL REFERENCES join_tokens (token_hash),
    key_fingerprint TEXT    NOT NULL,
    agent_id        BLOB    NOT NULL REFERENCES agents (id),
    certificate_pem TEXT,
    enrolled_at     INTEGER NOT NULL,
    PRIMARY KEY (token_hash, key_fingerprint)
) STRICT;

CREATE INDEX enrollments_agent ON enrollments (agent_id, key_fingerprint);

CREATE TABLE certificates (
    serial          TEXT    PRIMARY KEY NOT NULL,
    agent_id        BLOB    NOT NULL REFERENCES agents (id),
    key_fingerprint TEXT    NOT NULL,
    not_after       INTEGER NOT NULL,
    pem             TEXT    NOT NULL,
    issued_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX certificates_agent ON certificates (agent_id, issued_at);

-- The latest inventory each agent reported.
CREATE TABLE agent_inventories (
    agent_id    BLOB    PRIMARY KEY NOT NULL REFERENCES agents (id),
    inventory   TEXT    NOT NULL,
    reported_at INTEGER NOT NULL
) STRICT;

-- Run results, each stored once (agents resend until acknowledged). Not foreign-keyed to agents:
-- agents are never deleted, and the ingest path stays one index probe lighter.
CREATE TABLE results (
    result_id                  BLOB    PRIMARY KEY NOT NULL,
    agent_id                   BLOB    NOT NULL,
    environment                TEXT    NOT NULL,
    run_id                     BLOB,
    asset                      TEXT    NOT NULL,
    backup                     TEXT    NOT NULL,
    recovery_point             TEXT    NOT NULL,
    outcome                    TEXT    NOT NULL,
    started_at                 INTEGER NOT NULL,
    finished_at                INTEGER NOT NULL,
    restore_seconds            REAL    NOT NULL,
    rto_seconds                REAL    NOT NULL,
    recovery_point_age_seconds INTEGER NOT NULL,
    findings                   TEXT    NOT NULL,
    detail                     TEXT    NOT NULL,
    received_at                INTEGER NOT NULL
) STRICT;

CREATE INDEX results_asset_finished ON results (asset, finished_at DESC, result_id DESC);
