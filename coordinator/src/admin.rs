//! Operator commands that act on the store: join tokens and the agent list.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::ids::{AgentId, Environment};
use serde::Serialize;

use crate::ca::CertificateAuthority;
use crate::store::{AgentRecord, NewJoinToken, Store, StoreError};
use crate::tokens;

/// Output of `token create`.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedToken {
    pub token: String,
    pub ca_pin: String,
    pub environment: Environment,
    pub expires_at: DateTime<Utc>,
    pub uses: u32,
    /// The command to paste on the agent's machine.
    pub enroll_command: String,
}

/// Creates a join token for `environment`.
pub async fn create_token(
    store: &Store,
    ca: &CertificateAuthority,
    coordinator_url: &str,
    environment: Environment,
    ttl: Duration,
    uses: u32,
) -> Result<CreatedToken, StoreError> {
    let token = tokens::generate();
    let now = Utc::now();
    let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
    store
        .insert_join_token(&NewJoinToken {
            token_hash: tokens::hash(&token),
            environment: environment.clone(),
            expires_at,
            uses_allowed: uses,
            created_at: now,
        })
        .await?;
    let ca_pin = ca.pin().to_string();
    let enroll_command =
        format!("lifeboat-agent enroll --coordinator {coordinator_url} --token {token} --ca-pin {ca_pin}");
    Ok(CreatedToken {
        token,
        ca_pin,
        environment,
        expires_at,
        uses,
        enroll_command,
    })
}

/// One row of `agents list`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub id: AgentId,
    pub name: String,
    pub environment: Environment,
    pub connected: bool,
    pub last_seen: Option<DateTime<Utc>>,
    pub version: Option<String>,
    pub hostname: Option<String>,
    pub certificate_expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

/// Lists agents; one silent for longer than `offline_after` counts as disconnected even if its
/// coordinator died without recording it.
pub async fn list_agents(store: &Store, offline_after: Duration) -> Result<Vec<AgentView>, StoreError> {
    let now = Utc::now();
    let offline_after = chrono::Duration::from_std(offline_after).unwrap_or(chrono::Duration::minutes(1));
    Ok(store
        .list_agents()
        .await?
        .into_iter()
        .map(|agent: AgentRecord| AgentView {
            connected: agent.connected
                && agent.revoked_at.is_none()
                && agent.last_seen.is_some_and(|seen| now - seen <= offline_after),
            id: agent.id,
            name: agent.name,
            environment: agent.environment,
            last_seen: agent.last_seen,
            version: agent.version,
            hostname: agent.hostname,
            certificate_expires_at: agent.cert_not_after,
            revoked: agent.revoked_at.is_some(),
        })
        .collect())
}

/// Renders agents as an aligned table.
pub fn agents_table(agents: &[AgentView]) -> String {
    let mut out = format!(
        "{:<36}  {:<20}  {:<16}  {:<12}  {:<20}  {:<8}  {}\n",
        "ID", "NAME", "ENVIRONMENT", "STATE", "LAST SEEN", "VERSION", "CERT EXPIRES"
    );
    for agent in agents {
        let state = match (agent.revoked, agent.connected) {
            (true, _) => "revoked",
            (false, true) => "connected",
            (false, false) => "disconnected",
        };
        let time = |t: Option<DateTime<Utc>>| t.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        out.push_str(&format!(
            "{:<36}  {:<20}  {:<16}  {:<12}  {:<20}  {:<8}  {}\n",
            agent.id,
            agent.name,
            agent.environment.as_str(),
            state,
            time(agent.last_seen),
            agent.version.as_deref().unwrap_or("-"),
            time(agent.certificate_expires_at),
        ));
    }
    out
}
