//! Wiring of the running coordinator: store, CA, TLS, gRPC services and background tasks, and
//! the shutdown order (stop ingress and cut sessions, let background tasks finish their
//! in-flight writes under a deadline, close the store).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lifeboat_shared::tls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ca::CertificateAuthority;
use crate::config::{Config, LimitsConfig};
use crate::escalation::channels::Channel;
use crate::escalation::outbox::OutboxWorker;
use crate::grpc::admission::Admission;
use crate::grpc::connections::ConnectionLimits;
use crate::grpc::{self, AgentApi, EnrollmentApi};
use crate::ingest::ResultIngestor;
use crate::posture::Posture;
use crate::revocation::{self, Revocations};
use crate::scheduler::Scheduler;
use crate::sessions::{self, SessionRegistry};
use crate::store::{ResultRow, Store};

/// File descriptors kept for everything but client connections: the store, logs, listeners,
/// outgoing notifications.
const FD_RESERVE: u64 = 256;

/// Connection caps that fit in the process's open-files limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnectionBudget {
    agents: usize,
    anonymous: usize,
    http: usize,
}

impl ConnectionBudget {
    /// Fits the configured caps into `open_files` descriptors: HTTP gets at most a quarter of
    /// what is left after the reserve, agents the rest, and strangers at most half of the agents'
    /// share, so a flood of either can never take the descriptors the other needs.
    fn fit(limits: &LimitsConfig, open_files: u64) -> Self {
        let spare = open_files.saturating_sub(FD_RESERVE).max(4);
        let http = u64::from(limits.max_http_connections).min(spare / 4).max(1);
        let agents = u64::from(limits.max_connections).min(spare - http).max(1);
        let anonymous = u64::from(limits.max_anonymous_connections).min(agents / 2).max(1);
        let size = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        Self {
            agents: size(agents),
            anonymous: size(anonymous),
            http: size(http),
        }
    }

    /// Raises the soft open-files limit to the hard one, then fits the caps into it.
    fn of_this_process(limits: &LimitsConfig) -> Self {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let open_files = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, hard)) if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() => hard,
            Ok((soft, _)) => soft,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the open-files limit; assuming 1024");
                1_024
            }
        };
        let budget = Self::fit(limits, open_files);
        tracing::info!(
            open_files,
            agents = budget.agents,
            anonymous = budget.anonymous,
            http = budget.http,
            "connection caps"
        );
        if budget.agents < limits.max_connections as usize || budget.http < limits.max_http_connections as usize {
            tracing::warn!(
                open_files,
                "connection caps lowered to fit the open-files limit; raise it (LimitNOFILE=) for more agents"
            );
        }
        budget
    }
}

/// A coordinator ready to serve: everything that can fail on bad configuration has been done.
pub struct Coordinator {
    config: Config,
    store: Store,
    ca: Arc<CertificateAuthority>,
    tls: Arc<rustls::ServerConfig>,
    channels: Arc<BTreeMap<String, Channel>>,
    /// With SQLite: the lock that keeps a second replica away, held while serving.
    _replica_lock: Option<ReplicaLock>,
}

/// An exclusive lock on `<sqlite file>.lock`: SQLite serves one coordinator replica.
struct ReplicaLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl ReplicaLock {
    fn acquire(database_url: &str) -> anyhow::Result<Option<Self>> {
        let Some(path) = database_url
            .strip_prefix("sqlite://")
            .or_else(|| database_url.strip_prefix("sqlite:"))
        else {
            return Ok(None);
        };
        let path = path.split('?').next().unwrap_or(path);
        let lock_path = format!("{path}.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("open {lock_path}"))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Self { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => anyhow::bail!(
                "another coordinator is already serving the SQLite store {path}: SQLite supports one \
                 coordinator; to run several replicas, point every one at the same PostgreSQL \
                 ([database] url = \"postgres://…\")"
            ),
            Err((_, errno)) => Err(anyhow::anyhow!("lock {lock_path}: {errno}")),
        }
    }
}

impl Coordinator {
    /// Opens the store (running migrations), loads or creates the CA and issues the server
    /// certificate. Binds nothing.
    pub async fn prepare(config: Config) -> anyhow::Result<Self> {
        tls::install_crypto_provider();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data directory {}", config.data_dir.display()))?;
        let replica_lock = ReplicaLock::acquire(&config.database_url())?;
        let store = Store::connect(&config.database_url()).await.context("open the store")?;
        let mut channels = BTreeMap::new();
        for channel in &config.channel {
            let built = Channel::from_config(channel).context("configure a channel")?;
            channels.insert(built.name().to_owned(), built);
        }
        let ca = CertificateAuthority::load_or_create(&config.data_dir, &config.ca).context("load the CA")?;
        let (chain, key) = ca
            .issue_server_certificate(&config.server_names)
            .context("issue the server certificate")?;
        let tls = tls::server_config(chain, key, std::slice::from_ref(ca.cert_der())).context("configure TLS")?;
        Ok(Self {
            config,
            store,
            ca: Arc::new(ca),
            tls: Arc::new(tls),
            channels: Arc::new(channels),
            _replica_lock: replica_lock,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves agents on `listener` until `shutdown` is cancelled, then shuts down in order.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.serve_with_http(listener, None, shutdown).await
    }

    /// [`Coordinator::serve`], plus the API, status page and `/metrics` on `http` when given.
    pub async fn serve_with_http(
        self,
        listener: TcpListener,
        http: Option<TcpListener>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            store,
            ca,
            tls,
            channels,
            _replica_lock,
        } = self;
        let instance = uuid::Uuid::new_v4().to_string();
        let sessions = SessionRegistry::new(instance.clone());
        let revocations = Revocations::default();
        revocation::load(&store, &revocations)
            .await
            .context("load revoked agents")?;

        let budget = ConnectionBudget::of_this_process(&config.limits);
        let tasks = TaskTracker::new();
        let background = CancellationToken::new();
        let background_http = background.clone();
        let posture = Posture {
            store: store.clone(),
            routes: config.route.clone(),
            alerts: config.alerts.clone(),
        };
        if let Some(http) = http {
            let guard = crate::guard::Guard::new(store.clone(), &config);
            let router = http_router(&config, &store, &sessions)
                .merge(crate::guard::mcp::router(
                    guard.clone(),
                    mcp_hosts(&config),
                    background_http.child_token(),
                ))
                .layer(axum::Extension(guard));
            let limits = crate::http::HttpLimits {
                max_connections: budget.http,
                header_timeout: config.limits.http_header_timeout.into(),
                request_timeout: config.limits.http_request_timeout.into(),
            };
            tasks.spawn(async move {
                if let Err(err) = crate::http::serve(http, router, limits, background_http).await {
                    tracing::error!(error = %err, "the HTTP server stopped");
                }
            });
        }
        let wake = Arc::new(tokio::sync::Notify::new());
        let (committed_tx, committed_rx) = tokio::sync::mpsc::unbounded_channel();
        let ingestor = ResultIngestor::spawn(store.clone(), &tasks, background.clone(), Some(committed_tx));
        tasks.spawn(process_committed(
            store.clone(),
            posture.clone(),
            committed_rx,
            wake.clone(),
        ));
        tasks.spawn(evaluate_periodically(posture, background.clone()));
        tasks.spawn(
            Scheduler::new(store.clone(), sessions.clone(), config.schedule.clone())
                .with_runs_per_minute(config.limits.runs_per_minute)
                .run(background.clone()),
        );
        tasks.spawn(
            OutboxWorker {
                store: store.clone(),
                channels,
                instance,
                wake,
                max_delay: config.alerts.retry_max_delay.into(),
            }
            .run(background.clone()),
        );
        tasks.spawn(revocation::watch(
            store.clone(),
            revocations.clone(),
            sessions.clone(),
            background.clone(),
        ));
        tasks.spawn(sessions::flush_last_seen(
            store.clone(),
            sessions.clone(),
            config.agents.last_seen_flush.into(),
            background.clone(),
        ));

        let certificate_ttl: Duration = config.agents.certificate_ttl.into();
        let enrollment = EnrollmentApi {
            store: store.clone(),
            ca: ca.clone(),
            certificate_ttl,
        };
        let agents = AgentApi {
            store: store.clone(),
            ca,
            sessions: sessions.clone(),
            revocations,
            ingestor,
            certificate_ttl,
            heartbeat_interval: config.agents.heartbeat_interval.into(),
            admission: Arc::new(Admission::new(&config.limits)),
        };

        // Sessions are endless streams: cut them when shutdown starts, or the graceful
        // shutdown of the HTTP/2 server would wait for them forever.
        let cut_sessions = sessions.clone();
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            cut_sessions.cut_all(&tonic::Status::unavailable("coordinator shutting down"));
        });

        let address = listener.local_addr().context("read listen address")?;
        tracing::info!(%address, store = store.engine_name(), "coordinator serving agents");
        let grace: Duration = config.shutdown_grace.into();
        let limits = ConnectionLimits::new(budget.agents, budget.anonymous);
        let server = grpc::serve(listener, tls, enrollment, agents, limits, shutdown.clone());
        tokio::pin!(server);
        tokio::select! {
            served = &mut server => served.context("serve gRPC")?,
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "connections did not close in time");
            }
        }

        background.cancel();
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(?grace, "background tasks did not stop in time");
        }
        store.close().await;
        tracing::info!("coordinator stopped");
        Ok(())
    }
}

/// The router of the HTTP surfaces.
fn http_router(config: &Config, store: &Store, sessions: &SessionRegistry) -> axum::Router {
    let registry = sessions.clone();
    crate::http::router(crate::http::HttpState {
        store: store.clone(),
        connected_agents: Arc::new(move || registry.len()),
        public_url: config.alerts.public_url.clone(),
        public_status: config.public_status,
    })
}

/// After each committed batch: completes the runs the results answer, then re-evaluates the
/// verdict of every asset the batch touched.
async fn process_committed(
    store: Store,
    posture: Posture,
    mut committed: tokio::sync::mpsc::UnboundedReceiver<Vec<ResultRow>>,
    wake: Arc<tokio::sync::Notify>,
) {
    while let Some(mut rows) = committed.recv().await {
        // Coalesce what queued up meanwhile: one evaluation per asset.
        while let Ok(more) = committed.try_recv() {
            rows.extend(more);
        }
        let now = chrono::Utc::now();
        let mut assets = std::collections::BTreeSet::new();
        for row in &rows {
            let result = &row.result;
            if result.kind == lifeboat_shared::protocol::ResultKind::Restore {
                crate::http::record_run(result.outcome.as_str(), result.restore_seconds);
            }
            if let Some(run_id) = result.run_id
                && let Err(err) = store
                    .complete_run(
                        run_id,
                        result.result_id.0,
                        result.outcome.as_str(),
                        (row.agent_id, row.environment.as_str()),
                        now,
                    )
                    .await
            {
                tracing::warn!(%run_id, error = %err, "cannot complete a run");
            }
            assets.insert((row.environment.to_string(), result.asset.clone()));
        }
        let assets: Vec<(String, String)> = assets.into_iter().collect();
        match posture.evaluate_assets(&assets, now).await {
            Ok(flips) if !flips.is_empty() => wake.notify_one(),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "cannot evaluate verdicts; the next pass retries"),
        }
    }
}

/// The dead-man's switch and reminders: every verdict re-evaluated every `evaluate_every`.
async fn evaluate_periodically(posture: Posture, shutdown: CancellationToken) {
    let every: Duration = posture.alerts.evaluate_every.into();
    let mut ticker = tokio::time::interval(every.max(Duration::from_secs(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = chrono::Utc::now();
        if let Err(err) = posture.evaluate_all(now).await {
            tracing::warn!(error = %err, "periodic evaluation failed");
        }
        if let Err(err) = posture.remind(now).await {
            tracing::warn!(error = %err, "reminders failed");
        }
    }
}

/// Runs `serve` from a config file path: parse, prepare, bind, serve.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listen = config.listen;
    let http_listen = config.http_listen;
    let coordinator = Coordinator::prepare(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let http = TcpListener::bind(http_listen)
        .await
        .with_context(|| format!("bind {http_listen} (http_listen)"))?;
    coordinator.serve_with_http(listener, Some(http), shutdown).await
}

/// The names the MCP endpoint may be reached by: loopback, the server names and the public URL's
/// host (anything else is refused, against DNS rebinding).
fn mcp_hosts(config: &Config) -> Vec<String> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(config.server_names.iter().cloned());
    if let Some(host) = config
        .alerts
        .public_url
        .as_deref()
        .and_then(|url| url.split("://").nth(1))
        .and_then(|rest| rest.split(['/', ':']).next())
    {
        hosts.push(host.to_owned());
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_caps_fit_the_open_files_limit() {
        let limits = LimitsConfig::default();
        let roomy = ConnectionBudget::fit(&limits, 1 << 20);
        assert_eq!(
            roomy,
            ConnectionBudget {
                agents: 20_000,
                anonymous: 1_024,
                http: 1_024
            }
        );
        let tight = ConnectionBudget::fit(&limits, 1_024);
        assert!(tight.agents + tight.http + FD_RESERVE as usize <= 1_024, "{tight:?}");
        assert!(tight.anonymous <= tight.agents / 2, "{tight:?}");
        assert!(tight.http >= 1 && tight.agents >= 1);
        let starved = ConnectionBudget::fit(&limits, 10);
        assert!(starved.agents >= 1 && starved.http >= 1 && starved.anonymous >= 1);
    }
}
