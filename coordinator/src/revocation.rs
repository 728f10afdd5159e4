//! Revoked agents, kept in memory and refreshed from the store every second.
//!
//! `agents revoke` may run in another process (or on another replica) and only writes the store;
//! the watcher notices within a second, remembers the id for every later RPC check, and cuts the
//! agent's live session through the [`SessionRegistry`].

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use lifeboat_shared::ids::AgentId;
use tokio_util::sync::CancellationToken;

use crate::sessions::SessionRegistry;
use crate::store::Store;

/// How often the store is polled for new revocations.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The set of revoked agents known to this process.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    revoked: Arc<RwLock<HashSet<AgentId>>>,
}

impl Revocations {
    pub fn is_revoked(&self, agent_id: AgentId) -> bool {
        self.revoked.read().map(|set| set.contains(&agent_id)).unwrap_or(true)
    }

    /// Replaces the set; returns the ids that are new.
    fn replace(&self, ids: Vec<AgentId>) -> Vec<AgentId> {
        let Ok(mut set) = self.revoked.write() else {
            return Vec::new();
        };
        let fresh = ids.iter().filter(|id| !set.contains(id)).copied().collect();
        set.extend(ids);
        fresh
    }

    /// Marks one agent revoked immediately (the revoking process itself).
    pub fn insert(&self, agent_id: AgentId) {
        if let Ok(mut set) = self.revoked.write() {
            set.insert(agent_id);
        }
    }
}

/// Loads the revoked set once; call before accepting connections.
pub async fn load(store: &Store, revocations: &Revocations) -> Result<(), crate::store::StoreError> {
    revocations.replace(store.revoked_agents().await?);
    Ok(())
}

/// Polls the store and cuts sessions of newly revoked agents until `shutdown`.
pub async fn watch(store: Store, revocations: Revocations, sessions: SessionRegistry, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store.revoked_agents().await {
            Ok(ids) => {
                for agent_id in revocations.replace(ids) {
                    tracing::warn!(%agent_id, "agent revoked; cutting its session");
                    sessions.cut(
                        agent_id,
                        tonic::Status::permission_denied(format!("agent {agent_id} has been revoked")),
                    );
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot refresh revoked agents"),
        }
    }
}
