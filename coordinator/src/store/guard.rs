//! The guard's persistence: every decision (who asked to destroy what, allowed or refused, the
//! whole answer), the assets it weighed — for an asset's page —, its record in the evidence
//! chain and, for a refusal, its ticket in the outbox: written in one transaction, so a decision
//! is never answered without being on record. Plus the reads the guard's snapshot needs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::evidence::{chain_append, chain_cursor};
use super::verdicts::insert_message;
use super::views::keys_json;
use super::{AssetKey, NewMessage, Store, StoreError, VerdictRecord, from_millis, parse_json, to_millis};
use crate::store::evidence::canonical_json;

/// Version of the evidence record layout of a guard decision.
const DECISION_RECORD_VERSION: u64 = 1;

/// Above this many assets, their verdicts are read in one scan rather than one by one.
const VERDICTS_ONE_BY_ONE: usize = 32;

/// A decision about to be recorded: the record, and the assets it weighed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewGuardDecision {
    pub record: GuardDecisionRecord,
    pub assets: Vec<AssetKey>,
}

/// A decision, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardDecisionRecord {
    pub id: Uuid,
    pub decided_at: DateTime<Utc>,
    pub environment: String,
    /// Who asked: an operator token's name, `cli:USER` or `mcp:stdio`.
    pub caller: String,
    /// `cli`, `api`, `mcp` or `proxy`.
    pub surface: String,
    pub provider: String,
    pub resource_kind: String,
    pub resource_id: String,
    pub operation: String,
    pub allowed: bool,
    /// The answer as given: reasons and assets.
    pub decision: Value,
}

impl GuardDecisionRecord {
    /// The decision's reasons (from its stored answer).
    pub fn reasons(&self) -> Vec<&str> {
        self.decision["reasons"]
            .as_array()
            .map(|reasons| reasons.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

const INSERT_DECISION: &str = "INSERT INTO guard_decisions (id, decided_at, environment, caller, surface, provider, \
     resource_kind, resource_id, operation, allowed, decision) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const INSERT_DECISION_ASSET: &str = "INSERT INTO guard_decision_assets (decision_id, environment, asset, decided_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT DO NOTHING";

const DECISION_COLUMNS: &str = "d.id, d.decided_at, d.environment, d.caller, d.surface, d.provider, d.resource_kind, \
     d.resource_id, d.operation, d.allowed, d.decision";

const INVENTORY_STAMP: &str = "SELECT COUNT(*), COALESCE(MAX(i.reported_at), 0) FROM agent_inventories i \
     JOIN agents a ON a.id = i.agent_id WHERE a.revoked_at IS NULL";

#[derive(sqlx::FromRow)]
struct DecisionRow {
    id: Uuid,
    decided_at: i64,
    environment: String,
    caller: String,
    surface: String,
    provider: String,
    resource_kind: String,
    resource_id: String,
    operation: String,
    allowed: bool,
    decision: String,
}

impl TryFrom<DecisionRow> for GuardDecisionRecord {
    type Error = StoreError;

    fn try_from(row: DecisionRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id,
            decided_at: from_millis("guard_decisions.decided_at", row.decided_at)?,
            environment: row.environment,
            caller: row.caller,
            surface: row.surface,
            provider: row.provider,
            resource_kind: row.resource_kind,
            resource_id: row.resource_id,
            operation: row.operation,
            allowed: row.allowed,
            decision: parse_json("guard_decisions.decision", &row.decision)?,
        })
    }
}

/// The canonical evidence record of a decision, recorded at `recorded_at`.
fn decision_record(new: &GuardDecisionRecord, recorded_at: DateTime<Utc>) -> String {
    let time = |time: DateTime<Utc>| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    canonical_json(&json!({
        "version": DECISION_RECORD_VERSION,
        "kind": "guard_decision",
        "decision_id": new.id.to_string(),
        "environment": new.environment,
        // What the row is about, as every record says (for the export's readers and `verify`).
        "asset": resource_label(new),
        "caller": new.caller,
        "surface": new.surface,
        "resource": {"provider": new.provider, "kind": new.resource_kind, "id": new.resource_id},
        "operation": new.operation,
        "allowed": new.allowed,
        "reasons": new.decision.get("reasons").cloned().unwrap_or(Value::Null),
        "assets": new.decision.get("assets").cloned().unwrap_or(Value::Null),
        "decided_at": time(new.decided_at),
        "recorded_at": time(recorded_at),
    }))
}

/// `railway volume vol-7f3a`: what the evidence row of a decision is about.
fn resource_label(new: &GuardDecisionRecord) -> String {
    format!("{} {} {}", new.provider, new.resource_kind, new.resource_id)
}

impl Store {
    /// Records a decision, its assets, its evidence record and `messages` (a refusal's ticket)
    /// in one transaction.
    pub async fn record_guard_decision(
        &self,
        new: &NewGuardDecision,
        messages: &[NewMessage],
    ) -> Result<(), StoreError> {
        let assets = &new.assets;
        let new = &new.record;
        let decision = super::verdicts::encode("guard decision", &new.decision)?;
        let label = resource_label(new);
        let decided_at = to_millis(new.decided_at);
        with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            sqlx::query(INSERT_DECISION)
                .bind(new.id)
                .bind(decided_at)
                .bind(&new.environment)
                .bind(&new.caller)
                .bind(&new.surface)
                .bind(&new.provider)
                .bind(&new.resource_kind)
                .bind(&new.resource_id)
                .bind(&new.operation)
                .bind(new.allowed)
                .bind(&decision)
                .execute(&mut *tx)
                .await?;
            for (environment, asset) in assets {
                sqlx::query(INSERT_DECISION_ASSET)
                    .bind(new.id)
                    .bind(environment)
                    .bind(asset)
                    .bind(decided_at)
                    .execute(&mut *tx)
                    .await?;
            }
            for message in messages {
                insert_message!(tx, None::<i64>, message, new.decided_at);
            }
            let mut cursor = chain_cursor!(tx, dialect);
            let record = decision_record(new, cursor.recorded_at());
            chain_append!(tx, cursor, new.environment.as_str(), label.as_str(), new.id, record);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The newest `limit` decisions, newest first.
    pub async fn guard_decisions(&self, limit: u32) -> Result<Vec<GuardDecisionRecord>, StoreError> {
        let statement = format!("SELECT {DECISION_COLUMNS} FROM guard_decisions d ORDER BY d.decided_at DESC LIMIT $1");
        let rows: Vec<DecisionRow> = with_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(statement.clone()))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(GuardDecisionRecord::try_from).collect()
    }

    /// The newest `limit` decisions that weighed one asset, newest first.
    pub async fn guard_decisions_of(
        &self,
        environment: &str,
        asset: &str,
        limit: u32,
    ) -> Result<Vec<GuardDecisionRecord>, StoreError> {
        let statement = format!(
            "SELECT {DECISION_COLUMNS} FROM guard_decision_assets a JOIN guard_decisions d ON d.id = a.decision_id \
             WHERE a.environment = $1 AND a.asset = $2 ORDER BY a.decided_at DESC LIMIT $3"
        );
        let rows: Vec<DecisionRow> = with_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(statement.clone()))
                .bind(environment)
                .bind(asset)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(GuardDecisionRecord::try_from).collect()
    }

    /// How many agents (not revoked) reported an inventory, and when the newest came: changes
    /// whenever an inventory does, so the guard knows when to re-read them.
    pub async fn inventory_stamp(&self) -> Result<(i64, i64), StoreError> {
        let stamp: (i64, i64) = with_pool!(self, |pool| { sqlx::query_as(INVENTORY_STAMP).fetch_one(pool).await? });
        Ok(stamp)
    }

    /// The `detail` of the latest posture scan of each of `assets` that has had one (one index
    /// probe per asset).
    pub async fn latest_posture_details(&self, assets: &[AssetKey]) -> Result<HashMap<AssetKey, Value>, StoreError> {
        if assets.is_empty() {
            return Ok(HashMap::new());
        }
        let keys = keys_json(assets)?;
        let statement = format!(
            "WITH keys AS ({}) \
             SELECT k.environment, k.asset, \
               (SELECT r.detail FROM results r WHERE r.environment = k.environment AND r.asset = k.asset \
                  AND r.kind = 'posture' ORDER BY r.finished_at DESC LIMIT 1) AS detail \
             FROM keys k",
            self.keys_source()
        );
        let rows: Vec<(String, String, Option<String>)> = with_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(statement.clone()))
                .bind(keys.as_str())
                .fetch_all(pool)
                .await?
        });
        let mut details = HashMap::new();
        for (environment, asset, text) in rows {
            if let Some(text) = text {
                details.insert((environment, asset), parse_json("results.detail", &text)?);
            }
        }
        Ok(details)
    }

    /// The latest posture scan of each of `assets` that has had one: when it finished and what
    /// it found (one index probe per asset).
    pub async fn latest_posture_scans(
        &self,
        assets: &[AssetKey],
    ) -> Result<HashMap<AssetKey, (DateTime<Utc>, Vec<lifeboat_shared::findings::Finding>)>, StoreError> {
        if assets.is_empty() {
            return Ok(HashMap::new());
        }
        let keys = keys_json(assets)?;
        let latest = "FROM results r WHERE r.environment = k.environment AND r.asset = k.asset AND r.kind = 'posture' \
                      ORDER BY r.finished_at DESC LIMIT 1";
        let statement = format!(
            "WITH keys AS ({}) SELECT k.environment, k.asset, (SELECT r.finished_at {latest}) AS finished_at, \
             (SELECT r.findings {latest}) AS findings FROM keys k",
            self.keys_source()
        );
        let rows: Vec<(String, String, Option<i64>, Option<String>)> = with_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(statement.clone()))
                .bind(keys.as_str())
                .fetch_all(pool)
                .await?
        });
        let mut scans = HashMap::new();
        for (environment, asset, finished_at, findings) in rows {
            if let (Some(finished_at), Some(findings)) = (finished_at, findings) {
                let findings = serde_json::from_str(&findings)
                    .map_err(|err| StoreError::Corrupt(format!("results.findings: {err}")))?;
                scans.insert(
                    (environment, asset),
                    (from_millis("results.finished_at", finished_at)?, findings),
                );
            }
        }
        Ok(scans)
    }

    /// The verdicts of `assets` that have one.
    pub async fn verdicts_of(&self, assets: &[AssetKey]) -> Result<HashMap<AssetKey, VerdictRecord>, StoreError> {
        let mut verdicts = HashMap::new();
        if assets.len() <= VERDICTS_ONE_BY_ONE {
            for (environment, asset) in assets {
                if let Some(verdict) = self.verdict(environment, asset).await? {
                    verdicts.insert((environment.clone(), asset.clone()), verdict);
                }
            }
            return Ok(verdicts);
        }
        let wanted: std::collections::HashSet<&AssetKey> = assets.iter().collect();
        for verdict in self.verdicts(None).await? {
            let key = (verdict.environment.clone(), verdict.asset.clone());
            if wanted.contains(&key) {
                verdicts.insert(key, verdict);
            }
        }
        Ok(verdicts)
    }
}
