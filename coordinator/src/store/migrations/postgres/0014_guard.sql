-- The guard's decisions: who asked to destroy what, and the answer with its reasons (issue 14).
-- Keep in step with ../sqlite/0014_guard.sql.
CREATE TABLE guard_decisions (
    id            UUID    PRIMARY KEY NOT NULL,
    decided_at    BIGINT  NOT NULL,
    environment   TEXT    NOT NULL,
    -- The operator token's name (API, MCP over HTTP, the Railway gate) or `cli:USER`, `mcp:stdio`.
    caller        TEXT    NOT NULL,
    -- cli | api | mcp | proxy
    surface       TEXT    NOT NULL,
    provider      TEXT    NOT NULL,
    resource_kind TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    operation     TEXT    NOT NULL,
    allowed       BOOLEAN NOT NULL,
    -- The decision as answered (JSON): reasons and assets.
    decision      TEXT    NOT NULL
);

CREATE INDEX guard_decisions_decided ON guard_decisions (decided_at DESC);

-- Which assets each decision weighed, for an asset's page.
CREATE TABLE guard_decision_assets (
    decision_id UUID    NOT NULL REFERENCES guard_decisions (id),
    environment TEXT    NOT NULL,
    asset       TEXT    NOT NULL,
    decided_at  BIGINT  NOT NULL,
    PRIMARY KEY (decision_id, environment, asset)
);

CREATE INDEX guard_decision_assets_asset ON guard_decision_assets (environment, asset, decided_at DESC);
