//! Enrolled agents: connection state, last-seen times, revocation, and their latest inventory.
//!
//! Several coordinator replicas may share one database, so connection state records which
//! replica (`instance`) holds an agent's session: a replica only clears the flag for sessions it
//! owns, and last-seen times only move forward whichever replica writes them.

use chrono::{DateTime, Utc};
use lifeboat_shared::ids::{AgentId, Environment};
use serde::Serialize;
use uuid::Uuid;

use super::{
    Store, StoreError, from_millis, from_optional_millis, is_foreign_key_violation, parse_environment, parse_json,
    to_millis,
};

/// An enrolled agent, as the operator commands and the scheduler see it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRecord {
    pub id: AgentId,
    pub name: String,
    pub environment: Environment,
    /// From the agent's last Hello; `None` until it first connects.
    pub hostname: Option<String>,
    pub version: Option<String>,
    /// The capabilities announced in the last Hello (`null` until it first connects).
    pub capabilities: serde_json::Value,
    /// Whether a coordinator replica currently holds a session with the agent.
    pub connected: bool,
    pub last_seen: Option<DateTime<Utc>>,
    pub cert_not_after: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    name: String,
    environment: String,
    hostname: Option<String>,
    version: Option<String>,
    capabilities: String,
    connected: bool,
    last_seen: Option<i64>,
    cert_not_after: Option<i64>,
    revoked_at: Option<i64>,
    created_at: i64,
}

impl TryFrom<AgentRow> for AgentRecord {
    type Error = StoreError;

    fn try_from(row: AgentRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: AgentId(row.id),
            name: row.name,
            environment: parse_environment(&row.environment)?,
            hostname: row.hostname,
            version: row.version,
            capabilities: parse_json("agents.capabilities", &row.capabilities)?,
            connected: row.connected,
            last_seen: from_optional_millis("agents.last_seen", row.last_seen)?,
            cert_not_after: from_optional_millis("agents.cert_not_after", row.cert_not_after)?,
            revoked_at: from_optional_millis("agents.revoked_at", row.revoked_at)?,
            created_at: from_millis("agents.created_at", row.created_at)?,
        })
    }
}

const SELECT_AGENT: &str = "SELECT id, name, environment, hostname, version, capabilities, connected, last_seen, \
     cert_not_after, revoked_at, created_at FROM agents WHERE id = $1";

const SELECT_AGENTS: &str = "SELECT id, name, environment, hostname, version, capabilities, connected, last_seen, \
     cert_not_after, revoked_at, created_at FROM agents ORDER BY environment, name, id";

const MARK_CONNECTED: &str = "UPDATE agents SET connected = TRUE, connected_instance = $2, hostname = $3, \
     version = $4, capabilities = $5, \
     last_seen = CASE WHEN last_seen IS NULL OR last_seen < $6 THEN $6 ELSE last_seen END \
     WHERE id = $1";

const MARK_DISCONNECTED: &str = "UPDATE agents SET connected = FALSE, connected_instance = NULL, \
     last_seen = CASE WHEN last_seen IS NULL OR last_seen < $3 THEN $3 ELSE last_seen END \
     WHERE id = $1 AND connected_instance = $2";

const TOUCH_AGENT: &str = "UPDATE agents SET last_seen = $2 WHERE id = $1 AND (last_seen IS NULL OR last_seen < $2)";

const REVOKE_AGENT: &str = "UPDATE agents SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1";

const SELECT_REVOKED: &str = "SELECT id FROM agents WHERE revoked_at IS NOT NULL ORDER BY id";

const UPSERT_INVENTORY: &str = "INSERT INTO agent_inventories (agent_id, inventory, reported_at) VALUES ($1, $2, $3) \
     ON CONFLICT (agent_id) DO UPDATE SET inventory = excluded.inventory, reported_at = excluded.reported_at";

const SELECT_INVENTORY: &str = "SELECT inventory FROM agent_inventories WHERE agent_id = $1";

impl Store {
    /// Returns the agent with this id, if it exists.
    pub async fn agent(&self, id: AgentId) -> Result<Option<AgentRecord>, StoreError> {
        let row: Option<AgentRow> = with_pool!(self, |pool| {
            sqlx::query_as(SELECT_AGENT).bind(id.0).fetch_optional(pool).await?
        });
        row.map(AgentRecord::try_from).transpose()
    }

    /// Returns every agent, ordered by environment, then name.
    pub async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows: Vec<AgentRow> = with_pool!(self, |pool| sqlx::query_as(SELECT_AGENTS).fetch_all(pool).await?);
        rows.into_iter().map(AgentRecord::try_from).collect()
    }

    /// Records that replica `instance` holds a session with the agent, and what its Hello said.
    ///
    /// `last_seen` becomes `now` unless it is already later. Fails with
    /// [`StoreError::AgentNotFound`] if the agent does not exist.
    pub async fn mark_connected(
        &self,
        id: AgentId,
        hostname: &str,
        version: &str,
        capabilities: &serde_json::Value,
        instance: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let capabilities = capabilities.to_string();
        let updated = with_pool!(self, |pool| {
            sqlx::query(MARK_CONNECTED)
                .bind(id.0)
                .bind(instance)
                .bind(hostname)
                .bind(version)
                .bind(capabilities.as_str())
                .bind(to_millis(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::AgentNotFound(id));
        }
        Ok(())
    }

    /// Records that the session replica `instance` held has ended.
    ///
    /// Does nothing (and returns false) when another replica now holds the agent's session, so
    /// that a reconnect elsewhere is not undone by the old replica noticing the disconnect late.
    pub async fn mark_disconnected(&self, id: AgentId, instance: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let updated = with_pool!(self, |pool| {
            sqlx::query(MARK_DISCONNECTED)
                .bind(id.0)
                .bind(instance)
                .bind(to_millis(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(updated > 0)
    }

    /// Records last-seen times for many agents in one transaction. A time earlier than the stored
    /// one is ignored; unknown agents are skipped.
    pub async fn touch_agents(&self, seen: &[(AgentId, DateTime<Utc>)]) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            for (id, at) in seen {
                sqlx::query(TOUCH_AGENT)
                    .bind(id.0)
                    .bind(to_millis(*at))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Revokes an agent: its certificate is refused from now on. Revoking twice keeps the first
    /// revocation time. Fails with [`StoreError::AgentNotFound`] if the agent does not exist.
    pub async fn revoke_agent(&self, id: AgentId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let updated = with_pool!(self, |pool| {
            sqlx::query(REVOKE_AGENT)
                .bind(id.0)
                .bind(to_millis(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::AgentNotFound(id));
        }
        Ok(())
    }

    /// Returns the ids of every revoked agent.
    pub async fn revoked_agents(&self) -> Result<Vec<AgentId>, StoreError> {
        let ids: Vec<Uuid> = with_pool!(self, |pool| sqlx::query_scalar(SELECT_REVOKED).fetch_all(pool).await?);
        Ok(ids.into_iter().map(AgentId).collect())
    }

    /// Replaces the agent's stored inventory with this one. Fails with
    /// [`StoreError::AgentNotFound`] if the agent does not exist.
    pub async fn save_inventory(
        &self,
        id: AgentId,
        inventory: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let inventory = inventory.to_string();
        let saved = with_pool!(self, |pool| {
            sqlx::query(UPSERT_INVENTORY)
                .bind(id.0)
                .bind(inventory.as_str())
                .bind(to_millis(now))
                .execute(pool)
                .await
                .map(|_| ())
        });
        match saved {
            Ok(_) => Ok(()),
            Err(err) if is_foreign_key_violation(&err) => Err(StoreError::AgentNotFound(id)),
            Err(err) => Err(err.into()),
        }
    }

    /// The latest inventory of every agent that is not revoked: (agent, environment, inventory).
    pub async fn inventories(&self) -> Result<Vec<(AgentId, Environment, serde_json::Value)>, StoreError> {
        let rows: Vec<(Uuid, String, String)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT a.id, a.environment, i.inventory FROM agent_inventories i JOIN agents a ON a.id = i.agent_id \
                 WHERE a.revoked_at IS NULL ORDER BY a.environment, a.id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, environment, inventory)| {
                Ok((
                    AgentId(id),
                    parse_environment(&environment)?,
                    parse_json("agent_inventories.inventory", &inventory)?,
                ))
            })
            .collect()
    }

    /// Returns the latest inventory the agent reported, if any.
    pub async fn inventory(&self, id: AgentId) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = with_pool!(self, |pool| {
            sqlx::query_scalar(SELECT_INVENTORY)
                .bind(id.0)
                .fetch_optional(pool)
                .await?
        });
        text.map(|text| parse_json("agent_inventories.inventory", &text))
            .transpose()
    }
}
