//! Run results, stored exactly once per result id.
//!
//! Agents resend a result until it is acknowledged, and the coordinator acknowledges only after
//! [`Store::insert_results`] has committed, so inserts ignore ids already stored. A batch is one
//! transaction written as multi-row `INSERT`s: chunks of 64 rows, then one statement per set bit
//! of the remainder (32, 16, …, 1), so seven statement shapes cover every batch size and stay in
//! each connection's prepared statement cache.

use std::fmt::Write as _;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::Finding;
use lifeboat_shared::ids::{AgentId, Environment, ResultId, RunId};
use lifeboat_shared::protocol::{Outcome, ResultKind, RunResult};
use serde::Serialize;
use uuid::Uuid;

use super::{Store, StoreError, from_millis, parse_environment, parse_json, to_millis};

/// A result as received, ready to store.
#[derive(Debug, Clone)]
pub struct ResultRow {
    /// The agent that sent the result (from its certificate, not from the message).
    pub agent_id: AgentId,
    pub environment: Environment,
    pub result: RunResult,
    pub received_at: DateTime<Utc>,
}

/// A result read back, with who sent it and when it arrived.
#[derive(Debug, Clone, Serialize)]
pub struct StoredResult {
    pub agent_id: AgentId,
    pub environment: Environment,
    pub received_at: DateTime<Utc>,
    pub result: RunResult,
}

/// Columns of one result row, in the order of [`INSERT_COLUMNS`] and of the binds.
const RESULT_COLUMNS: usize = 17;

const INSERT_COLUMNS: &str = "result_id, agent_id, environment, run_id, asset, backup, recovery_point, outcome, \
     started_at, finished_at, restore_seconds, rto_seconds, recovery_point_age_seconds, findings, detail, received_at, kind";

/// Rows per multi-row `INSERT`, largest first. 64 rows × 17 columns stays far below both
/// engines' bind parameter limits (SQLite 32766, PostgreSQL 65535).
const CHUNK_SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// One `INSERT … ON CONFLICT DO NOTHING` per entry of [`CHUNK_SIZES`]. Built once and kept for
/// the life of the process, so the statements are `'static` like every other query.
static INSERT_STATEMENTS: LazyLock<Vec<String>> =
    LazyLock::new(|| CHUNK_SIZES.iter().map(|&rows| insert_statement(rows)).collect());

fn insert_statement(rows: usize) -> String {
    let mut sql = format!("INSERT INTO results ({INSERT_COLUMNS}) VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..RESULT_COLUMNS {
            let separator = if column == 0 { "" } else { ", " };
            let _infallible = write!(sql, "{separator}${}", row * RESULT_COLUMNS + column + 1);
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (result_id) DO NOTHING");
    sql
}

/// Splits `len` rows into chunks: `(index into CHUNK_SIZES, rows)` pairs, largest first.
fn chunk_plan(len: usize) -> Vec<(usize, usize)> {
    let mut plan = Vec::new();
    let mut remaining = len;
    for (index, &size) in CHUNK_SIZES.iter().enumerate() {
        while remaining >= size {
            plan.push((index, size));
            remaining -= size;
        }
    }
    plan
}

const COUNT_RESULTS: &str = "SELECT COUNT(*) FROM results";

const SELECT_RESULT_IDS: &str = "SELECT result_id FROM results ORDER BY result_id";

const SELECT_LATEST_RESULT: &str = "SELECT result_id, agent_id, environment, run_id, asset, backup, \
     recovery_point, outcome, started_at, finished_at, restore_seconds, rto_seconds, recovery_point_age_seconds, \
     findings, detail, received_at, kind \
     FROM results WHERE environment = $1 AND asset = $2 AND kind = $3 ORDER BY finished_at DESC, result_id DESC LIMIT 1";

const SELECT_RESULTS_FOR_ASSET: &str = "SELECT result_id, agent_id, environment, run_id, asset, backup, \
     recovery_point, outcome, started_at, finished_at, restore_seconds, rto_seconds, recovery_point_age_seconds, \
     findings, detail, received_at, kind \
     FROM results WHERE asset = $1 ORDER BY finished_at DESC, result_id DESC LIMIT $2";

/// A result in its stored form, borrowing the strings of the [`ResultRow`].
struct EncodedResult<'a> {
    result_id: Uuid,
    agent_id: Uuid,
    environment: &'a str,
    run_id: Option<Uuid>,
    asset: &'a str,
    backup: &'a str,
    recovery_point: &'a str,
    outcome: &'static str,
    started_at: i64,
    finished_at: i64,
    restore_seconds: f64,
    rto_seconds: f64,
    recovery_point_age_seconds: i64,
    findings: String,
    detail: String,
    received_at: i64,
    kind: &'static str,
}

impl<'a> EncodedResult<'a> {
    fn new(row: &'a ResultRow) -> Result<Self, StoreError> {
        let result = &row.result;
        let findings = serde_json::to_string(&result.findings)
            .map_err(|err| StoreError::Encode(format!("findings of result {}: {err}", result.result_id)))?;
        Ok(Self {
            result_id: result.result_id.0,
            agent_id: row.agent_id.0,
            environment: row.environment.as_str(),
            run_id: result.run_id.map(|id| id.0),
            asset: &result.asset,
            backup: &result.backup,
            recovery_point: &result.recovery_point,
            outcome: result.outcome.as_str(),
            started_at: to_millis(result.started_at),
            finished_at: to_millis(result.finished_at),
            restore_seconds: result.restore_seconds,
            rto_seconds: result.rto_seconds,
            recovery_point_age_seconds: result.recovery_point_age_seconds,
            findings,
            detail: result.detail.to_string(),
            received_at: to_millis(row.received_at),
            kind: result.kind.as_str(),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ResultRecord {
    result_id: Uuid,
    agent_id: Uuid,
    environment: String,
    run_id: Option<Uuid>,
    asset: String,
    backup: String,
    recovery_point: String,
    outcome: String,
    started_at: i64,
    finished_at: i64,
    restore_seconds: f64,
    rto_seconds: f64,
    recovery_point_age_seconds: i64,
    findings: String,
    detail: String,
    received_at: i64,
    kind: String,
}

impl TryFrom<ResultRecord> for StoredResult {
    type Error = StoreError;

    fn try_from(record: ResultRecord) -> Result<Self, Self::Error> {
        let outcome: Outcome = serde_json::from_value(serde_json::Value::String(record.outcome))
            .map_err(|err| StoreError::Corrupt(format!("results.outcome: {err}")))?;
        let findings: Vec<Finding> = serde_json::from_str(&record.findings)
            .map_err(|err| StoreError::Corrupt(format!("results.findings: {err}")))?;
        Ok(Self {
            agent_id: AgentId(record.agent_id),
            environment: parse_environment(&record.environment)?,
            received_at: from_millis("results.received_at", record.received_at)?,
            result: RunResult {
                result_id: ResultId(record.result_id),
                kind: ResultKind::parse(&record.kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("results.kind: {:?}", record.kind)))?,
                run_id: record.run_id.map(RunId),
                asset: record.asset,
                backup: record.backup,
                recovery_point: record.recovery_point,
                outcome,
                started_at: from_millis("results.started_at", record.started_at)?,
                finished_at: from_millis("results.finished_at", record.finished_at)?,
                restore_seconds: record.restore_seconds,
                rto_seconds: record.rto_seconds,
                recovery_point_age_seconds: record.recovery_point_age_seconds,
                findings,
                detail: parse_json("results.detail", &record.detail)?,
            },
        })
    }
}

impl Store {
    /// Stores a batch of results in one transaction, skipping result ids already stored, and
    /// returns how many were new. Once this returns `Ok`, the batch is committed: the results may
    /// be acknowledged to their agents.
    pub async fn insert_results(&self, batch: &[ResultRow]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let encoded = batch.iter().map(EncodedResult::new).collect::<Result<Vec<_>, _>>()?;
        let statements: &'static [String] = &INSERT_STATEMENTS;
        let inserted = with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            let mut inserted = 0;
            let mut rows = encoded.iter();
            for (statement, size) in chunk_plan(encoded.len()) {
                let mut query = sqlx::query(statements[statement].as_str());
                for row in rows.by_ref().take(size) {
                    query = query
                        .bind(row.result_id)
                        .bind(row.agent_id)
                        .bind(row.environment)
                        .bind(row.run_id)
                        .bind(row.asset)
                        .bind(row.backup)
                        .bind(row.recovery_point)
                        .bind(row.outcome)
                        .bind(row.started_at)
                        .bind(row.finished_at)
                        .bind(row.restore_seconds)
                        .bind(row.rto_seconds)
                        .bind(row.recovery_point_age_seconds)
                        .bind(row.findings.as_str())
                        .bind(row.detail.as_str())
                        .bind(row.received_at)
                        .bind(row.kind);
                }
                inserted += query.execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            inserted
        });
        Ok(inserted)
    }

    /// Returns how many results are stored.
    pub async fn count_results(&self) -> Result<u64, StoreError> {
        let count: i64 = with_pool!(self, |pool| sqlx::query_scalar(COUNT_RESULTS).fetch_one(pool).await?);
        u64::try_from(count).map_err(|_| StoreError::Corrupt(format!("negative result count {count}")))
    }

    /// Returns the id of every stored result, in id order.
    pub async fn result_ids(&self) -> Result<Vec<ResultId>, StoreError> {
        let ids: Vec<Uuid> = with_pool!(self, |pool| sqlx::query_scalar(SELECT_RESULT_IDS)
            .fetch_all(pool)
            .await?);
        Ok(ids.into_iter().map(ResultId).collect())
    }

    /// The most recently finished result of `kind` for an asset of an environment.
    pub async fn latest_result(
        &self,
        environment: &str,
        asset: &str,
        kind: ResultKind,
    ) -> Result<Option<StoredResult>, StoreError> {
        let record: Option<ResultRecord> = with_pool!(self, |pool| {
            sqlx::query_as(SELECT_LATEST_RESULT)
                .bind(environment)
                .bind(asset)
                .bind(kind.as_str())
                .fetch_optional(pool)
                .await?
        });
        record.map(StoredResult::try_from).transpose()
    }

    /// Returns up to `limit` results for `asset`, the most recently finished first.
    pub async fn results_for_asset(&self, asset: &str, limit: u32) -> Result<Vec<StoredResult>, StoreError> {
        let records: Vec<ResultRecord> = with_pool!(self, |pool| {
            sqlx::query_as(SELECT_RESULTS_FOR_ASSET)
                .bind(asset)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        records.into_iter().map(StoredResult::try_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_plans_cover_every_row_once() {
        for len in 0..=600 {
            let plan = chunk_plan(len);
            assert_eq!(plan.iter().map(|(_, rows)| rows).sum::<usize>(), len);
            assert!(plan.iter().all(|&(index, rows)| CHUNK_SIZES[index] == rows));
        }
        assert_eq!(chunk_plan(500).len(), 7 + 3);
    }

    #[test]
    fn insert_statements_number_every_parameter() {
        let sql = insert_statement(2);
        assert!(sql.contains("($1, $2,"));
        assert!(sql.contains("$17), ($18,"));
        assert!(sql.ends_with("$34) ON CONFLICT (result_id) DO NOTHING"));
    }
}
