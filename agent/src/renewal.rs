//! Certificate renewal: at two thirds of the certificate's life, ask the coordinator (over mTLS,
//! with the current certificate) for a new one for the same key, and write it durably before the
//! old one is dropped. Failures are retried with backoff while the certificate is still valid;
//! a revoked agent or an expired certificate ends the agent with a clear error.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeboat_proto::v1 as pb;
use lifeboat_proto::v1::agent_service_client::AgentServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::connect;
use crate::identity::{IdentityError, IdentityStore};
use crate::session::SessionError;

/// Renews `identity` whenever due, until `shutdown` or a fatal error.
pub async fn run(
    coordinator: String,
    identity: IdentityStore,
    shutdown: CancellationToken,
) -> Result<(), SessionError> {
    let mut retry_delay = Duration::from_secs(1);
    loop {
        let current = identity.load()?;
        current.ensure_valid()?;
        let wait = (current.renew_at() - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
        match renew_once(&coordinator, &identity).await {
            Ok(not_after) => {
                tracing::info!(%not_after, "certificate renewed");
                retry_delay = Duration::from_secs(1);
            }
            Err(Renewal::Fatal(err)) => return Err(err),
            Err(Renewal::Retry(reason)) => {
                let current = identity.load()?;
                current.ensure_valid()?;
                let left = (current.not_after - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                let delay = retry_delay.min(left / 4).max(Duration::from_millis(200));
                tracing::warn!(%reason, ?delay, "certificate renewal failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
                retry_delay = (retry_delay * 2).min(Duration::from_secs(60));
            }
        }
    }
}

enum Renewal {
    Retry(String),
    Fatal(SessionError),
}

impl From<IdentityError> for Renewal {
    fn from(err: IdentityError) -> Self {
        Self::Fatal(err.into())
    }
}

async fn renew_once(coordinator: &str, identity: &IdentityStore) -> Result<chrono::DateTime<Utc>, Renewal> {
    let current = identity.load()?;
    let tls = current.client_config()?;
    let channel = connect::channel(coordinator, Arc::new(tls))
        .await
        .map_err(|err| Renewal::Retry(connect::error_chain(&err)))?;
    let response = AgentServiceClient::new(channel)
        .renew(pb::RenewRequest {
            csr_pem: current.csr()?,
        })
        .await
        .map_err(|status| match status.code() {
            Code::PermissionDenied => Renewal::Fatal(SessionError::Refused(status.message().to_owned())),
            _ => Renewal::Retry(format!("{:?}: {}", status.code(), status.message())),
        })?
        .into_inner();
    let renewed = identity.replace_certificate(&response.certificate_pem)?;
    Ok(renewed.not_after)
}
