//! The Lifeboat agent: runs inside a customer environment, connects out to the coordinator over
//! mutual TLS, and (from the restore engine on) restores real backups into sandboxes.
//!
//! # Layout
//!
//! - [`config`]: `agent.toml` (`docs/agent-config.md`), `${VAR}` expansion, located errors.
//! - [`identity`]: key, certificate and CA on disk (or in memory for simulated agents).
//! - [`enroll`]: `lifeboat-agent enroll` (CSR + join token, CA pin).
//! - [`connect`]: gRPC channels over our rustls configurations.
//! - [`session`]: the session loop: Hello, heartbeats, results from the spool, reconnects.
//! - [`reconnect`]: exponential backoff with full jitter.
//! - [`renewal`]: certificate renewal at 2/3 of its life.
//! - [`posture`]: recovery posture: locations, co-location, credentials, blast radius, history.
//! - [`runner`]: restore tests: which points, sandbox, restore, checks, measurements.
//! - [`verdict`]: whether an asset can be recovered right now, and the findings that say why.
//! - [`backups`]: backup sources and their recovery points.
//! - [`sandbox`]: throw-away PostgreSQL clusters and directories restores go into; the janitor.
//! - [`jail`]: bubblewrap jails, as the sandbox user, for every process that reads backup content.
//! - [`procfs`]: processes seen through `/proc`.
//! - [`scan`]: `lifeboat-agent scan`: credential discovery and scope only.
//! - [`spool`]: the durable outbox of results.
//! - [`scrub`]: secrets cut out of, and protocol limits applied to, everything that leaves.
//! - [`capabilities`]: what this machine can restore.
//! - [`credentials`]: credential discovery, fingerprints, and what each credential can destroy.
//! - [`daemon`]: `lifeboat-agent run`.
//! - [`doctor`]: `lifeboat-agent doctor`: everything a drill needs on this machine, checked.
//! - [`cli`]: the command line.

pub mod backups;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod connect;
pub mod credentials;
pub mod daemon;
pub mod doctor;
pub mod enroll;
pub mod identity;
pub mod jail;
pub mod posture;
pub mod procfs;
pub mod reconnect;
pub mod renewal;
pub mod runner;
pub mod sandbox;
pub mod scan;
pub mod scrub;
pub mod session;
pub mod spool;
pub mod verdict;
