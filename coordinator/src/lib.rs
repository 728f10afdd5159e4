//! The Lifeboat coordinator: enrolls agents over mutual TLS, holds their sessions, stores their
//! results exactly once, and serves the operator commands.
//!
//! # Layout
//!
//! - [`config`]: `coordinator.toml`, validated before any port is bound.
//! - [`ca`]: the certificate authority (agent and server certificates).
//! - [`tokens`]: join tokens (random, stored hashed).
//! - [`store`]: SQLite or PostgreSQL persistence.
//! - [`grpc`]: TLS termination, the `Enrollment` and `AgentService` services.
//! - [`sessions`]: live agent sessions, last-seen batching.
//! - [`revocation`]: revoked agents, and cutting their sessions.
//! - [`ingest`]: group commit of run results, acknowledged after commit.
//! - [`posture`]: verdicts per asset over time, flips and the messages they ask for.
//! - [`scheduler`]: cron → due runs → leases to connected agents.
//! - [`quota`]: per-agent rate quotas (results, inventories, runs).
//! - [`server`]: wiring and shutdown order.
//! - [`reports`]: `posture`, `runs`, `findings`, `run-now`.
//! - [`admin`]: `token create`, `agents list`, `agents revoke`.
//! - [`operators`]: operator tokens on the wire (`Authorization: Bearer`), naming every caller.
//! - [`guard`]: "may I destroy this now?" — `guard check`, the API route, the MCP server and the
//!   Railway gate.
//! - [`http`]: the JSON API, the status page, `/metrics`, `/healthz` and `/readyz`.
//! - [`escalation`]: the outbox and its channels: Jira, PagerDuty, webhooks.
//! - [`evidence`]: export of the hash-chained evidence log (JSON lines, manifest, HTML report)
//!   and its verification without the database.
//! - [`demo`]: the whole story on one machine.
//! - [`cli`]: the command line.

pub mod admin;
pub mod ca;
pub mod cli;
pub mod config;
pub mod demo;
pub mod escalation;
pub mod evidence;
pub mod grpc;
pub mod guard;
pub mod http;
pub mod ingest;
pub mod operators;
pub mod posture;
pub mod quota;
pub mod reports;
pub mod revocation;
pub mod scheduler;
pub mod server;
pub mod sessions;
pub mod store;
pub mod tokens;
