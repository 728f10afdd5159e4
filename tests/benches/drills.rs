//! The benchmark of the "Coordinator" issue that is not about HTTP: how many due runs the
//! scheduler materialises and leases per second, and how long a result takes to become a flip
//! and a ticket request (`group_wait = 0`). Figures are printed next to a baseline measured in
//! the same run; nothing is asserted.
//!
//! ```text
//! cargo bench -p lifeboat-tests --bench drills
//! LIFEBOAT_BENCH_TESTS=2000 LIFEBOAT_BENCH_FLIPS=50 cargo bench -p lifeboat-tests --bench drills   # smoke run
//! ```
//!
//! # Phases
//!
//! 1. Scheduler, on SQLite and on a throw-away PostgreSQL: `LIFEBOAT_BENCH_TESTS` tests all fall
//!    due at once; one scheduler tick materialises them (plan + idempotent insert per test), then
//!    each run is leased to its own agent id through the same statement the scheduler uses. The
//!    baseline is a bare single-row `INSERT` per transaction into the same store.
//! 2. Result → flip → ticket: an in-process coordinator with a webhook channel to a local
//!    receiver; a simulated agent (the real session loop over mutual TLS) sends a failing result
//!    for one asset at a time; the latency runs from putting the result in the agent's spool to
//!    the signed webhook arriving. The baseline is the result's own round trip (spool → commit →
//!    ack) measured on the same session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use lifeboat_agent::reconnect::ReconnectPolicy;
use lifeboat_agent::session::SessionEvent;
use lifeboat_coordinator::config::ScheduleConfig;
use lifeboat_coordinator::scheduler::Scheduler;
use lifeboat_coordinator::sessions::SessionRegistry;
use lifeboat_coordinator::store::{LeaseRequest, Store, TestSpec};
use lifeboat_shared::durations::HumanDuration;
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_shared::ids::{AgentId, ResultId};
use lifeboat_shared::protocol::{Inventory, Outcome, ResultKind, RunResult};
use lifeboat_tests::cluster::{CoordinatorOptions, SimAgent, TestCoordinator};
use lifeboat_tests::postgres::PgCluster;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn scheduler_phase(engine: &str, url: &str, tests: usize) -> anyhow::Result<()> {
    let store = Store::connect(url).await?;
    let t0 = Utc::now() - chrono::Duration::hours(12);
    let specs: Vec<TestSpec> = (0..tests)
        .map(|i| TestSpec {
            environment: format!("env-{}", i % 50),
            asset: format!("asset-{i}"),
            schedule: "0 * * * *".into(),
            timeout_seconds: 600,
            interval_seconds: 86_400,
            rpo_seconds: 86_400,
            rto_seconds: 1800,
        })
        .collect();
    store.sync_tests(&specs, t0).await?;
    let config = ScheduleConfig {
        jitter: HumanDuration::from_secs(0),
        start_deadline: HumanDuration::from_secs(24 * 3600),
        max_attempts: 3,
        lease_grace: HumanDuration::from_secs(60),
    };
    let mut scheduler = Scheduler::new(store.clone(), SessionRegistry::new("bench".into()), config);
    // First tick: every test learns its next due time (an hour boundary after t0).
    scheduler.tick(t0).await?;
    // Two hours later every test is due once: this tick materialises them all.
    let now = t0 + chrono::Duration::hours(2);
    let started = Instant::now();
    let report = scheduler.tick(now).await?;
    let materialise = started.elapsed();

    let started = Instant::now();
    let mut leased = 0usize;
    for i in 0..tests {
        let environment = format!("env-{}", i % 50);
        let assets = vec![format!("asset-{i}")];
        let request = LeaseRequest {
            agent: AgentId::new(),
            instance: "bench",
            environment: &environment,
            assets: &assets,
            grace_millis: 60_000,
        };
        leased += store.lease_runs(&request, now, 1).await?.len();
    }
    let lease = started.elapsed();

    // Baseline: one bare INSERT per transaction into the same store (the results table).
    let baseline_rows = tests.min(2_000);
    let started = Instant::now();
    for i in 0..baseline_rows {
        let mut result = RunResult::for_test(&format!("baseline-{i}"), Outcome::Passed);
        result.result_id = ResultId::new();
        store
            .insert_results(&[lifeboat_coordinator::store::ResultRow {
                agent_id: AgentId::new(),
                environment: lifeboat_shared::ids::Environment::parse("bench").map_err(anyhow::Error::msg)?,
                result,
                received_at: Utc::now(),
            }])
            .await?;
    }
    let baseline = started.elapsed();
    let materialised_per_s = report.materialised as f64 / materialise.as_secs_f64();
    let leased_per_s = leased as f64 / lease.as_secs_f64();
    let baseline_per_s = baseline_rows as f64 / baseline.as_secs_f64();
    println!(
        "scheduler/{engine}: {tests} tests; materialised {} runs in {:.2} s = {:.0} runs/s; leased {leased} in {:.2} s = {:.0} leases/s",
        report.materialised,
        materialise.as_secs_f64(),
        materialised_per_s,
        lease.as_secs_f64(),
        leased_per_s
    );
    println!(
        "scheduler/{engine}: baseline single-row INSERT per transaction {baseline_per_s:.0} rows/s; \
         materialise/baseline = {:.2}, lease/baseline = {:.2}",
        materialised_per_s / baseline_per_s,
        leased_per_s / baseline_per_s
    );
    store.close().await;
    Ok(())
}

async fn flip_latency_phase(flips: usize) -> anyhow::Result<()> {
    // The receiver: when each asset's ticket request arrived.
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let recorded = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let recorded = recorded.clone();
            async move {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if json["event"] == "trigger"
                    && let Some(asset) = json["asset"].as_str()
                    && let Ok(mut arrivals) = recorded.lock()
                {
                    arrivals.entry(asset.to_owned()).or_insert_with(Instant::now);
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let coordinator = TestCoordinator::start_with(CoordinatorOptions {
        extra_config: format!(
            "\n[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook}\"\nsecret = \"bench\"\n\n[[route]]\nchannels = [\"hook\"]\n"
        ),
        ..CoordinatorOptions::default()
    })
    .await;
    let identity = coordinator.enroll("bench", "bench-agent").await;
    let mut agent = SimAgent::spawn_with(
        &coordinator.url,
        identity,
        ReconnectPolicy::default(),
        Inventory::default(),
    );
    anyhow::ensure!(
        agent.connected(Duration::from_secs(20)).await,
        "the agent did not connect"
    );

    let mut acks = Vec::new();
    let mut tickets = Vec::new();
    for i in 0..flips {
        let asset = format!("asset-{i}");
        let mut result = RunResult::for_test(&asset, Outcome::Failed);
        result.result_id = ResultId::new();
        result.kind = ResultKind::Restore;
        result
            .findings
            .push(Finding::new(FindingKind::BackupStale, asset.as_str(), "stale").with_severity(Severity::Critical));
        let id = result.result_id;
        let sent = Instant::now();
        agent.spool.put(&result).await?;
        let acked = agent
            .wait_for(Duration::from_secs(20), |event| match event {
                SessionEvent::ResultAcknowledged(acked) if *acked == id => Some(()),
                _ => None,
            })
            .await;
        if acked.is_some() {
            acks.push(sent.elapsed());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(at) = arrivals.lock().ok().and_then(|arrivals| arrivals.get(&asset).copied()) {
                tickets.push(at.duration_since(sent));
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    acks.sort();
    tickets.sort();
    println!(
        "flip latency: {} of {flips} flips reached the receiver; result → ticket request p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (aim p99 ≤ 1000 ms)",
        tickets.len(),
        percentile(&tickets, 0.5).as_secs_f64() * 1e3,
        percentile(&tickets, 0.99).as_secs_f64() * 1e3,
        tickets.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "flip latency: baseline result → commit → ack p50 {:.0} ms, p99 {:.0} ms; ticket p99 / ack p99 = {:.1}",
        percentile(&acks, 0.5).as_secs_f64() * 1e3,
        percentile(&acks, 0.99).as_secs_f64() * 1e3,
        percentile(&tickets, 0.99).as_secs_f64() / percentile(&acks, 0.99).as_secs_f64().max(1e-6)
    );
    agent.stop();
    coordinator.stop().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    lifeboat_shared::tls::install_crypto_provider();
    let tests = env_usize("LIFEBOAT_BENCH_TESTS", 10_000);
    let flips = env_usize("LIFEBOAT_BENCH_FLIPS", 200);
    let dir = tempfile::tempdir()?;
    scheduler_phase(
        "sqlite",
        &format!("sqlite://{}", dir.path().join("bench.db").display()),
        tests,
    )
    .await?;
    let cluster = PgCluster::start().await?;
    cluster.create_database("bench").await?;
    scheduler_phase("postgres", &cluster.url("bench"), tests).await?;
    flip_latency_phase(flips).await?;
    Ok(())
}
