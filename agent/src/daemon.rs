//! `lifeboat-agent run`: the daemon. Opens the spool, then runs the session and the certificate
//! renewal side by side until SIGTERM or a fatal error (revoked, re-enrollment needed).
//!
//! This is where everything the agent sends is made: the Hello, the inventory, progress and the
//! results it spools. Each goes through the [`Scrubber`] here, once, before it is spooled or
//! queued, so no secret and nothing over the protocol's limits reaches the coordinator.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lifeboat_shared::protocol::Hello;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::identity::IdentityStore;
use crate::reconnect::ReconnectPolicy;
use crate::scrub::Scrubber;
use crate::session::{AgentSession, SessionSettings};
use crate::spool::Spool;

/// The coordinator's id of the run executing now, for progress messages.
type CurrentRun = Arc<std::sync::Mutex<Option<lifeboat_shared::ids::RunId>>>;

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

/// Runs the daemon until `shutdown`; everything it sends goes through `scrubber`.
pub async fn run(config: AgentConfig, scrubber: Arc<Scrubber>, shutdown: CancellationToken) -> anyhow::Result<()> {
    lifeboat_shared::tls::install_crypto_provider();
    let (coordinator, identity_dir) = config.daemon_settings()?;
    let identity = IdentityStore::Dir(identity_dir);
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

    let (events, assignments) = tokio::sync::mpsc::unbounded_channel();
    let (progress_tx, progress_rx) = tokio::sync::mpsc::channel(64);
    let current_run: CurrentRun = Arc::default();
    let runner = crate::runner::Runner::new(
        config.clone(),
        progress_reporter(current_run.clone(), scrubber.clone(), progress_tx),
    )
    .context("prepare the restore runner")?;
    let runner = Arc::new(runner);
    let outbox = ScrubbedSpool {
        spool: spool.clone(),
        scrubber: scrubber.clone(),
    };
    let executor = tokio::spawn(execute_assignments(
        runner.clone(),
        outbox.clone(),
        assignments,
        current_run,
    ));
    let scans = tokio::spawn(posture_scans(
        runner,
        outbox,
        config.scan.interval.into(),
        shutdown.child_token(),
    ));
    let session = AgentSession {
        settings: SessionSettings {
            coordinator: coordinator.clone(),
            hello: scrubber.hello(hello()),
            inventory: scrubber.inventory(config.inventory()),
            reconnect: ReconnectPolicy::default(),
            resend_after: RESEND_AFTER,
        },
        identity: identity.clone(),
        spool,
        events: Some(events),
        outbox: Some(Arc::new(tokio::sync::Mutex::new(progress_rx))),
    };
    let stop = shutdown.child_token();
    let renewal = crate::renewal::run(coordinator, identity, stop.clone());
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
    executor.abort();
    scans.abort();
    outcome.context("agent stopped")?;
    tracing::info!("agent stopped");
    Ok(())
}

/// Logs the progress of runs and, while a run assigned by the coordinator executes, queues it
/// (scrubbed) for the session to send.
fn progress_reporter(
    current_run: CurrentRun,
    scrubber: Arc<Scrubber>,
    outbox: tokio::sync::mpsc::Sender<lifeboat_proto::v1::AgentMessage>,
) -> Box<dyn Fn(crate::runner::Progress) + Send + Sync> {
    Box::new(move |progress: crate::runner::Progress| {
        tracing::info!(asset = %progress.asset, phase = %progress.phase, "run progress");
        let Some(run_id) = current_run.lock().ok().and_then(|run| *run) else {
            return;
        };
        let progress = scrubber.progress(lifeboat_shared::protocol::RunProgress {
            run_id,
            phase: progress.phase,
            bytes_done: progress.bytes_done,
            bytes_total: progress.bytes_total,
            objects_done: 0,
            elapsed_seconds: progress.elapsed.as_secs_f64(),
        });
        let message = lifeboat_proto::v1::AgentMessage {
            body: Some(lifeboat_proto::v1::agent_message::Body::Progress(progress.into())),
        };
        // Progress is best effort: a full queue drops it.
        let _full = outbox.try_send(message);
    })
}

/// The spool, entered only through the scrubber: the one door of results out of the agent.
#[derive(Debug, Clone)]
struct ScrubbedSpool {
    spool: Spool,
    scrubber: Arc<Scrubber>,
}

impl ScrubbedSpool {
    /// Scrubs and bounds `result`, then spools it; a failure is logged (the result is lost, as
    /// a result that cannot be written would be).
    async fn put(&self, result: lifeboat_shared::protocol::RunResult) {
        let result = self.scrubber.result(result);
        if let Err(err) = self.spool.put(&result).await {
            tracing::error!(error = %err, asset = %result.asset, "cannot spool a result");
        }
    }
}

/// Runs a posture scan (inventory, locations, credentials; no restore) now and every
/// `interval`, and spools one posture result per asset, so a new exposure or a vanished backup
/// reaches the coordinator within minutes rather than at the next restore test.
async fn posture_scans(
    runner: Arc<crate::runner::Runner>,
    outbox: ScrubbedSpool,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_secs(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let assessment = runner.posture().await;
        tracing::info!(
            assets = assessment.assets.len(),
            credentials = assessment.credentials.len(),
            files = assessment.discovery.files_scanned,
            "posture scan finished"
        );
        for asset in &assessment.assets {
            outbox.put(crate::posture::posture_result(asset, &assessment)).await;
        }
    }
}

/// Runs the tests the coordinator assigns, one at a time, and spools their results (the session
/// sends them and deletes them once acknowledged).
async fn execute_assignments(
    runner: Arc<crate::runner::Runner>,
    outbox: ScrubbedSpool,
    mut events: tokio::sync::mpsc::UnboundedReceiver<crate::session::SessionEvent>,
    current_run: CurrentRun,
) {
    while let Some(event) = events.recv().await {
        let crate::session::SessionEvent::Assignment(assignment) = event else {
            continue;
        };
        let Some(asset) = runner.config.asset.iter().find(|asset| {
            *asset.name.get_ref() == assignment.asset && runner.config.tests_of(asset.name.get_ref()).next().is_some()
        }) else {
            tracing::warn!(asset = %assignment.asset, "assigned a run for an asset this agent does not test");
            continue;
        };
        let run_id = lifeboat_shared::ids::RunId::parse(&assignment.run_id).ok();
        if let Ok(mut current) = current_run.lock() {
            *current = run_id;
        }
        let assessment = runner.posture().await;
        let report = runner.run_asset(asset, assessment.asset(&assignment.asset)).await;
        if let Ok(mut current) = current_run.lock() {
            *current = None;
        }
        outbox.put(report.to_result(run_id)).await;
    }
}
