//! An in-process coordinator on 127.0.0.1:0 with a temporary data directory (SQLite by
//! default), plus simulated agents: real enrollment, real mTLS sessions, spools on disk.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeboat_agent::enroll::{self, EnrollRequest};
use lifeboat_agent::identity::{Identity, IdentityStore};
use lifeboat_agent::reconnect::ReconnectPolicy;
use lifeboat_agent::session::{AgentSession, SessionError, SessionEvent, SessionSettings};
use lifeboat_agent::spool::Spool;
use lifeboat_coordinator::admin::{self, CreatedToken};
use lifeboat_coordinator::ca::CertificateAuthority;
use lifeboat_coordinator::config::Config;
use lifeboat_coordinator::server::Coordinator;
use lifeboat_coordinator::store::Store;
use lifeboat_shared::ids::Environment;
use lifeboat_shared::protocol::{Capabilities, Hello, Inventory};
use lifeboat_shared::tls::CaPin;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Builds the text of a coordinator config for tests.
pub fn coordinator_config_text(
    listen: SocketAddr,
    data_dir: &Path,
    database_url: Option<&str>,
    cert_ttl: &str,
) -> String {
    let database = database_url.map_or(String::new(), |url| format!("[database]\nurl = \"{url}\"\n"));
    format!(
        "listen = \"{listen}\"\nhttp_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nserver_names = [\"127.0.0.1\", \"localhost\"]\nshutdown_grace = \"5s\"\n{database}[agents]\ncertificate_ttl = \"{cert_ttl}\"\nheartbeat_interval = \"1s\"\nlast_seen_flush = \"1s\"\noffline_after = \"5s\"\n",
        data_dir.display()
    )
}

/// Options of a test coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    pub certificate_ttl: String,
    pub database_url: Option<String>,
    /// More config sections (channels, routes, schedule, alerts), appended.
    pub extra_config: String,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            certificate_ttl: "1h".into(),
            database_url: None,
            extra_config: String::new(),
        }
    }
}

/// A coordinator serving in this process.
pub struct TestCoordinator {
    pub address: SocketAddr,
    pub url: String,
    pub store: Store,
    pub ca: Arc<CertificateAuthority>,
    pub config: Config,
    pub data_dir: TempDir,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestCoordinator {
    pub async fn start() -> Self {
        Self::start_with(CoordinatorOptions::default()).await
    }

    pub async fn start_with(options: CoordinatorOptions) -> Self {
        lifeboat_shared::tls::install_crypto_provider();
        let data_dir = tempfile::tempdir().expect("data dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mut text = coordinator_config_text(
            address,
            data_dir.path(),
            options.database_url.as_deref(),
            &options.certificate_ttl,
        );
        text.push_str(&options.extra_config);
        let config = Config::parse(Path::new("test-coordinator.toml"), &text).expect("config");
        let coordinator = Coordinator::prepare(config.clone()).await.expect("prepare");
        let store = coordinator.store().clone();
        let ca = coordinator.ca().clone();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(coordinator.serve(listener, shutdown.clone()));
        Self {
            url: format!("https://127.0.0.1:{}", address.port()),
            address,
            store,
            ca,
            config,
            data_dir,
            shutdown,
            server: Some(server),
        }
    }

    pub fn pin(&self) -> CaPin {
        self.ca.pin()
    }

    /// Creates a join token for `environment`.
    pub async fn token(&self, environment: &str, uses: u32) -> CreatedToken {
        self.token_with_ttl(environment, uses, Duration::from_secs(3600)).await
    }

    pub async fn token_with_ttl(&self, environment: &str, uses: u32, ttl: Duration) -> CreatedToken {
        admin::create_token(
            &self.store,
            &self.ca,
            &self.url,
            Environment::parse(environment).expect("environment"),
            ttl,
            uses,
        )
        .await
        .expect("token")
    }

    /// The enroll request for `token`.
    pub fn enroll_request(&self, token: &CreatedToken, name: &str) -> EnrollRequest {
        EnrollRequest {
            coordinator: self.url.clone(),
            token: token.token.clone(),
            ca_pin: self.pin(),
            name: name.to_owned(),
            environment: None,
        }
    }

    /// Enrolls a simulated agent with a fresh key; returns its in-memory identity.
    pub async fn enroll(&self, environment: &str, name: &str) -> Identity {
        let token = self.token(environment, 1).await;
        enroll::enroll_in_memory(&self.enroll_request(&token, name))
            .await
            .expect("enroll")
    }

    /// Lists agents as `agents list` does.
    pub async fn agents(&self) -> Vec<admin::AgentView> {
        admin::list_agents(&self.store, self.config.agents.offline_after.into())
            .await
            .expect("list agents")
    }

    /// Shuts down gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("coordinator stopped cleanly");
        }
    }
}

impl Drop for TestCoordinator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A simulated agent: the real session loop, in this process.
pub struct SimAgent {
    pub identity: IdentityStore,
    pub spool: Spool,
    /// Session events, stamped with the moment they happened.
    pub events: mpsc::UnboundedReceiver<(tokio::time::Instant, SessionEvent)>,
    shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), SessionError>>,
    _spool_dir: TempDir,
}

impl SimAgent {
    /// Starts the session loop for `identity` against `url`.
    pub fn spawn(url: &str, identity: Identity) -> Self {
        Self::spawn_with(url, identity, ReconnectPolicy::default(), Inventory::default())
    }

    pub fn spawn_with(url: &str, identity: Identity, reconnect: ReconnectPolicy, inventory: Inventory) -> Self {
        let spool_dir = tempfile::tempdir().expect("spool dir");
        let spool = Spool::open(spool_dir.path()).expect("spool");
        let identity = IdentityStore::Memory(Arc::new(Mutex::new(identity)));
        let (events_tx, mut raw_events) = mpsc::unbounded_channel::<SessionEvent>();
        let (stamped_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(event) = raw_events.recv().await {
                if stamped_tx.send((tokio::time::Instant::now(), event)).is_err() {
                    return;
                }
            }
        });
        let session = AgentSession {
            settings: SessionSettings {
                coordinator: url.to_owned(),
                hello: Hello {
                    agent_version: lifeboat_shared::VERSION.to_owned(),
                    hostname: "sim-host".into(),
                    capabilities: Capabilities {
                        postgres_majors: vec![15],
                        restic: false,
                        sqlite: true,
                        features: vec![],
                    },
                },
                inventory,
                reconnect,
                resend_after: Duration::from_secs(5),
            },
            identity: identity.clone(),
            spool: spool.clone(),
            events: Some(events_tx),
            outbox: None,
        };
        let shutdown = CancellationToken::new();
        // Like the daemon: the session and certificate renewal side by side.
        let renewal = lifeboat_agent::renewal::run(url.to_owned(), identity.clone(), shutdown.clone());
        let session = session.run(shutdown.clone());
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            tokio::pin!(renewal, session);
            let outcome = tokio::select! {
                ended = &mut session => ended,
                ended = &mut renewal => match ended {
                    Ok(()) => session.await,
                    Err(err) => Err(err),
                },
            };
            stop.cancel();
            outcome
        });
        Self {
            identity,
            spool,
            events,
            shutdown,
            task,
            _spool_dir: spool_dir,
        }
    }

    /// Waits for the next event matching `pick`.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&SessionEvent) -> Option<T>,
    ) -> Option<T> {
        self.wait_for_stamped(timeout, |_, event| pick(event)).await
    }

    /// Like [`Self::wait_for`], with the moment each event happened.
    pub async fn wait_for_stamped<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(tokio::time::Instant, &SessionEvent) -> Option<T>,
    ) -> Option<T> {
        tokio::time::timeout(timeout, async {
            while let Some((at, event)) = self.events.recv().await {
                if let Some(found) = pick(at, &event) {
                    return Some(found);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    pub async fn connected(&mut self, timeout: Duration) -> bool {
        self.wait_for(timeout, |event| {
            matches!(event, SessionEvent::Connected { .. }).then_some(())
        })
        .await
        .is_some()
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Stops the session and waits for its loop to end; returns how it ended.
    pub async fn join(mut self) -> Result<(), SessionError> {
        self.shutdown.cancel();
        (&mut self.task).await.expect("session task panicked")
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
