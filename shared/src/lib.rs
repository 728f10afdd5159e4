//! Types and mechanisms that both Lifeboat binaries need: the agent and the coordinator.
//!
//! # Layout
//!
//! - [`ids`]: agent and result identifiers, environment names.
//! - [`durations`]: human durations (`24h`, `30m`, `1h30m`) in configs and on the command line.
//! - [`protocol`]: validated domain types converted from the generated protocol messages
//!   (`TryFrom<proto>`), so malformed input is rejected once, on receive.
//! - [`findings`]: the findings catalogue (stable `kind` codes and severities).
//! - [`env_string`]: config strings with `${VAR}` expanded from the environment.
//! - [`config_file`]: loads TOML configs with errors that name the file, line and field.
//! - [`tls`]: certificates, the CA pin, agent identities in URI SANs, rustls configurations.
//! - [`telemetry`]: tracing logs (text or JSON) and optional OTLP trace export.
//! - [`shutdown`]: one cancellation token, cancelled on SIGINT or SIGTERM.

pub mod config_file;
pub mod durations;
pub mod env_string;
pub mod findings;
pub mod ids;
pub mod protocol;
pub mod schedule;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

/// Largest gRPC message either side accepts (results carry details and findings, never data).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The version of this build, sent by agents in their Hello.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
