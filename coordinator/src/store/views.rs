//! Read models for the HTTP surfaces (API, status page, `/metrics`): queries shaped for a page
//! rather than for one write path, and fast at the scale the coordinator aims at (10,000 assets,
//! 1,000,000 results).
//!
//! Each query reads through an index: the restore trends of a set of assets are one statement
//! (the keys travel as one JSON array) that reads the newest N entries of
//! `results_env_asset_kind` per asset and only their rows; the latest posture scan of every
//! asset is one probe of the same index per asset. Nothing here writes.
//!
//! [`Store::run_counts`] scans results by time, which no index serves yet: keep it off hot
//! pages until `results (kind, finished_at, outcome)` is indexed.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::Finding;
use serde::Serialize;

use super::{Engine, Store, StoreError, TestRecord, VerdictRecord, from_millis, from_optional_millis};

/// An asset, named by its environment and its name (asset names are unique per environment).
pub type AssetKey = (String, String);

/// One restore result, as the trend and the detail page show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestorePoint {
    pub finished_at: DateTime<Utc>,
    /// `passed`, `failed`, `timed_out`, `cancelled` or `error`.
    pub outcome: String,
    pub backup: String,
    pub recovery_point: String,
    /// The measured time to recover: sandbox created until every check passed (what the RTO is
    /// about; the `rto_seconds` column of `results`).
    pub recovery_seconds: f64,
    /// The restore step alone.
    pub restore_seconds: f64,
    pub recovery_point_age_seconds: i64,
}

/// The open findings of one asset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetFindings {
    pub environment: String,
    pub asset: String,
    /// Worst first.
    pub findings: Vec<Finding>,
}

/// Restore results by outcome since a time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    /// `(outcome, count)`, by outcome.
    pub by_outcome: Vec<(String, i64)>,
}

impl RunCounts {
    /// Results of every outcome.
    pub fn total(&self) -> i64 {
        self.by_outcome.iter().map(|(_, count)| count).sum()
    }

    /// Results with `outcome`.
    pub fn of(&self, outcome: &str) -> i64 {
        self.by_outcome
            .iter()
            .find(|(name, _)| name == outcome)
            .map_or(0, |(_, count)| *count)
    }
}

/// Agents that are not revoked, and how many of them a replica holds a session with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AgentCounts {
    pub connected: i64,
    pub total: i64,
}

/// Merges the open findings of an asset: the reasons of its verdict and the findings of its
/// latest posture scan, without duplicates, worst first.
pub fn merge_findings(reasons: &[Finding], posture: &[Finding]) -> Vec<Finding> {
    let mut merged: Vec<Finding> = reasons.to_vec();
    for finding in posture {
        let duplicate = merged.iter().any(|seen| {
            seen.kind == finding.kind && seen.subject == finding.subject && seen.message == finding.message
        });
        if !duplicate {
            merged.push(finding.clone());
        }
    }
    // Stable: among equals, the verdict's own order stays first.
    merged.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    merged
}

/// The keys of a trend query as rows `(environment, asset)`, from a JSON array of pairs.
const KEYS_SQLITE: &str = "SELECT json_extract(value, '$[0]') AS environment, json_extract(value, '$[1]') AS asset \
     FROM json_each($1)";
const KEYS_POSTGRES: &str = "SELECT e ->> 0 AS environment, e ->> 1 AS asset FROM jsonb_array_elements($1::jsonb) AS e";

/// The newest `$2` restore results of each asset named in `$1`, oldest first per asset.
///
/// Each asset's rows come from an index range cut at `$2` (not every result of the asset,
/// numbered and filtered): PostgreSQL with a `LATERAL` join, SQLite with a correlated `rowid`
/// subquery, which reads only the index (`rowid` is in every SQLite index).
fn trend_statement(engine_keys: &str, postgres: bool) -> String {
    let pick = if postgres {
        "CROSS JOIN LATERAL (SELECT r.finished_at, r.outcome, r.backup, r.recovery_point, r.rto_seconds, \
           r.restore_seconds, r.recovery_point_age_seconds FROM results r \
           WHERE r.environment = k.environment AND r.asset = k.asset AND r.kind = 'restore' \
           ORDER BY r.finished_at DESC LIMIT $2) r"
    } else {
        "JOIN results r ON r.rowid IN (SELECT n.rowid FROM results n \
           WHERE n.environment = k.environment AND n.asset = k.asset AND n.kind = 'restore' \
           ORDER BY n.finished_at DESC LIMIT $2)"
    };
    format!(
        "WITH keys AS ({engine_keys}) \
         SELECT k.environment AS environment, k.asset AS asset, r.finished_at, r.outcome, r.backup, \
           r.recovery_point, r.rto_seconds, r.restore_seconds, r.recovery_point_age_seconds \
         FROM keys k {pick} ORDER BY 1, 2, 3"
    )
}

const RECENT_RESTORES: &str = "SELECT environment, asset, finished_at, outcome, backup, recovery_point, rto_seconds, \
     restore_seconds, recovery_point_age_seconds FROM results \
     WHERE environment = $1 AND asset = $2 AND kind = 'restore' ORDER BY finished_at DESC LIMIT $3";

/// The findings of the latest posture scan of every asset with a verdict: one index probe each.
const LATEST_POSTURE: &str = "SELECT v.environment, v.asset, \
       (SELECT r.findings FROM results r WHERE r.environment = v.environment AND r.asset = v.asset \
          AND r.kind = 'posture' ORDER BY r.finished_at DESC LIMIT 1) AS findings \
     FROM verdicts v WHERE ($1 IS NULL OR v.environment = $1)";

/// The findings of the latest posture scan of each asset named in `$1` (keys as in trends).
fn posture_for_keys_statement(keys: &str) -> String {
    format!(
        "WITH keys AS ({keys}) \
         SELECT k.environment, k.asset, \
           (SELECT r.findings FROM results r WHERE r.environment = k.environment AND r.asset = k.asset \
              AND r.kind = 'posture' ORDER BY r.finished_at DESC LIMIT 1) AS findings \
         FROM keys k"
    )
}

const LATEST_PASSED_DETAIL: &str = "SELECT detail FROM results WHERE environment = $1 AND asset = $2 \
     AND kind = 'restore' AND outcome = 'passed' ORDER BY finished_at DESC LIMIT 1";

const RUN_COUNTS: &str = "SELECT outcome, COUNT(*) FROM results WHERE kind = 'restore' AND finished_at >= $1 \
     GROUP BY outcome ORDER BY outcome";

const AGENT_COUNTS: &str = "SELECT COALESCE(SUM(CASE WHEN connected = TRUE THEN 1 ELSE 0 END), 0), COUNT(*) \
     FROM agents WHERE revoked_at IS NULL";

const SELECT_TEST: &str = "SELECT environment, asset, schedule, timeout_seconds, interval_seconds, rpo_seconds, \
     rto_seconds, override_schedule, override_timeout_seconds, paused, next_due_at, updated_at \
     FROM tests WHERE environment = $1 AND asset = $2";

const PING: &str = "SELECT 1";

#[derive(sqlx::FromRow)]
struct RestoreRow {
    environment: String,
    asset: String,
    finished_at: i64,
    outcome: String,
    backup: String,
    recovery_point: String,
    rto_seconds: f64,
    restore_seconds: f64,
    recovery_point_age_seconds: i64,
}

impl RestoreRow {
    fn into_point(self) -> Result<(AssetKey, RestorePoint), StoreError> {
        let point = RestorePoint {
            finished_at: from_millis("results.finished_at", self.finished_at)?,
            outcome: self.outcome,
            backup: self.backup,
            recovery_point: self.recovery_point,
            recovery_seconds: self.rto_seconds,
            restore_seconds: self.restore_seconds,
            recovery_point_age_seconds: self.recovery_point_age_seconds,
        };
        Ok(((self.environment, self.asset), point))
    }
}

#[derive(sqlx::FromRow)]
struct TestRow {
    environment: String,
    asset: String,
    schedule: String,
    timeout_seconds: i64,
    interval_seconds: i64,
    rpo_seconds: i64,
    rto_seconds: i64,
    override_schedule: Option<String>,
    override_timeout_seconds: Option<i64>,
    paused: bool,
    next_due_at: Option<i64>,
    updated_at: i64,
}

fn parse_findings(column: &str, text: &str) -> Result<Vec<Finding>, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(format!("{column}: {err}")))
}

impl Store {
    /// Returns the newest `per_asset` restore results of each of `assets`, oldest first, in one
    /// query. Assets without restore results are absent from the map.
    pub async fn restore_trends(
        &self,
        assets: &[AssetKey],
        per_asset: u32,
    ) -> Result<HashMap<AssetKey, Vec<RestorePoint>>, StoreError> {
        let mut trends: HashMap<AssetKey, Vec<RestorePoint>> = HashMap::new();
        if assets.is_empty() || per_asset == 0 {
            return Ok(trends);
        }
        let keys = keys_json(assets)?;
        let postgres = matches!(self.engine, Engine::Postgres(_));
        let statement = trend_statement(self.keys_source(), postgres);
        let rows: Vec<RestoreRow> = with_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(statement.clone()))
                .bind(keys.as_str())
                .bind(i64::from(per_asset))
                .fetch_all(pool)
                .await?
        });
        for row in rows {
            let (key, point) = row.into_point()?;
            trends.entry(key).or_default().push(point);
        }
        Ok(trends)
    }

    /// Returns the newest `limit` restore results of one asset, newest first.
    pub async fn recent_restores(
        &self,
        environment: &str,
        asset: &str,
        limit: u32,
    ) -> Result<Vec<RestorePoint>, StoreError> {
        let rows: Vec<RestoreRow> = with_pool!(self, |pool| {
            sqlx::query_as(RECENT_RESTORES)
                .bind(environment)
                .bind(asset)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|row| row.into_point().map(|(_, point)| point))
            .collect()
    }

    /// Returns the findings of the latest posture scan of every asset with a verdict (of one
    /// environment, or all), for assets that have had a scan.
    pub async fn latest_posture_findings(
        &self,
        environment: Option<&str>,
    ) -> Result<HashMap<AssetKey, Vec<Finding>>, StoreError> {
        let rows: Vec<(String, String, Option<String>)> = with_pool!(self, |pool| {
            sqlx::query_as(LATEST_POSTURE).bind(environment).fetch_all(pool).await?
        });
        let mut findings = HashMap::new();
        for (environment, asset, text) in rows {
            if let Some(text) = text {
                findings.insert((environment, asset), parse_findings("results.findings", &text)?);
            }
        }
        Ok(findings)
    }

    /// Returns the findings of the latest posture scan of each of `assets` that has had one, in
    /// one query (one index probe per asset).
    pub async fn latest_posture_findings_for(
        &self,
        assets: &[AssetKey],
    ) -> Result<HashMap<AssetKey, Vec<Finding>>, StoreError> {
        if assets.is_empty() {
            return Ok(HashMap::new());
        }
        let keys = keys_json(assets)?;
        let statement = posture_for_keys_statement(self.keys_source());
        let rows: Vec<(String, String, Option<String>)> = with_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(statement.clone()))
                .bind(keys.as_str())
                .fetch_all(pool)
                .await?
        });
        let mut findings = HashMap::new();
        for (environment, asset, text) in rows {
            if let Some(text) = text {
                findings.insert((environment, asset), parse_findings("results.findings", &text)?);
            }
        }
        Ok(findings)
    }

    /// The engine's table expression over a JSON array of `[environment, asset]` pairs.
    pub(super) fn keys_source(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite(_) => KEYS_SQLITE,
            Engine::Postgres(_) => KEYS_POSTGRES,
        }
    }

    /// Returns the open findings of every asset with a verdict (of one environment, or all): the
    /// reasons of its verdict plus the findings of its latest posture scan. Assets with none are
    /// left out; ordered by environment and asset.
    pub async fn open_findings(&self, environment: Option<&str>) -> Result<Vec<AssetFindings>, StoreError> {
        let verdicts = self.verdicts(environment).await?;
        let posture = self.latest_posture_findings(environment).await?;
        Ok(open_findings_of(&verdicts, &posture))
    }

    /// Returns the runbook (the commands, in order) of the latest passing restore of an asset.
    pub async fn latest_runbook(&self, environment: &str, asset: &str) -> Result<Vec<String>, StoreError> {
        let detail: Option<String> = with_pool!(self, |pool| {
            sqlx::query_scalar(LATEST_PASSED_DETAIL)
                .bind(environment)
                .bind(asset)
                .fetch_optional(pool)
                .await?
        });
        let Some(detail) = detail else {
            return Ok(Vec::new());
        };
        let detail = super::parse_json("results.detail", &detail)?;
        Ok(runbook_of(&detail))
    }

    /// Counts restore results by outcome, of those finished at or after `since`.
    pub async fn run_counts(&self, since: DateTime<Utc>) -> Result<RunCounts, StoreError> {
        let by_outcome: Vec<(String, i64)> = with_pool!(self, |pool| {
            sqlx::query_as(RUN_COUNTS)
                .bind(super::to_millis(since))
                .fetch_all(pool)
                .await?
        });
        Ok(RunCounts { by_outcome })
    }

    /// Counts the agents that are not revoked, and those connected to some replica.
    pub async fn agent_counts(&self) -> Result<AgentCounts, StoreError> {
        let (connected, total): (i64, i64) =
            with_pool!(self, |pool| sqlx::query_as(AGENT_COUNTS).fetch_one(pool).await?);
        Ok(AgentCounts { connected, total })
    }

    /// Returns the scheduled test of one asset, if it has one.
    pub async fn asset_test(&self, environment: &str, asset: &str) -> Result<Option<TestRecord>, StoreError> {
        let row: Option<TestRow> = with_pool!(self, |pool| {
            sqlx::query_as(SELECT_TEST)
                .bind(environment)
                .bind(asset)
                .fetch_optional(pool)
                .await?
        });
        row.map(|row| {
            Ok(TestRecord {
                environment: row.environment,
                asset: row.asset,
                schedule: row.schedule,
                timeout_seconds: row.timeout_seconds,
                interval_seconds: row.interval_seconds,
                rpo_seconds: row.rpo_seconds,
                rto_seconds: row.rto_seconds,
                override_schedule: row.override_schedule,
                override_timeout_seconds: row.override_timeout_seconds,
                paused: row.paused,
                next_due_at: from_optional_millis("tests.next_due_at", row.next_due_at)?,
                updated_at: from_millis("tests.updated_at", row.updated_at)?,
            })
        })
        .transpose()
    }

    /// Answers when the database does: the readiness probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(PING).execute(pool).await?;
        });
        Ok(())
    }
}

/// The open findings of each verdict given the latest posture findings by asset; assets with
/// none are left out.
pub fn open_findings_of(verdicts: &[VerdictRecord], posture: &HashMap<AssetKey, Vec<Finding>>) -> Vec<AssetFindings> {
    verdicts
        .iter()
        .filter_map(|verdict| {
            let key = (verdict.environment.clone(), verdict.asset.clone());
            let scanned = posture.get(&key).map_or(&[][..], Vec::as_slice);
            let findings = merge_findings(&verdict.reasons, scanned);
            (!findings.is_empty()).then_some(AssetFindings {
                environment: key.0,
                asset: key.1,
                findings,
            })
        })
        .collect()
}

/// The JSON array of distinct `[environment, asset]` pairs a keyed query binds as `$1`.
pub(super) fn keys_json(assets: &[AssetKey]) -> Result<String, StoreError> {
    let unique: BTreeSet<&AssetKey> = assets.iter().collect();
    serde_json::to_string(&unique).map_err(|err| StoreError::Encode(format!("asset keys: {err}")))
}

/// The runbook lines of a restore result's `detail`: those of its first passing run.
fn runbook_of(detail: &serde_json::Value) -> Vec<String> {
    let runs = detail.get("runs").and_then(serde_json::Value::as_array);
    let passed = runs.and_then(|runs| {
        runs.iter()
            .find(|run| run.get("outcome").and_then(serde_json::Value::as_str) == Some("passed"))
            .or_else(|| runs.first())
    });
    passed
        .and_then(|run| run.get("runbook"))
        .and_then(serde_json::Value::as_array)
        .map(|lines| {
            lines
                .iter()
                .filter_map(|line| line.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use lifeboat_shared::findings::{FindingKind, Severity};
    use serde_json::json;

    use super::*;

    #[test]
    fn merged_findings_drop_duplicates_and_put_the_worst_first() {
        let stale = Finding::new(FindingKind::BackupStale, "db", "old");
        let exposed = Finding::new(FindingKind::CredentialExposed, "token", "in a file");
        let drift = Finding::new(FindingKind::DriftDetected, "db", "pg 16").with_severity(Severity::Info);
        let merged = merge_findings(
            std::slice::from_ref(&exposed),
            &[drift.clone(), stale.clone(), exposed.clone()],
        );
        assert_eq!(merged, vec![stale, exposed, drift]);
    }

    #[test]
    fn runbooks_come_from_the_passing_run() {
        let detail = json!({"runs": [
            {"outcome": "failed", "runbook": ["wrong"]},
            {"outcome": "passed", "runbook": ["pg_restore a", "psql b"]},
        ]});
        assert_eq!(runbook_of(&detail), vec!["pg_restore a", "psql b"]);
        assert!(runbook_of(&json!(null)).is_empty());
    }

    #[test]
    fn trend_statements_cut_each_asset_at_the_limit() {
        let sqlite = trend_statement(KEYS_SQLITE, false);
        assert!(sqlite.contains("json_each($1)") && sqlite.contains("r.rowid IN"));
        let postgres = trend_statement(KEYS_POSTGRES, true);
        assert!(postgres.contains("jsonb_array_elements($1::jsonb)") && postgres.contains("LATERAL"));
    }
}
