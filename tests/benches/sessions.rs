//! The benchmark of the "Foundation" issue: simulated agents over real mutual-TLS sessions
//! against one `lifeboat-coordinator serve` process, and results ingested per second on SQLite
//! and PostgreSQL.
//!
//! Performance is measured here, never asserted: every figure is printed next to a baseline
//! measured in the same run (the idle coordinator's RSS, the heartbeat round trip with a single
//! session, a single-row-per-transaction insert) and next to the aim of the issue. The bench
//! fails only when it cannot run at all.
//!
//! ```text
//! cargo build --release --workspace && cargo bench -p lifeboat-tests --bench sessions
//! LIFEBOAT_BENCH_AGENTS=200 cargo bench -p lifeboat-tests --bench sessions    # smoke run
//! ```
//!
//! The coordinator runs as the release binary next to this bench's `deps/` directory, so the
//! workspace must be built in the release profile first (`cargo bench -p lifeboat-tests` builds
//! only this package's targets).
//!
//! # Phases
//!
//! 1. Sessions (SQLite store, heartbeat every second as in the test config): enroll every agent
//!    with its own key and certificate through the real enrollment RPC; measure the heartbeat
//!    round trip with one session, then connect all of them (at most
//!    `LIFEBOAT_BENCH_CONNECT_CONCURRENCY` handshakes at once) and measure it again, with the
//!    coordinator's RSS and CPU. Restart the coordinator gracefully (SIGTERM) and time how long
//!    every agent takes to come back with its own backoff.
//! 2. The same fleet after a crash (SIGKILL) and restart into the production defaults (heartbeat
//!    every 15 s): reconnect time, round trip, and RSS per session in a fresh process.
//! 3. Ingest, on SQLite and on PostgreSQL: `LIFEBOAT_BENCH_SENDERS` sessions each send their share
//!    of `LIFEBOAT_BENCH_RESULTS` results, keeping as many unacknowledged as the agent does; the
//!    rate counts results the coordinator committed and acknowledged. This phase lifts the
//!    per-agent quota (`[limits] results_per_minute`, 600 by default), which would otherwise pace
//!    each sender; the sessions phases run with every default limit. The store is also driven
//!    directly, one row per transaction (the naive baseline) and in batches of 512 (the ceiling).
//!
//! The simulated agents run the agent's own session loop ([`AgentSession`]: Hello, inventory,
//! heartbeats, reconnect with full jitter) in this process, one task and one TLS connection each.
//! They share one empty spool: none of them produces results, so the spool only answers `len()`.
//! The result senders are leaner: they write results straight onto the session stream, so the
//! rate measures the coordinator and not the agents' spool files.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use futures::StreamExt as _;
use lifeboat_agent::connect;
use lifeboat_agent::enroll::{self, EnrollRequest};
use lifeboat_agent::identity::{Identity, IdentityStore};
use lifeboat_agent::reconnect::ReconnectPolicy;
use lifeboat_agent::session::{AgentSession, SessionEvent, SessionSettings};
use lifeboat_agent::spool::Spool;
use lifeboat_coordinator::store::{ResultRow, Store};
use lifeboat_proto::v1 as pb;
use lifeboat_proto::v1::agent_service_client::AgentServiceClient;
use lifeboat_shared::MAX_MESSAGE_BYTES;
use lifeboat_shared::ids::{AgentId, Environment};
use lifeboat_shared::protocol::{Capabilities, Hello, Inventory, Outcome, RunResult};
use lifeboat_shared::tls::CaPin;
use lifeboat_tests::postgres::PgCluster;
use lifeboat_tests::processes::{CoordinatorProcess, free_port};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use sqlx::Connection as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Environment every simulated agent enrolls into.
const ENVIRONMENT: &str = "bench";
/// File descriptors a process needs besides one per session: listener, store, logs, runtime.
const FD_HEADROOM: u64 = 1_000;
/// Rows per `insert_results` call when driving the store directly (the coordinator's batch size).
const STORE_BATCH: usize = 512;
/// Results a sender keeps unacknowledged, as the agent's session does.
const SENDER_IN_FLIGHT: usize = 1_024;
/// Longest the naive one-row-per-transaction baseline runs.
const NAIVE_BASELINE_LIMIT: Duration = Duration::from_secs(20);
/// Rows the naive baseline inserts at most.
const NAIVE_BASELINE_ROWS: usize = 5_000;
/// How long the heartbeat round trip of a single session is sampled.
const SINGLE_SESSION_WINDOW: Duration = Duration::from_secs(20);
/// Pause between "everyone is connected" and the start of a measurement window, so that the
/// window does not include the handshakes.
const SETTLE: Duration = Duration::from_secs(5);
/// Longest wait for the agents to come back after a restart (the aim is 60 s).
const RECONNECT_LIMIT: Duration = Duration::from_secs(180);
/// Longest silence from the coordinator while a sender waits for acknowledgements.
const ACK_SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// The `[agents]` timings a coordinator runs with.
#[derive(Debug, Clone, Copy)]
struct Liveness {
    label: &'static str,
    heartbeat_secs: u64,
    last_seen_flush_secs: u64,
    offline_after_secs: u64,
    /// Lift the per-agent results quota (the ingest phase).
    unthrottled_results: bool,
}

/// `tests/src/cluster.rs`: heartbeats every second, so a test sees liveness quickly.
const TEST_LIVENESS: Liveness = Liveness {
    label: "test config",
    heartbeat_secs: 1,
    last_seen_flush_secs: 1,
    offline_after_secs: 5,
    unthrottled_results: false,
};

/// The defaults of `coordinator/src/config.rs`.
const PRODUCTION_LIVENESS: Liveness = Liveness {
    label: "production defaults",
    heartbeat_secs: 15,
    last_seen_flush_secs: 5,
    offline_after_secs: 60,
    unthrottled_results: false,
};

/// The production defaults, with the per-agent results quota lifted.
const INGEST_LIVENESS: Liveness = Liveness {
    label: "production defaults, results unthrottled",
    unthrottled_results: true,
    ..PRODUCTION_LIVENESS
};

/// What to run, from the environment.
#[derive(Debug, Clone)]
struct BenchOptions {
    agents: usize,
    hold: Duration,
    results: usize,
    senders: usize,
    enroll_concurrency: usize,
    connect_concurrency: usize,
}

impl BenchOptions {
    fn from_env() -> anyhow::Result<Self> {
        let agents = env_number("LIFEBOAT_BENCH_AGENTS", 10_000)?.max(1);
        let default_results = if agents < 1_000 { 20_000 } else { 100_000 };
        Ok(Self {
            agents,
            hold: Duration::from_secs(env_number("LIFEBOAT_BENCH_HOLD_SECS", 30)?.max(1) as u64),
            results: env_number("LIFEBOAT_BENCH_RESULTS", default_results)?.max(1),
            senders: env_number("LIFEBOAT_BENCH_SENDERS", 20)?.max(1),
            enroll_concurrency: env_number("LIFEBOAT_BENCH_ENROLL_CONCURRENCY", 32)?.max(1),
            connect_concurrency: env_number("LIFEBOAT_BENCH_CONNECT_CONCURRENCY", 64)?.max(1),
        })
    }
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse()
            .with_context(|| format!("{name}={text:?} is not a number")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _already = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    lifeboat_shared::tls::install_crypto_provider();
    ensure_coordinator_built()?;
    let mut options = BenchOptions::from_env()?;
    let fd_limit = raise_fd_limit()?;
    let most_agents = usize::try_from(fd_limit.saturating_sub(FD_HEADROOM)).unwrap_or(usize::MAX);
    let wanted_agents = options.agents;
    if wanted_agents > most_agents {
        options.agents = most_agents.max(1);
    }

    println!("== Lifeboat sessions benchmark ==");
    println!(
        "machine: {} cores, {} MiB memory; open files limit {fd_limit} per process",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        meminfo_mib("MemTotal").unwrap_or(0)
    );
    if options.agents < wanted_agents {
        println!(
            "agents: {} (scaled down from {wanted_agents}: the open files hard limit is {fd_limit}, each \
             process needs one per session plus {FD_HEADROOM})",
            options.agents
        );
    } else {
        println!("agents: {}", options.agents);
    }
    println!(
        "results per store: {} over {} sessions; hold window {} s",
        options.results,
        options.senders,
        options.hold.as_secs()
    );

    let dir = tempfile::Builder::new().prefix("lifeboat-bench-").tempdir()?;
    let mut summary = Summary::default();
    sessions_bench(dir.path(), &options, &mut summary).await?;

    println!();
    println!("== Ingest: SQLite ==");
    summary.sqlite = Some(ingest_bench(&dir.path().join("ingest-sqlite"), None, &options).await?);

    println!();
    println!("== Ingest: PostgreSQL ==");
    match PgCluster::start().await {
        Ok(cluster) => {
            make_durable(&cluster).await?;
            cluster.create_database("ingest").await?;
            cluster.create_database("raw_store").await?;
            let urls = PostgresUrls {
                coordinator: cluster.url("ingest"),
                raw_store: cluster.url("raw_store"),
            };
            let figures = ingest_bench(&dir.path().join("ingest-postgres"), Some(&urls), &options).await?;
            summary.postgres = Some(figures);
        }
        Err(err) => println!("not measured: cannot start PostgreSQL: {err:#}"),
    }

    println!();
    summary.print(&options);
    Ok(())
}

/// Fails with the build command when the release coordinator binary is missing.
fn ensure_coordinator_built() -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locate the bench executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench executable lives in target/<profile>/deps")?;
    let binary = profile_dir.join("lifeboat-coordinator");
    anyhow::ensure!(
        binary.exists(),
        "{} is not built: run `cargo build --release --workspace` before `cargo bench -p lifeboat-tests --bench sessions`",
        binary.display()
    );
    Ok(())
}

/// Raises the soft open files limit to the hard limit (the coordinator child inherits it).
fn raise_fd_limit() -> anyhow::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("read the open files limit")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raise the open files limit")?;
    }
    Ok(hard)
}

// ---------------------------------------------------------------------------------------------
// Phases 1 and 2: sessions
// ---------------------------------------------------------------------------------------------

/// Runs the sessions phases and records their figures in `summary`.
async fn sessions_bench(dir: &Path, options: &BenchOptions, summary: &mut Summary) -> anyhow::Result<()> {
    let agents = options.agents;
    println!();
    println!(
        "== Sessions: {agents} agents, SQLite store, {} (heartbeat {} s, last-seen flush {} s) ==",
        TEST_LIVENESS.label, TEST_LIVENESS.heartbeat_secs, TEST_LIVENESS.last_seen_flush_secs
    );
    let mut coordinator = start_coordinator(dir, None, TEST_LIVENESS).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_fresh = coordinator_rss(&coordinator);
    println!("coordinator RSS, idle and fresh: {}", kib_text(idle_fresh));

    // Enrollment: one multi-use token, a key and a certificate per agent.
    let uses = u32::try_from(agents + agents / 10 + 10).context("too many agents for one token")?;
    let (token, pin) = coordinator.token(ENVIRONMENT, uses).await?;
    let pin = CaPin::parse(&pin)?;
    let started = Instant::now();
    let enrolled = enroll_fleet(&coordinator.url, &token, pin, agents, options.enroll_concurrency).await;
    let enroll_time = started.elapsed();
    println!(
        "enrolled {} of {agents} agents in {:.1} s ({:.0}/s, {} at once){}",
        enrolled.identities.len(),
        enroll_time.as_secs_f64(),
        rate(enrolled.identities.len(), enroll_time),
        options.enroll_concurrency,
        enrolled.failure_text()
    );
    anyhow::ensure!(!enrolled.identities.is_empty(), "no agent could enroll");
    let mut identities = enrolled.identities;
    let agents = identities.len();
    let idle_enrolled = coordinator_rss(&coordinator);
    println!(
        "coordinator RSS, idle after enrollment (baseline for RSS per session): {}",
        kib_text(idle_enrolled)
    );

    // Baseline: the heartbeat round trip of a single session.
    let fleet = Fleet::new(&coordinator.url, dir, agents)?;
    let first = identities.remove(0);
    fleet.mark_connect_start();
    fleet.spawn(0, first, None);
    let connected = fleet.wait_connected(1, Duration::from_secs(30)).await;
    anyhow::ensure!(connected == 1, "the first agent did not connect");
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.record_round_trips(true);
    tokio::time::sleep(SINGLE_SESSION_WINDOW).await;
    let single = Distribution::of(fleet.take_round_trips());
    println!(
        "heartbeat round trip, 1 session ({} s window): {single}",
        SINGLE_SESSION_WINDOW.as_secs()
    );
    summary.rtt_single = Some(single.clone());

    // All sessions, ramped: at most `connect_concurrency` handshakes in flight.
    let ramp_started = Instant::now();
    let failed_before = fleet.failed_attempts();
    fleet.mark_connect_start();
    let gate = Arc::new(Semaphore::new(options.connect_concurrency));
    let connect_limit = Duration::from_secs(300).max(Duration::from_millis(30 * agents as u64));
    let ramp = async {
        for (offset, identity) in identities.into_iter().enumerate() {
            let permit = gate.clone().acquire_owned().await?;
            fleet.spawn(offset + 1, identity, Some(permit));
        }
        anyhow::Ok(())
    };
    if tokio::time::timeout(connect_limit, ramp).await.is_err() {
        println!("not every agent was started within {} s", connect_limit.as_secs());
    }
    let left = connect_limit.saturating_sub(ramp_started.elapsed());
    // The first agent has been up since the baseline; the ramp started the others.
    fleet.wait_connected(agents - 1, left).await;
    let connected = fleet.up_count();
    let ramp_times = fleet.connect_times(ramp_started);
    println!(
        "{connected} of {agents} sessions up; the ramp (at most {} handshakes at once) connected {} more: {}; \
         failed attempts: {}",
        options.connect_concurrency,
        ramp_times.len(),
        ConnectTimes(&ramp_times),
        fleet.failed_attempts() - failed_before
    );
    println!("load average after the ramp: {}", load_average().unwrap_or_default());
    summary.connected = Some((connected, agents));

    // Hold: round trips, RSS and CPU with every session up.
    let window = fleet
        .measure_window(&coordinator, agents, options.hold, TEST_LIVENESS)
        .await;
    window.print(agents, TEST_LIVENESS, idle_enrolled, &single);
    summary.rss_per_session_test = window.rss_per_session(idle_enrolled);
    summary.hold_test = Some(window);

    // Graceful restart (SIGTERM) with every session up.
    println!();
    println!("-- restart: SIGTERM, wait for exit, start again (same config) --");
    let failed_before = fleet.failed_attempts();
    let stop_started = Instant::now();
    let exit = coordinator.terminate().await;
    let stopped = Instant::now();
    fleet.mark_connect_start();
    coordinator.restart().await?;
    let listening = Instant::now();
    println!(
        "old process exited {} in {:.1} s; new process listening {:.2} s later",
        exit.map_or("(no exit status)".to_owned(), |status| status.to_string()),
        (stopped - stop_started).as_secs_f64(),
        (listening - stopped).as_secs_f64()
    );
    let reconnected = fleet.wait_connected(agents, RECONNECT_LIMIT).await;
    let graceful = Reconnection::new(
        reconnected,
        agents,
        stop_started,
        listening,
        fleet.connect_times(listening),
        fleet.failed_attempts() - failed_before,
    );
    graceful.print();
    summary.restart_graceful = Some(graceful);

    // Crash (SIGKILL) and restart into the production defaults.
    println!();
    println!(
        "== Sessions: {agents} agents, {} (heartbeat {} s, last-seen flush {} s) ==",
        PRODUCTION_LIVENESS.label, PRODUCTION_LIVENESS.heartbeat_secs, PRODUCTION_LIVENESS.last_seen_flush_secs
    );
    println!("-- crash: SIGKILL, start again with the production defaults --");
    write_coordinator_config(&coordinator, None, PRODUCTION_LIVENESS)?;
    let failed_before = fleet.failed_attempts();
    let kill_started = Instant::now();
    coordinator.kill().await;
    fleet.mark_connect_start();
    coordinator.restart().await?;
    let listening = Instant::now();
    println!(
        "new process listening {:.2} s after SIGKILL",
        (listening - kill_started).as_secs_f64()
    );
    let reconnected = fleet.wait_connected(agents, RECONNECT_LIMIT).await;
    let crash = Reconnection::new(
        reconnected,
        agents,
        kill_started,
        listening,
        fleet.connect_times(listening),
        fleet.failed_attempts() - failed_before,
    );
    crash.print();
    summary.restart_crash = Some(crash);

    let hold = options
        .hold
        .max(Duration::from_secs(3 * PRODUCTION_LIVENESS.heartbeat_secs));
    let window = fleet
        .measure_window(&coordinator, agents, hold, PRODUCTION_LIVENESS)
        .await;
    window.print(agents, PRODUCTION_LIVENESS, idle_fresh, &single);
    summary.rss_per_session_fresh = window.rss_per_session(idle_fresh);
    summary.hold_production = Some(window);

    let fatal = fleet.stop().await;
    if !fatal.is_empty() {
        println!(
            "{} sessions ended with an error; first: {}",
            fatal.len(),
            fatal.first().map_or("", String::as_str)
        );
    }
    coordinator.kill().await;
    Ok(())
}

/// Identities of the enrolled agents, and why the others failed.
struct Enrolled {
    identities: Vec<Identity>,
    failures: HashMap<String, usize>,
}

impl Enrolled {
    fn failure_text(&self) -> String {
        if self.failures.is_empty() {
            return String::new();
        }
        let mut text = String::from("; failures:");
        for (reason, count) in &self.failures {
            text.push_str(&format!(" {count}× {reason};"));
        }
        text
    }
}

/// Enrolls `count` agents with the real enrollment RPC, `concurrency` at a time.
async fn enroll_fleet(url: &str, token: &str, pin: CaPin, count: usize, concurrency: usize) -> Enrolled {
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let outcomes: Vec<Result<Identity, String>> = futures::stream::iter(0..count)
        .map(|n| {
            let request = EnrollRequest {
                coordinator: url.to_owned(),
                token: token.to_owned(),
                ca_pin: pin,
                name: format!("bench-{n}"),
                environment: None,
            };
            let done = done.clone();
            async move {
                let mut last_error = String::new();
                for _attempt in 0..3 {
                    match tokio::time::timeout(Duration::from_secs(60), enroll::enroll_in_memory(&request)).await {
                        Ok(Ok(identity)) => {
                            let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            if finished.is_multiple_of(1_000) {
                                eprintln!("  enrolled {finished} in {:.1} s", started.elapsed().as_secs_f64());
                            }
                            return Ok(identity);
                        }
                        Ok(Err(err)) => last_error = err.to_string(),
                        Err(_) => last_error = "timed out after 60 s".to_owned(),
                    }
                }
                Err(last_error)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut enrolled = Enrolled {
        identities: Vec::with_capacity(count),
        failures: HashMap::new(),
    };
    for outcome in outcomes {
        match outcome {
            Ok(identity) => enrolled.identities.push(identity),
            Err(reason) => *enrolled.failures.entry(reason).or_default() += 1,
        }
    }
    enrolled
}

/// The simulated agents: one real [`AgentSession`] each, on one shared, empty spool.
struct Fleet {
    url: String,
    spool: Spool,
    tally: Arc<Mutex<Tally>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// What the fleet's session events added up to.
struct Tally {
    /// Whether each agent's session is up right now.
    up: Vec<bool>,
    up_count: usize,
    /// First connection of each agent since [`Fleet::mark_connect_start`].
    connected_at: Vec<Option<Instant>>,
    connected_since_mark: usize,
    disconnections: u64,
    /// Connection attempts that ended before a session was up (refused, handshake or Welcome
    /// timeout): each costs the agent a backoff delay.
    failed_attempts: u64,
    /// Heartbeat round trips, collected while `recording`.
    round_trips: Vec<Duration>,
    recording: bool,
    /// Sessions that ended with an error instead of reconnecting.
    fatal: Vec<String>,
}

impl Fleet {
    fn new(url: &str, dir: &Path, agents: usize) -> anyhow::Result<Self> {
        let spool = Spool::open(&dir.join("shared-empty-spool"))?;
        Ok(Self {
            url: url.to_owned(),
            spool,
            tally: Arc::new(Mutex::new(Tally {
                up: vec![false; agents],
                up_count: 0,
                connected_at: vec![None; agents],
                connected_since_mark: 0,
                disconnections: 0,
                failed_attempts: 0,
                round_trips: Vec::new(),
                recording: false,
                fatal: Vec::new(),
            })),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    fn tally(&self) -> MutexGuard<'_, Tally> {
        lock(&self.tally)
    }

    /// Starts agent `index`'s session loop; `gate` is released once its first attempt ended.
    fn spawn(&self, index: usize, identity: Identity, gate: Option<OwnedSemaphorePermit>) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let session = AgentSession {
            settings: SessionSettings {
                coordinator: self.url.clone(),
                hello: Hello {
                    agent_version: lifeboat_shared::VERSION.to_owned(),
                    hostname: format!("bench-host-{index}"),
                    capabilities: Capabilities {
                        postgres_majors: vec![15],
                        restic: false,
                        sqlite: true,
                        features: vec![],
                    },
                },
                inventory: Inventory::default(),
                reconnect: ReconnectPolicy::default(),
                resend_after: Duration::from_secs(5),
            },
            identity: IdentityStore::Memory(Arc::new(Mutex::new(identity))),
            spool: self.spool.clone(),
            events: Some(events_tx),
            outbox: None,
        };
        let tally = self.tally.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let watch = async {
                let mut gate = gate;
                while let Some(event) = events.recv().await {
                    let at = Instant::now();
                    let mut tally = lock(&tally);
                    match event {
                        SessionEvent::Connected { .. } => {
                            drop(gate.take());
                            tally.connected(index, at);
                        }
                        SessionEvent::Disconnected { .. } => {
                            drop(gate.take());
                            tally.disconnected(index);
                        }
                        SessionEvent::HeartbeatRoundTrip(round_trip) if tally.recording => {
                            tally.round_trips.push(round_trip);
                        }
                        _ => {}
                    }
                }
            };
            let (ended, ()) = tokio::join!(session.run(shutdown), watch);
            if let Err(err) = ended {
                lock(&tally).fatal.push(err.to_string());
            }
        });
    }

    /// Forgets first-connection times: the next connection of each agent counts.
    fn mark_connect_start(&self) {
        let mut tally = self.tally();
        tally.connected_at.iter_mut().for_each(|at| *at = None);
        tally.connected_since_mark = 0;
    }

    /// Waits until `count` agents connected since the mark, or `limit`; returns how many did.
    async fn wait_connected(&self, count: usize, limit: Duration) -> usize {
        let started = Instant::now();
        let mut next_progress = started + Duration::from_secs(10);
        loop {
            let (connected, up) = {
                let tally = self.tally();
                (tally.connected_since_mark, tally.up_count)
            };
            if connected >= count || started.elapsed() >= limit {
                return connected;
            }
            if Instant::now() >= next_progress {
                eprintln!(
                    "  {connected} of {count} connected after {:.0} s ({up} up now)",
                    started.elapsed().as_secs_f64()
                );
                next_progress += Duration::from_secs(10);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// First-connection times since the mark, relative to `origin`, sorted.
    fn connect_times(&self, origin: Instant) -> Vec<Duration> {
        let mut times: Vec<Duration> = self
            .tally()
            .connected_at
            .iter()
            .flatten()
            .map(|at| at.saturating_duration_since(origin))
            .collect();
        times.sort();
        times
    }

    /// Sessions up right now.
    fn up_count(&self) -> usize {
        self.tally().up_count
    }

    /// Connection attempts that failed so far.
    fn failed_attempts(&self) -> u64 {
        self.tally().failed_attempts
    }

    fn record_round_trips(&self, on: bool) {
        let mut tally = self.tally();
        tally.recording = on;
        tally.round_trips.clear();
    }

    fn take_round_trips(&self) -> Vec<Duration> {
        let mut tally = self.tally();
        tally.recording = false;
        std::mem::take(&mut tally.round_trips)
    }

    /// Samples round trips, RSS and CPU for `hold` after a settling pause.
    async fn measure_window(
        &self,
        coordinator: &CoordinatorProcess,
        agents: usize,
        hold: Duration,
        liveness: Liveness,
    ) -> Window {
        tokio::time::sleep(SETTLE).await;
        let pid = coordinator_pid(coordinator);
        let disconnections_before = self.tally().disconnections;
        let coordinator_cpu_before = pid.and_then(|pid| cpu_ticks(&pid.to_string()));
        let bench_cpu_before = cpu_ticks("self");
        let machine_before = machine_busy_ticks();
        let started = Instant::now();
        self.record_round_trips(true);
        tokio::time::sleep(hold).await;
        let round_trips = self.take_round_trips();
        let elapsed = started.elapsed();
        let coordinator_cores = pid
            .and_then(|pid| cpu_ticks(&pid.to_string()))
            .zip(coordinator_cpu_before)
            .map(|(after, before)| cores(after.saturating_sub(before), elapsed));
        let bench_cores = cpu_ticks("self")
            .zip(bench_cpu_before)
            .map(|(after, before)| cores(after.saturating_sub(before), elapsed));
        let machine_cores = machine_busy_ticks()
            .zip(machine_before)
            .map(|(after, before)| cores(after.saturating_sub(before), elapsed));
        let tally = self.tally();
        Window {
            hold: elapsed,
            up: tally.up_count,
            dropped: tally.disconnections - disconnections_before,
            acks_per_second: round_trips.len() as f64 / elapsed.as_secs_f64(),
            expected_per_second: agents as f64 / liveness.heartbeat_secs as f64,
            round_trips: Distribution::of(round_trips),
            coordinator_rss: coordinator_rss(coordinator),
            bench_rss: rss_kib("self"),
            coordinator_cores,
            bench_cores,
            machine_cores,
            load_average: load_average(),
        }
    }

    /// Stops every session; returns the errors of sessions that had ended on their own.
    async fn stop(self) -> Vec<String> {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(60), self.tasks.wait())
            .await
            .is_err()
        {
            println!("some sessions did not stop within 60 s");
        }
        std::mem::take(&mut self.tally().fatal)
    }
}

impl Tally {
    fn connected(&mut self, index: usize, at: Instant) {
        if !self.up[index] {
            self.up[index] = true;
            self.up_count += 1;
        }
        if self.connected_at[index].is_none() {
            self.connected_at[index] = Some(at);
            self.connected_since_mark += 1;
        }
    }

    fn disconnected(&mut self, index: usize) {
        if self.up[index] {
            self.up[index] = false;
            self.up_count -= 1;
            self.disconnections += 1;
        } else {
            self.failed_attempts += 1;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Figures of one measurement window with every session up.
#[derive(Debug, Clone)]
struct Window {
    hold: Duration,
    up: usize,
    dropped: u64,
    acks_per_second: f64,
    expected_per_second: f64,
    round_trips: Distribution,
    coordinator_rss: Option<u64>,
    bench_rss: Option<u64>,
    coordinator_cores: Option<f64>,
    bench_cores: Option<f64>,
    /// Busy cores of the whole machine: the difference to the two above is other processes.
    machine_cores: Option<f64>,
    load_average: Option<String>,
}

impl Window {
    /// RSS per session above `baseline`, in KiB.
    fn rss_per_session(&self, baseline: Option<u64>) -> Option<f64> {
        let sessions = self.up.max(1) as f64;
        self.coordinator_rss
            .zip(baseline)
            .map(|(rss, baseline)| rss.saturating_sub(baseline) as f64 / sessions)
    }

    fn print(&self, agents: usize, liveness: Liveness, rss_baseline: Option<u64>, single: &Distribution) {
        println!(
            "window: {:.0} s with {} of {agents} sessions up; {} sessions dropped during it",
            self.hold.as_secs_f64(),
            self.up,
            self.dropped
        );
        println!(
            "heartbeat acks received: {:.0}/s (nominal send rate {:.0}/s: one per {} s per session)",
            self.acks_per_second, self.expected_per_second, liveness.heartbeat_secs
        );
        println!("heartbeat round trip, {} sessions: {}", self.up, self.round_trips);
        println!(
            "  vs 1 session: p50 ×{}, p99 ×{}",
            ratio_text(self.round_trips.p50, single.p50),
            ratio_text(self.round_trips.p99, single.p99)
        );
        println!(
            "coordinator RSS: {} (baseline {}); per session: {}",
            kib_text(self.coordinator_rss),
            kib_text(rss_baseline),
            self.rss_per_session(rss_baseline)
                .map_or("n/a".to_owned(), |kib| format!("{kib:.1} KiB"))
        );
        println!(
            "CPU: coordinator {} cores, bench process (all simulated agents) {} cores, whole machine {} \
             of {} (load average at the end: {}); bench RSS {}",
            cores_text(self.coordinator_cores),
            cores_text(self.bench_cores),
            cores_text(self.machine_cores),
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            self.load_average.as_deref().unwrap_or("n/a"),
            kib_text(self.bench_rss)
        );
    }
}

/// How an agent fleet came back after a restart.
#[derive(Debug, Clone)]
struct Reconnection {
    reconnected: usize,
    agents: usize,
    /// From the stop signal to the last agent's first session.
    from_stop: Option<Duration>,
    /// From the new process listening to each agent's first session.
    from_listening: Vec<Duration>,
    /// Attempts that failed on the way (refused while down, handshake or Welcome timeouts).
    failed_attempts: u64,
}

impl Reconnection {
    fn new(
        reconnected: usize,
        agents: usize,
        stop_started: Instant,
        listening: Instant,
        from_listening: Vec<Duration>,
        failed_attempts: u64,
    ) -> Self {
        let from_stop = from_listening.last().map(|last| (listening - stop_started) + *last);
        Self {
            reconnected,
            agents,
            from_stop,
            from_listening,
            failed_attempts,
        }
    }

    fn print(&self) {
        println!(
            "reconnected {} of {} agents; all back {} after the stop signal",
            self.reconnected,
            self.agents,
            self.from_stop
                .map_or("n/a".to_owned(), |time| format!("{:.1} s", time.as_secs_f64()))
        );
        println!(
            "  after the new process listened: {}; failed attempts: {}",
            ConnectTimes(&self.from_listening),
            self.failed_attempts
        );
    }
}

/// Sorted first-connection times, printed as a spread.
struct ConnectTimes<'a>(&'a [Duration]);

impl fmt::Display for ConnectTimes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let times = self.0;
        let (Some(first), Some(last)) = (times.first(), times.last()) else {
            return write!(f, "none");
        };
        let seconds = |time: Option<Duration>| time.map_or(f64::NAN, |time| time.as_secs_f64());
        let busiest_second = busiest_second(times);
        write!(
            f,
            "first {:.2} s, p50 {:.2} s, p99 {:.2} s, last {:.2} s; busiest second: {busiest_second} sessions",
            first.as_secs_f64(),
            seconds(percentile(times, 0.50)),
            seconds(percentile(times, 0.99)),
            last.as_secs_f64()
        )
    }
}

/// Most connections within any one-second window of sorted `times`.
fn busiest_second(times: &[Duration]) -> usize {
    let mut busiest = 0;
    let mut start = 0;
    for (end, time) in times.iter().enumerate() {
        while *time - times[start] >= Duration::from_secs(1) {
            start += 1;
        }
        busiest = busiest.max(end + 1 - start);
    }
    busiest
}

// ---------------------------------------------------------------------------------------------
// Phase 3: ingest
// ---------------------------------------------------------------------------------------------

/// Where the PostgreSQL variant of the ingest phase keeps its data.
struct PostgresUrls {
    coordinator: String,
    raw_store: String,
}

#[derive(Debug, Clone)]
struct IngestFigures {
    end_to_end: f64,
    naive: Option<f64>,
    batched: Option<f64>,
}

/// Measures results per second end to end through a coordinator, then against the store directly.
async fn ingest_bench(
    dir: &Path,
    postgres: Option<&PostgresUrls>,
    options: &BenchOptions,
) -> anyhow::Result<IngestFigures> {
    std::fs::create_dir_all(dir)?;
    let mut coordinator =
        start_coordinator(dir, postgres.map(|urls| urls.coordinator.as_str()), INGEST_LIVENESS).await?;
    let senders = options.senders;
    let per_sender = options.results.div_ceil(senders);
    let (token, pin) = coordinator.token(ENVIRONMENT, u32::try_from(senders + 10)?).await?;
    let enrolled = enroll_fleet(&coordinator.url, &token, CaPin::parse(&pin)?, senders, senders).await;
    anyhow::ensure!(
        enrolled.identities.len() == senders,
        "result senders could not enroll{}",
        enrolled.failure_text()
    );

    let mut sessions = Vec::with_capacity(senders);
    for identity in &enrolled.identities {
        sessions.push(ResultSession::open(&coordinator.url, identity).await?);
    }
    let batches: Vec<Vec<pb::AgentMessage>> = (0..senders)
        .map(|sender| (0..per_sender).map(|n| result_message(sender, n)).collect())
        .collect();
    let sent = senders * per_sender;

    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for (session, batch) in sessions.into_iter().zip(batches) {
        running.spawn(session.send(batch));
    }
    let mut acked = 0;
    let mut errors = Vec::new();
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok(count)) => acked += count,
            Ok(Err(err)) => errors.push(format!("{err:#}")),
            Err(err) => errors.push(err.to_string()),
        }
    }
    let elapsed = started.elapsed();
    let end_to_end = rate(acked, elapsed);
    coordinator.terminate().await;
    let store_url = match postgres {
        Some(urls) => urls.coordinator.clone(),
        None => coordinator.sqlite_url(),
    };
    let stored = count_stored(&store_url).await;
    println!(
        "end to end: {acked} of {sent} results acknowledged in {:.2} s over {senders} sessions \
         (≤ {SENDER_IN_FLIGHT} in flight each): {end_to_end:.0} results/s; stored: {}{}",
        elapsed.as_secs_f64(),
        stored.map_or_else(|err| format!("unknown ({err:#})"), |count| count.to_string()),
        if errors.is_empty() {
            String::new()
        } else {
            format!("; {} senders failed, first: {}", errors.len(), errors[0])
        }
    );

    let raw_url = match postgres {
        Some(urls) => urls.raw_store.clone(),
        None => format!("sqlite://{}", dir.join("raw-store.db").display()),
    };
    let (naive, batched) = match store_rates(&raw_url, options.results).await {
        Ok((naive, batched)) => (Some(naive), Some(batched)),
        Err(err) => {
            println!("store measured directly: failed: {err:#}");
            (None, None)
        }
    };
    if let (Some(naive), Some(batched)) = (naive, batched) {
        println!(
            "  end to end vs naive: ×{:.1}; end to end vs store ceiling: {:.0}%",
            end_to_end / naive,
            100.0 * end_to_end / batched
        );
    }
    Ok(IngestFigures {
        end_to_end,
        naive,
        batched,
    })
}

/// One result sender's session, past Welcome.
struct ResultSession {
    outbound: mpsc::Sender<pb::AgentMessage>,
    inbound: tonic::Streaming<pb::CoordinatorMessage>,
}

impl ResultSession {
    /// Connects over mTLS, says Hello and waits for Welcome.
    async fn open(url: &str, identity: &Identity) -> anyhow::Result<Self> {
        let channel = connect::channel(url, Arc::new(identity.client_config()?)).await?;
        let mut client = AgentServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (outbound, requests) = mpsc::channel(256);
        let hello = Hello {
            agent_version: lifeboat_shared::VERSION.to_owned(),
            hostname: "bench-sender".into(),
            capabilities: Capabilities::default(),
        };
        outbound
            .send(pb::AgentMessage {
                body: Some(pb::agent_message::Body::Hello(hello.into())),
            })
            .await?;
        let mut inbound = client.session(ReceiverStream::new(requests)).await?.into_inner();
        match tokio::time::timeout(Duration::from_secs(30), inbound.message()).await {
            Ok(Ok(Some(pb::CoordinatorMessage {
                body: Some(pb::coordinator_message::Body::Welcome(_)),
            }))) => Ok(Self { outbound, inbound }),
            other => anyhow::bail!("no Welcome: {other:?}"),
        }
    }

    /// Sends `results`, at most [`SENDER_IN_FLIGHT`] unacknowledged; returns how many were acked.
    async fn send(mut self, results: Vec<pb::AgentMessage>) -> anyhow::Result<usize> {
        let total = results.len();
        let window = Arc::new(Semaphore::new(SENDER_IN_FLIGHT));
        let feeder = {
            let outbound = self.outbound.clone();
            let window = window.clone();
            tokio::spawn(async move {
                for message in results {
                    window.acquire().await?.forget();
                    outbound.send(message).await?;
                }
                anyhow::Ok(())
            })
        };
        let mut acked = 0;
        while acked < total {
            let message = tokio::time::timeout(ACK_SILENCE_LIMIT, self.inbound.message()).await;
            match message {
                Ok(Ok(Some(pb::CoordinatorMessage {
                    body: Some(pb::coordinator_message::Body::ResultAck(_)),
                }))) => {
                    acked += 1;
                    window.add_permits(1);
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    feeder.abort();
                    anyhow::bail!("session ended after {acked} acks: {status}");
                }
                Err(_) => {
                    println!(
                        "a sender heard nothing for {} s; {acked} of {total} acked",
                        ACK_SILENCE_LIMIT.as_secs()
                    );
                    break;
                }
            }
        }
        feeder.abort();
        drop(self.outbound);
        Ok(acked)
    }
}

fn result_message(sender: usize, n: usize) -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Result(bench_result(sender, n).into())),
    }
}

fn bench_result(sender: usize, n: usize) -> RunResult {
    let mut result = RunResult::for_test(&format!("asset-{sender}-{}", n % 16), Outcome::Passed);
    result.backup = format!("nightly-{sender}");
    result.recovery_point = format!("rp-{n}.dump");
    result.restore_seconds = 12.5;
    result.rto_seconds = 1_800.0;
    result.detail = serde_json::json!({ "checks": [{ "name": "rows exist", "passed": true }] });
    result
}

async fn count_stored(url: &str) -> anyhow::Result<u64> {
    let store = Store::connect(url).await?;
    let count = store.count_results().await;
    store.close().await;
    Ok(count?)
}

/// Rows per second into a fresh store: one row per transaction (the naive baseline, bounded by
/// [`NAIVE_BASELINE_ROWS`] and [`NAIVE_BASELINE_LIMIT`]), then `rows` in batches of 512.
async fn store_rates(url: &str, rows: usize) -> anyhow::Result<(f64, f64)> {
    let store = Store::connect(url).await?;
    let environment = Environment::parse(ENVIRONMENT)?;
    let agent_id = AgentId::new();
    let row = |n: usize| ResultRow {
        agent_id,
        environment: environment.clone(),
        result: bench_result(0, n),
        received_at: Utc::now(),
    };

    let naive_rows: Vec<ResultRow> = (0..NAIVE_BASELINE_ROWS.min(rows)).map(row).collect();
    let started = Instant::now();
    let mut inserted = 0;
    for single in &naive_rows {
        store.insert_results(std::slice::from_ref(single)).await?;
        inserted += 1;
        if started.elapsed() >= NAIVE_BASELINE_LIMIT {
            break;
        }
    }
    let naive = rate(inserted, started.elapsed());
    println!(
        "store directly, one row per transaction (naive baseline): {inserted} rows in {:.2} s: {naive:.0} rows/s",
        started.elapsed().as_secs_f64()
    );

    let batched_rows: Vec<ResultRow> = (0..rows).map(row).collect();
    let started = Instant::now();
    for batch in batched_rows.chunks(STORE_BATCH) {
        store.insert_results(batch).await?;
    }
    let elapsed = started.elapsed();
    let batched = rate(rows, elapsed);
    println!(
        "store directly, batches of {STORE_BATCH} (ceiling): {rows} rows in {:.2} s: {batched:.0} rows/s (×{:.1} naive)",
        elapsed.as_secs_f64(),
        batched / naive
    );
    store.close().await;
    Ok((naive, batched))
}

/// Turns the throw-away cluster's speed settings (fsync, synchronous_commit and
/// full_page_writes off) back to PostgreSQL's durable defaults, so that a commit costs what it
/// costs in production.
async fn make_durable(cluster: &PgCluster) -> anyhow::Result<()> {
    let mut connection = sqlx::PgConnection::connect(&cluster.url("postgres")).await?;
    for statement in [
        "ALTER SYSTEM SET fsync = on",
        "ALTER SYSTEM SET synchronous_commit = on",
        "ALTER SYSTEM SET full_page_writes = on",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::raw_sql(statement).execute(&mut connection).await?;
    }
    connection.close().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut connection = sqlx::PgConnection::connect(&cluster.url("postgres")).await?;
    let mut settings = Vec::new();
    for name in ["fsync", "synchronous_commit", "full_page_writes", "shared_buffers"] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(&mut connection)
            .await?;
        settings.push(format!("{name}={value}"));
    }
    connection.close().await?;
    println!("PostgreSQL (throw-away cluster, local disk): {}", settings.join(" "));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The coordinator process
// ---------------------------------------------------------------------------------------------

/// Starts `lifeboat-coordinator serve` on a free port with the bench's own config in `dir`.
async fn start_coordinator(
    dir: &Path,
    database_url: Option<&str>,
    liveness: Liveness,
) -> anyhow::Result<CoordinatorProcess> {
    let port = free_port();
    let data_dir = dir.join("coordinator");
    std::fs::create_dir_all(&data_dir)?;
    let mut coordinator = CoordinatorProcess {
        port,
        url: format!("https://127.0.0.1:{port}"),
        http_port: free_port(),
        config_path: dir.join("coordinator.toml"),
        data_dir,
        process: None,
        open_files: None,
    };
    write_coordinator_config(&coordinator, database_url, liveness)?;
    coordinator.restart().await?;
    Ok(coordinator)
}

/// Writes the config `coordinator` (re)starts with.
fn write_coordinator_config(
    coordinator: &CoordinatorProcess,
    database_url: Option<&str>,
    liveness: Liveness,
) -> anyhow::Result<()> {
    let database = database_url.map_or(String::new(), |url| format!("[database]\nurl = \"{url}\"\n"));
    let limits = if liveness.unthrottled_results {
        "[limits]\nresults_per_minute = 1000000\n"
    } else {
        ""
    };
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         http_listen = \"127.0.0.1:0\"\n\
         data_dir = \"{data_dir}\"\n\
         server_names = [\"127.0.0.1\", \"localhost\"]\n\
         shutdown_grace = \"10s\"\n\
         {database}\
         [agents]\n\
         certificate_ttl = \"24h\"\n\
         heartbeat_interval = \"{heartbeat}s\"\n\
         last_seen_flush = \"{flush}s\"\n\
         offline_after = \"{offline}s\"\n\
         {limits}",
        port = coordinator.port,
        data_dir = coordinator.data_dir.display(),
        heartbeat = liveness.heartbeat_secs,
        flush = liveness.last_seen_flush_secs,
        offline = liveness.offline_after_secs,
    );
    std::fs::write(&coordinator.config_path, text)
        .with_context(|| format!("write {}", coordinator.config_path.display()))
}

fn coordinator_pid(coordinator: &CoordinatorProcess) -> Option<i32> {
    coordinator
        .process
        .as_ref()
        .and_then(|process| process.pid())
        .map(|pid| pid.as_raw())
}

fn coordinator_rss(coordinator: &CoordinatorProcess) -> Option<u64> {
    coordinator_pid(coordinator).and_then(|pid| rss_kib(&pid.to_string()))
}

// ---------------------------------------------------------------------------------------------
// /proc readings and figures
// ---------------------------------------------------------------------------------------------

/// `VmRSS` of `/proc/<process>/status`, in KiB (`process` is a pid or `self`).
fn rss_kib(process: &str) -> Option<u64> {
    let status = std::fs::read_to_string(PathBuf::from("/proc").join(process).join("status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User plus system CPU time of `/proc/<process>/stat`, in clock ticks.
fn cpu_ticks(process: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(PathBuf::from("/proc").join(process).join("stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces: state is
    // field 3, utime 14, stime 15.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// Busy CPU time of the whole machine (the `cpu` line of `/proc/stat` minus idle and iowait),
/// in clock ticks.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let idle = ticks.get(3)? + ticks.get(4)?;
    // guest time is already counted in user time
    let total: u64 = ticks.iter().take(8).sum();
    Some(total - idle)
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Cores busy on average, from clock ticks over `elapsed` (`USER_HZ` is 100 on Linux).
fn cores(ticks: u64, elapsed: Duration) -> f64 {
    ticks as f64 / 100.0 / elapsed.as_secs_f64()
}

fn meminfo_mib(field: &str) -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

fn kib_text(kib: Option<u64>) -> String {
    kib.map_or("n/a".to_owned(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0))
}

fn cores_text(cores: Option<f64>) -> String {
    cores.map_or("n/a".to_owned(), |cores| format!("{cores:.2}"))
}

fn ratio_text(value: Option<Duration>, baseline: Option<Duration>) -> String {
    match (value, baseline) {
        (Some(value), Some(baseline)) if !baseline.is_zero() => {
            format!("{:.1}", value.as_secs_f64() / baseline.as_secs_f64())
        }
        _ => "n/a".to_owned(),
    }
}

/// Nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[Duration], fraction: f64) -> Option<Duration> {
    let rank = (sorted.len() as f64 * fraction).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// A latency distribution.
#[derive(Debug, Clone)]
struct Distribution {
    samples: usize,
    p50: Option<Duration>,
    p90: Option<Duration>,
    p99: Option<Duration>,
    max: Option<Duration>,
}

impl Distribution {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self {
            samples: samples.len(),
            p50: percentile(&samples, 0.50),
            p90: percentile(&samples, 0.90),
            p99: percentile(&samples, 0.99),
            max: samples.last().copied(),
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |value: Option<Duration>| {
            value.map_or("n/a".to_owned(), |value| {
                format!("{:.2} ms", value.as_secs_f64() * 1_000.0)
            })
        };
        write!(
            f,
            "p50 {}, p90 {}, p99 {}, max {} ({} samples)",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.samples
        )
    }
}

/// The figures the issue asks for, gathered for the closing table.
#[derive(Default)]
struct Summary {
    connected: Option<(usize, usize)>,
    rtt_single: Option<Distribution>,
    hold_test: Option<Window>,
    hold_production: Option<Window>,
    /// Coordinator RSS per session in the first window, above the idle RSS after enrollment.
    rss_per_session_test: Option<f64>,
    /// Coordinator RSS per session in the restarted process, above a fresh idle coordinator.
    rss_per_session_fresh: Option<f64>,
    restart_graceful: Option<Reconnection>,
    restart_crash: Option<Reconnection>,
    sqlite: Option<IngestFigures>,
    postgres: Option<IngestFigures>,
}

impl Summary {
    fn print(&self, options: &BenchOptions) {
        let ms = |value: Option<Duration>| {
            value.map_or("n/a".to_owned(), |value| {
                format!("{:.1} ms", value.as_secs_f64() * 1_000.0)
            })
        };
        let single_p99 = self.rtt_single.as_ref().and_then(|single| single.p99);
        println!("== Summary (measured, not asserted; aims from the Foundation issue) ==");
        if let Some((connected, agents)) = self.connected {
            println!(
                "{:<38}{connected} of {agents} after the ramp (asked {})   aim 10,000",
                "connected sessions:", options.agents
            );
        }
        for (label, window) in [
            ("  held through the 1 s beat window:", &self.hold_test),
            ("  held through the 15 s beat window:", &self.hold_production),
        ] {
            if let Some(window) = window {
                println!(
                    "{label:<38}{} up at its end, {} dropped during it",
                    window.up, window.dropped
                );
            }
        }
        for (label, window) in [
            ("heartbeat RTT p99, beat 1 s:", &self.hold_test),
            ("heartbeat RTT p99, beat 15 s:", &self.hold_production),
        ] {
            if let Some(window) = window {
                println!(
                    "{label:<38}{} (p50 {}; 1 session p99 {})   aim ≤ 100 ms",
                    ms(window.round_trips.p99),
                    ms(window.round_trips.p50),
                    ms(single_p99)
                );
            }
        }
        if let Some(window) = &self.hold_test {
            println!(
                "{:<38}{} cores of {}",
                "coordinator CPU, beat 1 s:",
                cores_text(window.coordinator_cores),
                std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
            );
        }
        let kib = |value: Option<f64>| value.map_or("n/a".to_owned(), |kib| format!("{kib:.1} KiB"));
        println!(
            "{:<38}{} (fresh process after restart, above a fresh idle coordinator); \
             {} (first run, above idle after enrollment)   aim ≤ 100 KB",
            "coordinator RSS per session:",
            kib(self.rss_per_session_fresh),
            kib(self.rss_per_session_test)
        );
        for (label, restart) in [
            ("all reconnected after SIGTERM:", &self.restart_graceful),
            ("all reconnected after SIGKILL:", &self.restart_crash),
        ] {
            if let Some(restart) = restart {
                println!(
                    "{label:<38}{} ({} of {})   aim ≤ 60 s",
                    restart
                        .from_stop
                        .map_or("n/a".to_owned(), |time| format!("{:.1} s", time.as_secs_f64())),
                    restart.reconnected,
                    restart.agents
                );
            }
        }
        for (label, figures, aim) in [
            ("results ingested/s, SQLite:", &self.sqlite, "≥ 2,000/s"),
            ("results ingested/s, PostgreSQL:", &self.postgres, "≥ 5,000/s"),
        ] {
            match figures {
                Some(figures) => println!(
                    "{label:<38}{:.0}/s (naive 1 row/tx {}/s, store batches of 512 {}/s)   aim {aim}",
                    figures.end_to_end,
                    figures.naive.map_or("n/a".to_owned(), |naive| format!("{naive:.0}")),
                    figures
                        .batched
                        .map_or("n/a".to_owned(), |batched| format!("{batched:.0}"))
                ),
                None => println!("{label:<38}not measured   aim {aim}"),
            }
        }
    }
}
