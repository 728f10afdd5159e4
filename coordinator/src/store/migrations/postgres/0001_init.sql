-- Lifeboat coordinator schema, PostgreSQL flavour.
--
-- Keep in step with ../sqlite/0001_init.sql: the same tables, columns and indexes, so that one set
-- of queries serves both engines. Only the types differ. Times are unix milliseconds (BIGINT),
-- JSON documents are TEXT, ids are UUID.

-- Join tokens, stored hashed: the secret itself is shown once, at creation.
CREATE TABLE join_tokens (
    token_hash    TEXT   PRIMARY KEY,
    environment   TEXT   NOT NULL,
    expires_at    BIGINT NOT NULL,
    uses_allowed  BIGINT NOT NULL CHECK (uses_allowed >= 0),
    uses_consumed BIGINT NOT NULL DEFAULT 0 CHECK (uses_consumed >= 0),
    created_at    BIGINT NOT NULL
);

CREATE TABLE agents (
    id                 UUID    PRIMARY KEY,
    name               TEXT    NOT NULL,
    environment        TEXT    NOT NULL,
    hostname           TEXT,
    version            TEXT,
    capabilities       TEXT    NOT NULL DEFAULT 'null',
    connected          BOOLEAN NOT NULL DEFAULT FALSE,
    -- The coordinator replica holding the session; only it may mark the agent disconnected.
    connected_instance TEXT,
    last_seen          BIGINT,
    cert_not_after     BIGINT,
    revoked_at         BIGINT,
    created_at         BIGINT  NOT NULL
);

CREATE INDEX agents_environment_name ON agents (environment, name);
CREATE INDEX agents_revoked ON agents (revoked_at) WHERE revoked_at IS NOT NULL;

-- One row per (token, key): a retried enrollment with the same key finds its agent here instead
-- of consuming another use of the token.
CREATE TABLE enrollments (
    token_hash      TEXT   NOT NULL REFERENCES join_tokens (token_hash),
    key_fingerprint TEXT   NOT NULL,
    agent_id        UUID   NOT NULL REFERENCES agents (id),
    certificate_pem TEXT,
    enrolled_at     BIGINT NOT NULL,
    PRIMARY KEY (token_hash, key_fingerprint)
);

CREATE INDEX enrollments_agent ON enrollments (agent_id, key_fingerprint);

CREATE TABLE certificates (
    serial          TEXT   PRIMARY KEY,
    agent_id        UUID   NOT NULL REFERENCES agents (id),
    key_fingerprint TEXT   NOT NULL,
    not_after       BIGINT NOT NULL,
    pem             TEXT   NOT NULL,
    issued_at       BIGINT NOT NULL
);

CREATE INDEX certificates_agent ON certificates (agent_id, issued_at);

-- The latest inventory each agent reported.
CREATE TABLE agent_inventories (
    agent_id    UUID   PRIMARY KEY REFERENCES agents (id),
    inventory   TEXT   NOT NULL,
    reported_at BIGINT NOT NULL
);

-- Run results, each stored once (agents resend until acknowledged). Not foreign-keyed to agents:
-- agents are never deleted, and the ingest path stays one index probe lighter.
CREATE TABLE results (
    result_id                  UUID             PRIMARY KEY,
    agent_id                   UUID             NOT NULL,
    environment                TEXT             NOT NULL,
    run_id                     UUID,
    asset                      TEXT             NOT NULL,
    backup                     TEXT             NOT NULL,
    recovery_point             TEXT             NOT NULL,
    outcome                    TEXT             NOT NULL,
    started_at                 BIGINT           NOT NULL,
    finished_at                BIGINT           NOT NULL,
    restore_seconds            DOUBLE PRECISION NOT NULL,
    rto_seconds                DOUBLE PRECISION NOT NULL,
    recovery_point_age_seconds BIGINT           NOT NULL,
    findings                   TEXT             NOT NULL,
    detail                     TEXT             NOT NULL,
    received_at                BIGINT           NOT NULL
);

CREATE INDEX results_asset_finished ON results (asset, finished_at DESC, result_id DESC);
