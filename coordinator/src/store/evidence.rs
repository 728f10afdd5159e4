//! The evidence log: one append-only record per restore result and per guard decision, chained
//! by hash.
//!
//! Each record is the canonical JSON of what an auditor needs to know about one run (what was
//! restored, how it ended, what was measured and found, the runbook and the checks) or, with
//! `"kind": "guard_decision"`, about one answer of the guard (who asked to destroy what, allowed
//! or refused, and why; its `result_id` column holds the decision's id), and
//! `hash = hex(sha256(prev_hash || "\n" || record))`, the first record's `prev_hash` being
//! [`GENESIS_HASH`]. Editing, removing or reordering a record breaks every hash after it, which
//! [`crate::evidence::verify`] detects on an exported copy, without the database.
//!
//! The chain must stay linear when several coordinator replicas share one PostgreSQL: an append
//! takes a transaction-scoped advisory lock before it reads the newest record (SQLite's
//! `BEGIN IMMEDIATE` is already database-wide), and numbers records itself (`seq = last + 1`)
//! rather than trusting a sequence, which leaves gaps when a transaction rolls back: a gap in an
//! export must mean a record was removed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use lifeboat_shared::ids::{Environment, ResultId};
use lifeboat_shared::protocol::ResultKind;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{ResultRow, Store, StoreError, from_millis, parse_environment, to_millis};

/// The `prev_hash` of the first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Version of the record layout, stored in every record so that a later layout can be told apart.
const RECORD_VERSION: u64 = 1;

pub(super) const SELECT_HEAD: &str = "SELECT seq, recorded_at, hash FROM evidence ORDER BY seq DESC LIMIT 1";

const COUNT_RESULT_ID: &str = "SELECT COUNT(*) FROM evidence WHERE result_id = $1";

const SELECT_OBJECTIVES: &str = "SELECT rpo_seconds, rto_seconds FROM tests WHERE environment = $1 AND asset = $2";

pub(super) const INSERT_EVIDENCE: &str = "INSERT INTO evidence (seq, recorded_at, environment, asset, result_id, record, \
     prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Everything from the first record recorded at or after `$1` on, so that an export is one
/// unbroken stretch of the chain even if a replica's clock once went backwards.
const SELECT_SINCE: &str = "SELECT seq, recorded_at, environment, asset, result_id, record, prev_hash, hash \
     FROM evidence WHERE seq >= (SELECT MIN(seq) FROM evidence WHERE recorded_at >= $1) ORDER BY seq";

/// Takes the chain's lock and reads its head inside the transaction `$tx`: evaluates to a
/// [`ChainCursor`] positioned after the newest record, its `recorded_at` never before that
/// record's. Used by every append, so the chain stays one line whichever kind of record comes.
macro_rules! chain_cursor {
    ($tx:expr, $dialect:expr) => {{
        if let Some(lock) = $dialect.lock_evidence_chain {
            sqlx::query(lock).execute(&mut *$tx).await?;
        }
        let head: Option<$crate::store::evidence::HeadRow> = sqlx::query_as($crate::store::evidence::SELECT_HEAD)
            .fetch_optional(&mut *$tx)
            .await?;
        $crate::store::evidence::ChainCursor::after(head)?
    }};
}
pub(super) use chain_cursor;

/// Appends `$record` (canonical JSON) about `$environment`/`$asset`/`$id` at `$cursor` inside
/// `$tx`, and moves the cursor on.
macro_rules! chain_append {
    ($tx:expr, $cursor:expr, $environment:expr, $asset:expr, $id:expr, $record:expr) => {{
        let record: String = $record;
        let hash = $crate::store::evidence::chain_hash(&$cursor.prev_hash, &record);
        $cursor.seq += 1;
        sqlx::query($crate::store::evidence::INSERT_EVIDENCE)
            .bind($cursor.seq)
            .bind($cursor.recorded_at_millis)
            .bind($environment)
            .bind($asset)
            .bind($id)
            .bind(record.as_str())
            .bind($cursor.prev_hash.as_str())
            .bind(hash.as_str())
            .execute(&mut *$tx)
            .await?;
        $cursor.prev_hash = hash;
    }};
}
pub(super) use chain_append;

/// Where the next record of the chain goes: its seq (after `seq + 1`), the hash it chains to,
/// and the time every record of this append carries.
pub(super) struct ChainCursor {
    pub(super) seq: i64,
    pub(super) prev_hash: String,
    pub(super) recorded_at_millis: i64,
}

impl ChainCursor {
    pub(super) fn after(head: Option<HeadRow>) -> Result<Self, StoreError> {
        let (seq, last_recorded_at, prev_hash) = match head {
            Some(head) => (head.seq, head.recorded_at, head.hash),
            None => (0, i64::MIN, GENESIS_HASH.to_owned()),
        };
        // A clock that went backwards on this replica must not make the log go back in time.
        let recorded_at_millis = to_millis(Utc::now()).max(last_recorded_at);
        // Checks the time is representable before any record carries it.
        from_millis("evidence.recorded_at", recorded_at_millis)?;
        Ok(Self {
            seq,
            prev_hash,
            recorded_at_millis,
        })
    }

    pub(super) fn recorded_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.recorded_at_millis).unwrap_or_default()
    }
}

/// One record of the evidence log, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceRecord {
    /// Position in the chain: 1, 2, 3, … without gaps.
    pub seq: u64,
    /// When the coordinator appended it; never earlier than the record before it.
    pub recorded_at: DateTime<Utc>,
    pub environment: Environment,
    pub asset: String,
    pub result_id: ResultId,
    /// The canonical JSON the hash covers, exactly as hashed.
    pub record: String,
    /// The hash of the previous record, or [`GENESIS_HASH`].
    pub prev_hash: String,
    pub hash: String,
}

/// The newest record of the chain: where the next export or append continues from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceHead {
    pub seq: u64,
    pub hash: String,
}

/// Returns `hex(sha256(prev_hash || "\n" || record))`, the hash of one link of the chain.
pub fn chain_hash(prev_hash: &str, record: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(record.as_bytes());
    hex::encode(hasher.finalize())
}

/// Returns the canonical text of `value`: object keys sorted (by their UTF-8 bytes), no
/// whitespace, scalars as serde_json writes them.
///
/// Sorting is done here rather than left to serde_json's map type, so the bytes that are hashed
/// do not depend on whether some crate in the build enables its `preserve_order` feature.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by_key(|(key, _)| *key);
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Formats a time the way records do: RFC 3339, UTC, milliseconds (the store's precision).
fn record_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The asset's objectives from its test plan, when the coordinator knows the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Objectives {
    rpo_seconds: i64,
    rto_seconds: i64,
}

/// Builds the canonical record of one restore result.
///
/// `runbook` and `checks` come from the result's detail: either top-level fields, or the entry of
/// `detail.runs` that restored the reported backup and recovery point (the agent's report form).
fn build_record(row: &ResultRow, recorded_at: DateTime<Utc>, objectives: Option<Objectives>) -> String {
    let result = &row.result;
    let findings: Vec<Value> = result
        .findings
        .iter()
        .map(|finding| {
            json!({
                "kind": finding.kind.code(),
                "severity": finding.severity.as_str(),
                "subject": finding.subject,
                "message": finding.message,
            })
        })
        .collect();
    let mut record = Map::new();
    record.insert("version".into(), json!(RECORD_VERSION));
    record.insert("result_id".into(), json!(result.result_id.to_string()));
    if let Some(run_id) = result.run_id {
        record.insert("run_id".into(), json!(run_id.to_string()));
    }
    record.insert("agent_id".into(), json!(row.agent_id.to_string()));
    record.insert("environment".into(), json!(row.environment.as_str()));
    record.insert("asset".into(), json!(result.asset));
    record.insert("backup".into(), json!(result.backup));
    record.insert("recovery_point".into(), json!(result.recovery_point));
    record.insert("outcome".into(), json!(result.outcome.as_str()));
    record.insert("started_at".into(), json!(record_time(result.started_at)));
    record.insert("finished_at".into(), json!(record_time(result.finished_at)));
    record.insert("restore_seconds".into(), json!(result.restore_seconds));
    record.insert("rto_seconds".into(), json!(result.rto_seconds));
    record.insert(
        "recovery_point_age_seconds".into(),
        json!(result.recovery_point_age_seconds),
    );
    record.insert("findings".into(), Value::Array(findings));
    let main_run = main_run(&result.detail, &result.backup, &result.recovery_point);
    if let Some(runbook) = main_run.and_then(|run| run.get("runbook")).and_then(runbook_lines) {
        record.insert("runbook".into(), runbook);
    }
    if let Some(checks) = main_run.and_then(|run| run.get("checks")).and_then(check_summaries) {
        record.insert("checks".into(), checks);
    }
    if let Some(objectives) = objectives {
        record.insert(
            "objectives".into(),
            json!({"rpo_seconds": objectives.rpo_seconds, "rto_seconds": objectives.rto_seconds}),
        );
    }
    record.insert("received_at".into(), json!(record_time(row.received_at)));
    record.insert("recorded_at".into(), json!(record_time(recorded_at)));
    canonical_json(&Value::Object(record))
}

/// Returns the part of `detail` that holds the runbook and checks of the reported run.
fn main_run<'a>(detail: &'a Value, backup: &str, recovery_point: &str) -> Option<&'a Value> {
    let fields = detail.as_object()?;
    if fields.contains_key("runbook") || fields.contains_key("checks") {
        return Some(detail);
    }
    let runs = fields.get("runs")?.as_array()?;
    runs.iter()
        .find(|run| {
            run.get("backup").and_then(Value::as_str) == Some(backup)
                && run.get("recovery_point").and_then(Value::as_str) == Some(recovery_point)
        })
        .or_else(|| runs.first())
}

/// Keeps the runbook if it is a list of command lines.
fn runbook_lines(runbook: &Value) -> Option<Value> {
    let lines = runbook.as_array()?;
    let lines: Vec<Value> = lines.iter().filter(|line| line.is_string()).cloned().collect();
    Some(Value::Array(lines))
}

/// Keeps, of each check, what an auditor reads: name, kind, whether it passed, and the message.
fn check_summaries(checks: &Value) -> Option<Value> {
    let checks = checks.as_array()?;
    let summaries = checks
        .iter()
        .filter_map(Value::as_object)
        .map(|check| {
            let mut summary = Map::new();
            for field in ["name", "kind", "passed", "message"] {
                if let Some(value) = check.get(field) {
                    summary.insert(field.into(), value.clone());
                }
            }
            Value::Object(summary)
        })
        .collect();
    Some(Value::Array(summaries))
}

#[derive(sqlx::FromRow)]
pub(super) struct HeadRow {
    seq: i64,
    recorded_at: i64,
    hash: String,
}

#[derive(sqlx::FromRow)]
struct EvidenceRow {
    seq: i64,
    recorded_at: i64,
    environment: String,
    asset: String,
    result_id: Uuid,
    record: String,
    prev_hash: String,
    hash: String,
}

fn stored_seq(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("evidence.seq {seq} is negative")))
}

impl TryFrom<EvidenceRow> for EvidenceRecord {
    type Error = StoreError;

    fn try_from(row: EvidenceRow) -> Result<Self, Self::Error> {
        Ok(Self {
            seq: stored_seq(row.seq)?,
            recorded_at: from_millis("evidence.recorded_at", row.recorded_at)?,
            environment: parse_environment(&row.environment)?,
            asset: row.asset,
            result_id: ResultId(row.result_id),
            record: row.record,
            prev_hash: row.prev_hash,
            hash: row.hash,
        })
    }
}

impl Store {
    /// Appends one evidence record per restore result of `rows`, in order, and returns how many
    /// were appended. Posture results are not evidence of a restore and are skipped, and so are
    /// result ids already in the log (a resent batch appends nothing).
    ///
    /// Safe to call from several replicas at once: appends are serialised by a lock, so the chain
    /// stays one line.
    pub async fn append_evidence(&self, rows: &[ResultRow]) -> Result<u64, StoreError> {
        let restores: Vec<&ResultRow> = rows
            .iter()
            .filter(|row| row.result.kind == ResultKind::Restore)
            .collect();
        if restores.is_empty() {
            return Ok(0);
        }
        let appended = with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            let mut cursor = chain_cursor!(tx, dialect);
            let recorded_at = cursor.recorded_at();
            let mut seen_in_batch = HashSet::new();
            let mut objectives_by_asset: HashMap<(String, String), Option<Objectives>> = HashMap::new();
            let mut appended: u64 = 0;
            for row in restores {
                let result_id = row.result.result_id.0;
                if !seen_in_batch.insert(result_id) {
                    continue;
                }
                let already: i64 = sqlx::query_scalar(COUNT_RESULT_ID)
                    .bind(result_id)
                    .fetch_one(&mut *tx)
                    .await?;
                if already > 0 {
                    continue;
                }
                let key = (row.environment.as_str().to_owned(), row.result.asset.clone());
                let objectives = match objectives_by_asset.get(&key) {
                    Some(known) => *known,
                    None => {
                        let found: Option<(i64, i64)> = sqlx::query_as(SELECT_OBJECTIVES)
                            .bind(key.0.as_str())
                            .bind(key.1.as_str())
                            .fetch_optional(&mut *tx)
                            .await?;
                        let found = found.map(|(rpo_seconds, rto_seconds)| Objectives {
                            rpo_seconds,
                            rto_seconds,
                        });
                        objectives_by_asset.insert(key, found);
                        found
                    }
                };
                chain_append!(
                    tx,
                    cursor,
                    row.environment.as_str(),
                    row.result.asset.as_str(),
                    result_id,
                    build_record(row, recorded_at, objectives)
                );
                appended += 1;
            }
            tx.commit().await?;
            appended
        });
        Ok(appended)
    }

    /// Returns the records from the first one recorded at or after `since` to the newest, in
    /// chain order. The stretch has no holes, so it verifies from its first `prev_hash`.
    pub async fn evidence_since(&self, since: DateTime<Utc>) -> Result<Vec<EvidenceRecord>, StoreError> {
        let rows: Vec<EvidenceRow> = with_pool!(self, |pool| {
            sqlx::query_as(SELECT_SINCE)
                .bind(to_millis(since))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(EvidenceRecord::try_from).collect()
    }

    /// Returns the newest record's seq and hash, or `None` while the log is empty.
    pub async fn evidence_head(&self) -> Result<Option<EvidenceHead>, StoreError> {
        let head: Option<HeadRow> =
            with_pool!(self, |pool| { sqlx::query_as(SELECT_HEAD).fetch_optional(pool).await? });
        head.map(|head| {
            Ok(EvidenceHead {
                seq: stored_seq(head.seq)?,
                hash: head.hash,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use lifeboat_shared::findings::{Finding, FindingKind};
    use lifeboat_shared::ids::AgentId;
    use lifeboat_shared::protocol::{Outcome, RunResult};

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    fn row(detail: Value) -> ResultRow {
        let mut finding = Finding::new(FindingKind::RestoreCheckFailed, "orders", "orders table is empty");
        finding.remediation = "not part of the record".to_owned();
        finding.evidence = json!({"not": "part of the record either"});
        ResultRow {
            agent_id: AgentId::new(),
            environment: Environment::parse("prod").expect("environment"),
            received_at: at("2026-11-03T02:20:00.123456Z"),
            result: RunResult {
                result_id: ResultId::new(),
                kind: ResultKind::Restore,
                run_id: None,
                asset: "orders".to_owned(),
                backup: "nightly".to_owned(),
                recovery_point: "rp-2".to_owned(),
                outcome: Outcome::Failed,
                started_at: at("2026-11-03T02:15:00Z"),
                finished_at: at("2026-11-03T02:19:30.5Z"),
                restore_seconds: 12.5,
                rto_seconds: 14.25,
                recovery_point_age_seconds: 7200,
                findings: vec![finding],
                detail,
            },
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_without_whitespace() {
        let value = json!({"b": 1, "a": {"z": [3, {"y": true, "x": null}], "é": "q\"\n"}, "A": 1.5});
        assert_eq!(
            canonical_json(&value),
            r#"{"A":1.5,"a":{"z":[3,{"x":null,"y":true}],"é":"q\"\n"},"b":1}"#
        );
        // Parsing and writing again changes nothing.
        let text = canonical_json(&value);
        let again: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(canonical_json(&again), text);
    }

    #[test]
    fn chain_hash_is_sha256_of_prev_newline_record() {
        // python3: hashlib.sha256(('0'*64 + '\n' + '{}').encode()).hexdigest()
        assert_eq!(
            chain_hash(GENESIS_HASH, "{}"),
            "5649d09ed68c17156095d175eef152856c5b1a81c117c409c1e00f096aa6838e"
        );
        assert_eq!(GENESIS_HASH.len(), 64);
        assert_ne!(chain_hash(GENESIS_HASH, "{}"), chain_hash(GENESIS_HASH, "{ }"));
    }

    #[test]
    fn records_keep_what_an_auditor_reads_from_the_matching_run() {
        let detail = json!({"recoverable": false, "runs": [
            {"backup": "nightly", "recovery_point": "rp-1", "runbook": ["old"], "checks": []},
            {"backup": "nightly", "recovery_point": "rp-2", "runbook": ["pg_restore rp-2", 7],
             "checks": [{"name": "orders", "kind": "sql", "passed": false, "message": "expected 1, got 0",
                         "seconds": 0.25, "drift": ["+ t"]}]},
        ]});
        let row = row(detail);
        let objectives = Some(Objectives {
            rpo_seconds: 86_400,
            rto_seconds: 3_600,
        });
        let text = build_record(&row, at("2026-11-03T02:20:01Z"), objectives);
        let record: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(canonical_json(&record), text, "stored in canonical form");
        assert_eq!(record["result_id"], row.result.result_id.to_string());
        assert_eq!(record["agent_id"], row.agent_id.to_string());
        assert_eq!(record["environment"], "prod");
        assert_eq!(record["outcome"], "failed");
        assert_eq!(record["finished_at"], "2026-11-03T02:19:30.500Z");
        assert_eq!(
            record["received_at"], "2026-11-03T02:20:00.123Z",
            "millisecond precision"
        );
        assert_eq!(record["recorded_at"], "2026-11-03T02:20:01.000Z");
        assert_eq!(record["restore_seconds"], 12.5);
        assert_eq!(record["recovery_point_age_seconds"], 7200);
        assert_eq!(
            record["findings"],
            json!([{"kind": "restore.check_failed", "severity": "critical", "subject": "orders",
                    "message": "orders table is empty"}])
        );
        assert_eq!(record["runbook"], json!(["pg_restore rp-2"]));
        assert_eq!(
            record["checks"],
            json!([{"name": "orders", "kind": "sql", "passed": false, "message": "expected 1, got 0"}])
        );
        assert_eq!(
            record["objectives"],
            json!({"rpo_seconds": 86_400, "rto_seconds": 3_600})
        );
        assert!(record.get("run_id").is_none());
    }

    #[test]
    fn records_without_runbook_or_objectives_leave_them_out() {
        let text = build_record(&row(Value::Null), at("2026-11-03T02:20:01Z"), None);
        let record: Value = serde_json::from_str(&text).expect("json");
        assert!(record.get("runbook").is_none());
        assert!(record.get("checks").is_none());
        assert!(record.get("objectives").is_none());

        let top_level = build_record(&row(json!({"runbook": ["cp a b"]})), at("2026-11-03T02:20:01Z"), None);
        let record: Value = serde_json::from_str(&top_level).expect("json");
        assert_eq!(record["runbook"], json!(["cp a b"]));
    }
}
