//! Credentials: discovering secrets lying around (files, the agent's environment, CLI credential
//! stores), knowing them only by fingerprint and redacted preview outside this module, and
//! working out what each can destroy (`docs/findings.md`: `credential.*`, `blast_radius.shared`).
//!
//! # Layout
//!
//! - [`rules`]: the credential rule set (data in `agent/rules/credentials.toml`), compiled.
//! - [`prefilter`]: the keyword pass that decides which regions the rules look at.
//! - [`matching`]: searching one text with the rule set (windows, decoding, overlaps, lines).
//! - [`structured`]: key/value context in every config format and in code, and the values a
//!   format says are encoded (Kubernetes Secrets, docker auths, `.pgpass`).
//! - [`filters`]: placeholders, entropy and shape filters; the redacted preview.
//! - [`severity`]: what a found credential can destroy, from `low` to `critical`.
//! - [`scanner`]: discovery in files (parallel walk, then [`rules`]).
//! - [`stores`]: the agent's environment and CLI credential stores (`~/.aws/credentials`, kubeconfig, …).
//! - [`secret`]: the secret value ([`Secret`]), its keyed fingerprint and redacted preview.
//! - [`redact`]: passwords out of URLs and connection strings in any text.
//! - [`scope`]: capabilities (`destroy` / `overwrite` / `read` on a location selector) and the
//!   analysers per credential kind (PostgreSQL roles, AWS IAM, Kubernetes RBAC, Railway).
//!
//! A secret value never leaves the agent: [`Secret`] has no `Serialize` and a redacting `Debug`,
//! so the only way to put it on the wire or in a log is to write `.expose()` on purpose.

pub mod filters;
pub mod matching;
pub mod prefilter;
pub mod redact;
pub mod rules;
pub mod scanner;
pub mod scope;
pub mod secret;
pub mod severity;
pub mod stores;
pub mod structured;

pub use secret::{FingerprintKey, Secret};
pub use severity::CredentialSeverity;
