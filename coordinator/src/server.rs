//! Wiring of the running coordinator: store, CA, TLS, gRPC services and background tasks, and
//! the shutdown order (stop ingress and cut sessions, let background tasks finish their
//! in-flight writes under a deadline, close the store).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lifeboat_shared::tls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ca::CertificateAuthority;
use crate::config::Config;
use crate::grpc::{self, AgentApi, EnrollmentApi};
use crate::ingest::ResultIngestor;
use crate::revocation::{self, Revocations};
use crate::sessions::{self, SessionRegistry};
use crate::store::Store;

/// A coordinator ready to serve: everything that can fail on bad configuration has been done.
pub struct Coordinator {
    config: Config,
    store: Store,
    ca: Arc<CertificateAuthority>,
    tls: Arc<rustls::ServerConfig>,
}

impl Coordinator {
    /// Opens the store (running migrations), loads or creates the CA and issues the server
    /// certificate. Binds nothing.
    pub async fn prepare(config: Config) -> anyhow::Result<Self> {
        tls::install_crypto_provider();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data directory {}", config.data_dir.display()))?;
        let store = Store::connect(&config.database_url()).await.context("open the store")?;
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
        let Self { config, store, ca, tls } = self;
        let instance = uuid::Uuid::new_v4().to_string();
        let sessions = SessionRegistry::new(instance);
        let revocations = Revocations::default();
        revocation::load(&store, &revocations)
            .await
            .context("load revoked agents")?;

        let tasks = TaskTracker::new();
        let background = CancellationToken::new();
        let ingestor = ResultIngestor::spawn(store.clone(), &tasks, background.clone());
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
        let server = grpc::serve(listener, tls, enrollment, agents, shutdown.clone());
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

/// Runs `serve` from a config file path: parse, prepare, bind, serve.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listen = config.listen;
    let coordinator = Coordinator::prepare(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    coordinator.serve(listener, shutdown).await
}
