//! Test harness for Lifeboat's end-to-end tests: real coordinators (in-process on 127.0.0.1:0 or
//! as child processes), real agents (in-process simulated sessions or the `lifeboat-agent`
//! binary), real TLS, real PostgreSQL clusters.
//!
//! # Layout
//!
//! - [`agent_check`]: `lifeboat-agent check` as a process, and reading its JSON report.
//! - [`argv_watch`]: watches the command lines of what the agent starts, for secrets.
//! - [`cluster`]: an in-process coordinator with helpers to enroll and run simulated agents.
//! - [`processes`]: the built binaries as child processes (killed on drop), config files.
//! - [`guard_world`]: a store seeded for the guard (the incident and its fixes), the test venv's
//!   Python, and a local Railway upstream checking requests against Railway's schema.
//! - [`postgres`]: throw-away PostgreSQL clusters.
//! - [`raw`]: a byte-level gRPC codec for sending malformed messages.
//! - [`tools_venv`]: outside tools from PyPI (`kubernetes-validate`, `kubectl`) in `target/test-venv`.
//! - [`store_db`]: a fresh store on SQLite or PostgreSQL; `both_engines!` runs a test on each.
//! - [`rentals`]: a generated rental business database.
//! - [`vendors`]: local Jira, PagerDuty and webhook servers that check every request against the
//!   vendors' OpenAPI specs and inject faults, for the notifier contract tests.
//! - [`volume`]: another volume (a tmpfs) for backups kept off the production disk.

pub mod agent_check;
pub mod argv_watch;
pub mod cluster;
pub mod guard_world;
pub mod postgres;
pub mod processes;
pub mod raw;
pub mod rentals;
pub mod store_db;
pub mod tools_venv;
pub mod vendors;
pub mod volume;

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: std::time::Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A benchmark's size knob: the environment variable `name` (`10_000` and `10000` alike), or
/// `default`.
pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Installs a test log subscriber once (respects `RUST_LOG`; quiet by default).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
