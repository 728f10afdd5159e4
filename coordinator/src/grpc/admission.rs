//! What an agent's results and inventories must pass before they are stored: the agent's
//! quotas, the protocol's validation and, for a result that names a run, who holds that run.
//!
//! A result that fails is rejected on its own with a `ResultRejected` message and the session
//! stays up: permanently (it will never pass; the agent moves it to its dead-letter folder) or
//! for a while (a quota; the agent keeps it and sends it again). An inventory that fails is
//! answered with `InventoryRejected` and the previous inventory stays in force. Ending the
//! session instead would make the agent resend the same message on every reconnect and be
//! offline for good.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_proto::v1 as pb;
use lifeboat_shared::ids::AgentId;
use lifeboat_shared::protocol::{Inventory, RunResult};
use lifeboat_shared::tls::PeerIdentity;
use prost::Message as _;

use crate::config::LimitsConfig;
use crate::quota::RateQuota;
use crate::store::{Store, StoreError};

/// Inventories one agent may send per minute (one per session is the norm).
const INVENTORIES_PER_MINUTE: u32 = 10;
/// How long an agent waits before resending a result the store could not check.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// Characters of a malformed result id echoed back.
const ECHOED_ID_CHARS: usize = 64;

/// The per-agent quotas of this replica.
#[derive(Debug)]
pub struct Admission {
    results: RateQuota<AgentId>,
    inventories: RateQuota<AgentId>,
    max_inventory_bytes: usize,
    max_tests: usize,
}

/// Why a result is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Sending it again cannot succeed.
    Permanent(String),
    /// Sending it again after `after` may succeed.
    Retry { reason: String, after: Duration },
}

impl Rejection {
    pub fn reason(&self) -> &str {
        match self {
            Self::Permanent(reason) | Self::Retry { reason, .. } => reason,
        }
    }

    /// The message that tells the agent, for the result it sent as `result_id`.
    pub fn message(&self, result_id: &str) -> pb::CoordinatorMessage {
        let (permanent, retry_after_seconds) = match self {
            Self::Permanent(_) => (true, 0),
            Self::Retry { after, .. } => (false, u32::try_from(after.as_secs().max(1)).unwrap_or(u32::MAX)),
        };
        pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::ResultRejected(pb::ResultRejected {
                result_id: result_id.chars().take(ECHOED_ID_CHARS).collect(),
                reason: self.reason().to_owned(),
                permanent,
                retry_after_seconds,
            })),
        }
    }
}

impl Admission {
    pub fn new(limits: &LimitsConfig) -> Self {
        Self {
            results: RateQuota::new(limits.results_per_minute),
            inventories: RateQuota::new(INVENTORIES_PER_MINUTE),
            max_inventory_bytes: limits.max_inventory_bytes as usize,
            max_tests: limits.max_tests as usize,
        }
    }

    /// Checks a result from `identity`: its quota, the protocol, and the run it names.
    pub async fn result(
        &self,
        store: &Store,
        identity: &PeerIdentity,
        result: pb::RunResult,
        now: DateTime<Utc>,
    ) -> Result<RunResult, Rejection> {
        self.results
            .take(&identity.agent_id, now)
            .map_err(|after| Rejection::Retry {
                reason: format!(
                    "more than {} results per minute from this agent",
                    self.results.per_minute()
                ),
                after,
            })?;
        let result = RunResult::try_from(result).map_err(|err| Rejection::Permanent(err.to_string()))?;
        check_run(store, identity, &result).await?;
        Ok(result)
    }

    /// Checks an inventory from `agent`: its quota, size, number of tests and the protocol.
    pub fn inventory(&self, agent: AgentId, inventory: pb::Inventory, now: DateTime<Utc>) -> Result<Inventory, String> {
        self.inventories.take(&agent, now).map_err(|after| {
            format!(
                "more than {INVENTORIES_PER_MINUTE} inventories per minute; send it again in {} s",
                after.as_secs()
            )
        })?;
        let bytes = inventory.encoded_len();
        if bytes > self.max_inventory_bytes {
            return Err(format!(
                "the inventory is {bytes} bytes; limits.max_inventory_bytes is {}",
                self.max_inventory_bytes
            ));
        }
        if inventory.tests.len() > self.max_tests {
            return Err(format!(
                "the inventory declares {} tests; limits.max_tests is {}",
                inventory.tests.len(),
                self.max_tests
            ));
        }
        Inventory::try_from(inventory).map_err(|err| err.to_string())
    }
}

/// A result may name a run only of its agent's environment and asset, and not one leased to
/// another agent. A run whose lease lapsed (re-queued, given up) takes the result as a result,
/// but only the lease holder completes a run ([`Store::complete_run`] checks it again).
async fn check_run(store: &Store, identity: &PeerIdentity, result: &RunResult) -> Result<(), Rejection> {
    let Some(run_id) = result.run_id else {
        return Ok(());
    };
    let run = store.run(run_id).await.map_err(|err: StoreError| {
        tracing::warn!(%run_id, error = %err, "cannot read a run to check a result");
        Rejection::Retry {
            reason: "the coordinator cannot check the run right now".into(),
            after: STORE_RETRY,
        }
    })?;
    let Some(run) = run else {
        return Err(Rejection::Permanent(format!("run {run_id} does not exist")));
    };
    if run.environment != identity.environment.as_str() {
        tracing::warn!(
            agent_id = %identity.agent_id,
            environment = %identity.environment,
            %run_id,
            run_environment = %run.environment,
            "an agent sent a result for a run of another environment"
        );
        return Err(Rejection::Permanent(format!(
            "run {run_id} does not belong to environment {}",
            identity.environment
        )));
    }
    if run.asset != result.asset {
        return Err(Rejection::Permanent(format!(
            "run {run_id} tests asset {:?}, not {:?}",
            run.asset, result.asset
        )));
    }
    if let Some(holder) = run.agent_id
        && holder != identity.agent_id
    {
        tracing::warn!(agent_id = %identity.agent_id, %run_id, %holder, "an agent sent a result for a run leased to another agent");
        return Err(Rejection::Permanent(format!("run {run_id} is leased to another agent")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_tell_the_agent_whether_to_retry() {
        let permanent = Rejection::Permanent("invalid field finding.message: longer than 16384 bytes".into());
        let Some(pb::coordinator_message::Body::ResultRejected(message)) = permanent.message("abc").body else {
            panic!("a ResultRejected");
        };
        assert!(message.permanent && message.reason.contains("finding.message"));
        let retry = Rejection::Retry {
            reason: "quota".into(),
            after: Duration::from_millis(10),
        };
        let Some(pb::coordinator_message::Body::ResultRejected(message)) = retry.message(&"x".repeat(500)).body else {
            panic!("a ResultRejected");
        };
        assert!(!message.permanent);
        assert_eq!(message.retry_after_seconds, 1, "at least a second");
        assert_eq!(message.result_id.len(), ECHOED_ID_CHARS);
    }

    #[test]
    fn inventories_beyond_the_quotas_are_refused() {
        let limits = LimitsConfig {
            max_tests: 2,
            ..LimitsConfig::default()
        };
        let admission = Admission::new(&limits);
        let agent = AgentId::new();
        let now = Utc::now();
        let test = pb::TestDecl {
            asset: "db".into(),
            schedule: "0 3 * * *".into(),
            pick: "latest".into(),
            timeout_seconds: 3_600,
            checks: Vec::new(),
        };
        let inventory = |tests: usize| pb::Inventory {
            tests: vec![test.clone(); tests],
            ..Default::default()
        };
        assert!(admission.inventory(agent, inventory(2), now).is_ok());
        let err = admission
            .inventory(agent, inventory(3), now)
            .expect_err("too many tests");
        assert!(err.contains("limits.max_tests"), "{err}");
        let mut huge = test.clone();
        huge.timeout_seconds = 1 << 62;
        let err = admission
            .inventory(
                agent,
                pb::Inventory {
                    tests: vec![huge],
                    ..Default::default()
                },
                now,
            )
            .expect_err("timeout");
        assert!(err.contains("test.timeout_seconds"), "{err}");
        for _ in 3..INVENTORIES_PER_MINUTE {
            let _ = admission.inventory(agent, inventory(1), now);
        }
        let err = admission.inventory(agent, inventory(1), now).expect_err("too often");
        assert!(err.contains("per minute"), "{err}");
    }
}
