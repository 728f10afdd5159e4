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
//! - [`server`]: wiring and shutdown order.
//! - [`admin`]: `token create`, `agents list`, `agents revoke`.
//! - [`escalation`]: the outbox and its channels: Jira, PagerDuty, webhooks.
//! - [`demo`]: the whole story on one machine.
//! - [`cli`]: the command line.

pub mod admin;
pub mod ca;
pub mod cli;
pub mod config;
pub mod demo;
pub mod escalation;
pub mod grpc;
pub mod ingest;
pub mod revocation;
pub mod server;
pub mod sessions;
pub mod store;
pub mod tokens;
