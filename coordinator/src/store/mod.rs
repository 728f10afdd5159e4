//! Persistence for the coordinator: SQLite (a WAL file, the default) or PostgreSQL.
//!
//! # What is stored, and why
//!
//! - `join_tokens`: hashes of join tokens with their environment, expiry and use counts, so that
//!   a token's secret never sits in the database and a single-use token admits one agent.
//! - `enrollments`: one row per (token, public key) that enrolled, so a retried enrollment (the
//!   agent lost the answer) gets the same agent id and certificate back without using up the
//!   token.
//! - `agents`: every enrolled agent: environment, what it announced in its last Hello, whether
//!   and where (which coordinator replica) it is connected, when it was last seen, its
//!   certificate expiry, and whether it was revoked (revocation is checked on every session).
//! - `certificates`: every certificate issued, for audit and expiry reporting.
//! - `agent_inventories`: the latest inventory each agent reported (assets, backups, tests).
//! - `results`: run results, stored exactly once per result id: agents resend until they get an
//!   acknowledgement, and [`Store::insert_results`] returns only after the commit, so an
//!   acknowledged result is durable and a resent one is not doubled.
//! - `evidence`: the append-only evidence log, one record per restore result chained by hash
//!   ([`Store::append_evidence`]), so that an auditor can check an export was not edited.
//! - `tests`, `runs`: the scheduled tests (from inventories, with central overrides) and their
//!   runs, materialised once per due time and leased to one agent at a time.
//! - `verdicts`, `flips`, `outbox`, `silences`: the verdict of every asset, every change of it,
//!   and the messages each change must deliver, written in one transaction.
//! - `guard_decisions`, `guard_decision_assets`: every answer of the guard (who asked to destroy
//!   what, allowed or refused, why) and the assets it weighed; each is also an evidence record.
//! - `operator_tokens`: hashes of the operators' API tokens (`lbo_…`) with a name, an optional
//!   expiry and a revocation time, so the secret is shown once and never stored.
//!
//! # One API, two engines
//!
//! [`Store`] wraps a concrete pool per engine (not `AnyPool`, whose type support is minimal).
//! Queries are written once, with `$N` placeholders and types both engines share, and the
//! `with_pool!` macro expands the same body for each pool type. The few statements that differ
//! (how a writing transaction starts, row locks) live in a per-engine [`Dialect`]. Migrations are
//! one set per engine, under `migrations/sqlite` and `migrations/postgres`, kept in step.
//!
//! Times are stored as unix milliseconds (so sub-millisecond precision is dropped), ids as native
//! UUIDs (PostgreSQL) or 16-byte blobs (SQLite), JSON documents as text.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::ids::{AgentId, Environment};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// Expands `$body` once per engine, with `$pool` bound to that engine's pool (and `$dialect` to
/// its [`Dialect`]). The body must type-check for both `SqlitePool` and `PgPool`, and must
/// evaluate to the same type in both arms: decode rows into engine-neutral structs inside it.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.engine {
            $crate::store::Engine::Sqlite($pool) => $body,
            $crate::store::Engine::Postgres($pool) => $body,
        }
    };
    ($store:expr, |$pool:ident, $dialect:ident| $body:expr) => {
        match &$store.engine {
            $crate::store::Engine::Sqlite($pool) => {
                let $dialect = &$crate::store::SQLITE;
                $body
            }
            $crate::store::Engine::Postgres($pool) => {
                let $dialect = &$crate::store::POSTGRES;
                $body
            }
        }
    };
}

mod agents;
mod drills;
mod enrollment;
mod evidence;
mod guard;
mod operators;
mod results;
mod verdicts;
mod views;

pub use agents::AgentRecord;
pub use drills::{LeaseRequest, NewRun, RunRecord, TestRecord, TestSpec};
pub use enrollment::{Claimed, IssuedCertificate, NewJoinToken, TokenClaim};
pub use evidence::{EvidenceHead, EvidenceRecord, GENESIS_HASH, canonical_json, chain_hash};
pub use guard::{GuardDecisionRecord, NewGuardDecision};
pub use operators::{OPERATOR_TOKEN_PREFIX, OperatorTokenRecord};
pub use results::{ResultRow, StoredResult};
pub use verdicts::{FlipRecord, NewMessage, OpenTicket, OutboxMessage, Silence, VerdictRecord};
pub use views::{AgentCounts, AssetFindings, AssetKey, RestorePoint, RunCounts, merge_findings, open_findings_of};

/// Connections in the SQLite pool: one writer at a time anyway, a few concurrent readers.
const SQLITE_POOL_SIZE: u32 = 4;
/// Connections in the PostgreSQL pool.
const POSTGRES_POOL_SIZE: u32 = 10;
/// How long a SQLite statement waits for another connection's write lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An error from the store. Token and agent variants are for callers to branch on; the rest are
/// infrastructure failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url scheme {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("join token not recognised")]
    TokenUnknown,
    #[error("join token expired")]
    TokenExpired,
    #[error("join token has no uses left")]
    TokenExhausted,
    #[error("agent {0} not found")]
    AgentNotFound(AgentId),
    #[error("stored row does not parse: {0}")]
    Corrupt(String),
    #[error("cannot encode {0} as JSON")]
    Encode(String),
    /// A value the store would write but could not read back (or use in its own arithmetic).
    #[error("{0}")]
    OutOfRange(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The coordinator's database. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Engine,
}

/// The pool of whichever engine the database URL named.
#[derive(Debug, Clone)]
enum Engine {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The statements that cannot be written once for both engines.
struct Dialect {
    /// Starts a transaction that will write. SQLite must take the write lock up front: a deferred
    /// transaction that reads first fails with `SQLITE_BUSY` (instead of waiting) when another
    /// writer commits in between, and two of them could both read "one use left".
    begin_write: &'static str,
    /// Reads a join token and, on PostgreSQL, locks its row until the transaction ends.
    select_token_for_claim: &'static str,
    /// Serialises appends to the evidence chain across replicas until the transaction ends;
    /// `None` where `begin_write` already excludes every other writer.
    lock_evidence_chain: Option<&'static str>,
}

const SELECT_TOKEN: &str =
    "SELECT environment, expires_at, uses_allowed, uses_consumed FROM join_tokens WHERE token_hash = $1";

static SQLITE: Dialect = Dialect {
    begin_write: "BEGIN IMMEDIATE",
    // `BEGIN IMMEDIATE` already holds the database-wide write lock.
    select_token_for_claim: SELECT_TOKEN,
    lock_evidence_chain: None,
};

static POSTGRES: Dialect = Dialect {
    begin_write: "BEGIN",
    select_token_for_claim: "SELECT environment, expires_at, uses_allowed, uses_consumed FROM join_tokens \
         WHERE token_hash = $1 FOR UPDATE",
    // The key is "Lifeboat" in ASCII, read as a big-endian integer.
    lock_evidence_chain: Some("SELECT pg_advisory_xact_lock(5506044605066338676)"),
};

impl Store {
    /// Opens the database named by `url` and applies pending migrations.
    ///
    /// `sqlite://PATH` or `sqlite:PATH` opens (creating if missing) a SQLite file in WAL mode;
    /// `postgres://…` or `postgresql://…` connects to PostgreSQL.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        let engine = match scheme {
            "sqlite" => Engine::Sqlite(connect_sqlite(url).await?),
            "postgres" | "postgresql" => Engine::Postgres(connect_postgres(url).await?),
            other => return Err(StoreError::UnsupportedUrl(other.chars().take(32).collect())),
        };
        let store = Store { engine };
        store.migrate().await?;
        Ok(store)
    }

    /// Closes every connection; waits for connections in use to be returned.
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }

    /// Names the engine: `"sqlite"` or `"postgres"`.
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite(pool) => sqlx::migrate!("src/store/migrations/sqlite").run(pool).await?,
            Engine::Postgres(pool) => sqlx::migrate!("src/store/migrations/postgres").run(pool).await?,
        }
        Ok(())
    }
}

async fn connect_sqlite(url: &str) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
        // Reads of a large store (a million results) from memory-mapped pages and a 64 MiB
        // page cache per connection, instead of read() calls into a 2 MiB cache.
        .pragma("mmap_size", "268435456")
        .pragma("cache_size", "-65536");
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_POOL_SIZE)
        .connect_with(options)
        .await?;
    Ok(pool)
}

async fn connect_postgres(url: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)?;
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_POOL_SIZE)
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Converts a time to the stored form, unix milliseconds.
fn to_millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

/// Converts a stored time back; `column` names it in the error.
fn from_millis(column: &str, millis: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| StoreError::Corrupt(format!("{column} {millis} is out of range")))
}

fn from_optional_millis(column: &str, millis: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    millis.map(|millis| from_millis(column, millis)).transpose()
}

fn parse_environment(value: &str) -> Result<Environment, StoreError> {
    Environment::parse(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn parse_json(column: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(format!("{column} is not JSON: {err}")))
}

/// Whether `err` is a foreign key violation: the agent a row refers to does not exist.
fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_schemes_are_refused_without_echoing_the_url() {
        let err = Store::connect("mysql://user:secret@host/db")
            .await
            .expect_err("refused");
        assert!(matches!(err, StoreError::UnsupportedUrl(ref scheme) if scheme == "mysql"));
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn times_round_trip_at_millisecond_precision() {
        let now = Utc::now();
        let back = from_millis("t", to_millis(now)).expect("in range");
        assert_eq!(back.timestamp_millis(), now.timestamp_millis());
        assert!(from_millis("t", i64::MAX).is_err());
    }
}
