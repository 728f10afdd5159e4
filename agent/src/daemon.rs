//! `lifeboat-agent run`: the daemon. Opens the spool, then runs the session and the certificate
//! renewal side by side until SIGTERM or a fatal error (revoked, re-enrollment needed).

use std::time::Duration;

use anyhow::Context as _;
use lifeboat_shared::protocol::Hello;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::identity::IdentityStore;
use crate::reconnect::ReconnectPolicy;
use crate::session::{AgentSession, SessionSettings};
use crate::spool::Spool;

/// Sent but unacknowledged results are sent again after this long.
pub const RESEND_AFTER: Duration = Duration::from_secs(30);

/// The Hello this agent sends.
pub fn hello() -> Hello {
    Hello {
        agent_version: lifeboat_shared::VERSION.to_owned(),
        hostname: crate::capabilities::hostname(),
        capabilities: crate::capabilities::detect(),
    }
}

/// Runs the daemon until `shutdown`.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    lifeboat_shared::tls::install_crypto_provider();
    let identity = IdentityStore::Dir(config.agent.identity_dir.clone());
    let current = identity.load()?;
    current.ensure_valid()?;
    let spool_dir = config.agent.work_dir.join("spool");
    let spool = Spool::open(&spool_dir).with_context(|| format!("open the spool in {}", spool_dir.display()))?;
    tracing::info!(
        agent_id = %current.agent_id,
        environment = %current.environment,
        spooled = spool.len(),
        "agent starting"
    );

    let session = AgentSession {
        settings: SessionSettings {
            coordinator: config.agent.coordinator.clone(),
            hello: hello(),
            inventory: config.inventory(),
            reconnect: ReconnectPolicy::default(),
            resend_after: RESEND_AFTER,
        },
        identity: identity.clone(),
        spool,
        events: None,
    };
    let stop = shutdown.child_token();
    let renewal = crate::renewal::run(config.agent.coordinator.clone(), identity, stop.clone());
    let session = session.run(stop.clone());
    tokio::pin!(renewal, session);
    let outcome = tokio::select! {
        ended = &mut session => ended,
        ended = &mut renewal => match ended {
            Ok(()) => session.await,
            Err(err) => Err(err),
        },
    };
    stop.cancel();
    outcome.context("agent stopped")?;
    tracing::info!("agent stopped");
    Ok(())
}
