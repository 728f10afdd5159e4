//! The benchmark of the HTTP surfaces at the scale the coordinator aims at: 10,000 assets in 50
//! environments and 1,000,000 results in a SQLite store, served by the real router over HTTP on
//! loopback.
//!
//! Measured, never asserted: p50/p99 of `GET /api/v1/verdicts` (every verdict) and `GET /` (the
//! status page) over sequential keep-alive requests, printed next to the aims (≤ 50 ms and
//! ≤ 200 ms at p99) and next to two baselines from the same run: `GET /healthz` (the HTTP floor)
//! and `Store::verdicts` called directly (the database floor). A few other routes are measured
//! for context.
//!
//! ```text
//! cargo bench -p lifeboat-tests --bench http
//! LIFEBOAT_BENCH_ASSETS=1000 LIFEBOAT_BENCH_RESULTS=100000 cargo bench -p lifeboat-tests --bench http   # smoke
//! ```
//!
//! Knobs: `LIFEBOAT_BENCH_ASSETS` (10,000), `LIFEBOAT_BENCH_ENVIRONMENTS` (50),
//! `LIFEBOAT_BENCH_RESULTS` (1,000,000; 1 % of them posture scans), `LIFEBOAT_BENCH_REQUESTS`
//! (200 per route), `LIFEBOAT_BENCH_NOT_RECOVERABLE_PERCENT` (2).

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};
use lifeboat_coordinator::http::{self, HttpState, asset_path};
use lifeboat_coordinator::store::{NewJoinToken, ResultRow, Store, TestSpec, TokenClaim, VerdictRecord};
use lifeboat_shared::findings::{Finding, FindingKind};
use lifeboat_shared::ids::{AgentId, Environment, ResultId};
use lifeboat_shared::protocol::{Outcome, ResultKind, RunResult};
use lifeboat_tests::knob;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Rows per `insert_results` call while seeding.
const SEED_BATCH: usize = 2_048;
/// Requests before measuring a route (connection set up, caches warm).
const WARMUP: usize = 5;
const VERDICTS_AIM: StdDuration = StdDuration::from_millis(50);
const STATUS_PAGE_AIM: StdDuration = StdDuration::from_millis(200);

struct Shape {
    assets: usize,
    environments: usize,
    results: usize,
    requests: usize,
    not_recoverable_percent: usize,
}

impl Shape {
    fn from_env() -> Self {
        Self {
            assets: knob("LIFEBOAT_BENCH_ASSETS", 10_000).max(1),
            environments: knob("LIFEBOAT_BENCH_ENVIRONMENTS", 50).max(1),
            results: knob("LIFEBOAT_BENCH_RESULTS", 1_000_000),
            requests: knob("LIFEBOAT_BENCH_REQUESTS", 200).max(1),
            not_recoverable_percent: knob("LIFEBOAT_BENCH_NOT_RECOVERABLE_PERCENT", 2),
        }
    }

    fn environment(&self, asset: usize) -> String {
        format!("env-{:02}", asset % self.environments)
    }

    fn asset(&self, asset: usize) -> String {
        format!("asset-{asset:05}")
    }

    fn recoverable(&self, asset: usize) -> bool {
        asset % 100 >= self.not_recoverable_percent
    }
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("build runtime")?;
    runtime.block_on(run(Shape::from_env()))
}

async fn run(shape: Shape) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url).await.context("open store")?;
    println!(
        "http bench: {} assets in {} environments, {} results, {} requests per route (SQLite)",
        shape.assets, shape.environments, shape.results, shape.requests
    );

    let seeding = Instant::now();
    seed(&store, &shape).await?;
    println!("seeded in {:.1} s", seeding.elapsed().as_secs_f64());

    let token = store.create_operator_token("bench", None).await?;
    let router = http::router(HttpState {
        store: store.clone(),
        connected_agents: Arc::new(|| 50),
        public_url: None,
        public_status: false,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(http::serve(
        listener,
        router,
        http::HttpLimits::default(),
        shutdown.clone(),
    ));
    let client = reqwest::Client::builder().build()?;

    // Baselines: the HTTP floor and the database floor.
    let healthz = measure(&client, &format!("{base}/healthz"), None, shape.requests).await?;
    let mut direct = Vec::with_capacity(shape.requests);
    for _ in 0..shape.requests {
        let started = Instant::now();
        let verdicts = store.verdicts(None).await?;
        direct.push(started.elapsed());
        std::hint::black_box(verdicts);
    }
    let direct = Figures::new(direct, 0);

    // The status page's queries, one by one.
    let failing_keys: Vec<(String, String)> = (0..shape.assets)
        .filter(|asset| !shape.recoverable(*asset))
        .take(200)
        .map(|asset| (shape.environment(asset), shape.asset(asset)))
        .collect();
    let since = Utc::now() - Duration::hours(24);
    let times = shape.requests / 10 + 1;
    let queries = [
        (
            "run_counts(24 h)",
            time_query(times, || async { store.run_counts(since).await.map(drop) }).await?,
        ),
        (
            "flips(500)",
            time_query(times, || async { store.flips(None, None, 500).await.map(drop) }).await?,
        ),
        (
            "restore_trends(failing, 20)",
            time_query(times, || async {
                store.restore_trends(&failing_keys, 20).await.map(drop)
            })
            .await?,
        ),
        (
            "latest_posture_findings_for(failing)",
            time_query(times, || async {
                store.latest_posture_findings_for(&failing_keys).await.map(drop)
            })
            .await?,
        ),
        (
            "latest_posture_findings(all)",
            time_query(times, || async { store.latest_posture_findings(None).await.map(drop) }).await?,
        ),
        (
            "agent_counts",
            time_query(times, || async { store.agent_counts().await.map(drop) }).await?,
        ),
    ];

    let verdicts = measure(
        &client,
        &format!("{base}/api/v1/verdicts"),
        Some(&token),
        shape.requests,
    )
    .await?;
    let status_page = measure(&client, &format!("{base}/"), Some(&token), shape.requests).await?;

    println!();
    println!("{:<34} {:>9} {:>9} {:>11}  aim (p99)", "route", "p50", "p99", "body");
    healthz.print("GET /healthz (HTTP floor)", None);
    direct.print("Store::verdicts direct (DB floor)", None);
    verdicts.print("GET /api/v1/verdicts", Some(VERDICTS_AIM));
    status_page.print("GET /", Some(STATUS_PAGE_AIM));
    for (name, figures) in &queries {
        figures.print(&format!("  query {name}"), None);
    }

    // Context: the other surfaces.
    let failing = (0..shape.assets).find(|asset| !shape.recoverable(*asset)).unwrap_or(0);
    let detail_path = asset_path(&shape.environment(failing), &shape.asset(failing));
    let detail = measure(&client, &format!("{base}{detail_path}"), Some(&token), shape.requests).await?;
    detail.print("GET /assets/{env}/{asset}", None);
    let findings = measure(
        &client,
        &format!("{base}/api/v1/findings"),
        Some(&token),
        shape.requests / 4 + 1,
    )
    .await?;
    findings.print("GET /api/v1/findings", None);
    let environments = measure(
        &client,
        &format!("{base}/api/v1/environments"),
        Some(&token),
        shape.requests / 4 + 1,
    )
    .await?;
    environments.print("GET /api/v1/environments", None);
    let cold_metrics = Instant::now();
    let scrape = client
        .get(format!("{base}/metrics"))
        .bearer_auth(&token)
        .send()
        .await?
        .bytes()
        .await?;
    println!(
        "{:<34} {:>9} {:>9} {:>11}  (store gauges rebuilt)",
        "GET /metrics, cold",
        format_ms(cold_metrics.elapsed()),
        "",
        format_bytes(scrape.len())
    );
    let metrics = measure(&client, &format!("{base}/metrics"), Some(&token), shape.requests).await?;
    metrics.print("GET /metrics, cached", None);

    shutdown.cancel();
    server.await.context("join server")??;
    store.close().await;
    Ok(())
}

/// Runs `query` `times` times and returns its latencies.
async fn time_query<F, Fut>(times: usize, mut query: F) -> anyhow::Result<Figures>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), lifeboat_coordinator::store::StoreError>>,
{
    let mut samples = Vec::with_capacity(times);
    for _ in 0..times {
        let started = Instant::now();
        query().await?;
        samples.push(started.elapsed());
    }
    Ok(Figures::new(samples, 0))
}

/// Latencies of one route and the size of its answer.
struct Figures {
    sorted: Vec<StdDuration>,
    body_bytes: usize,
}

impl Figures {
    fn new(mut samples: Vec<StdDuration>, body_bytes: usize) -> Self {
        samples.sort();
        Self {
            sorted: samples,
            body_bytes,
        }
    }

    fn percentile(&self, percent: usize) -> StdDuration {
        let index = (self.sorted.len() * percent).div_ceil(100).saturating_sub(1);
        self.sorted.get(index).copied().unwrap_or_default()
    }

    fn print(&self, route: &str, aim: Option<StdDuration>) {
        let p99 = self.percentile(99);
        let verdict = aim.map_or_else(String::new, |aim| {
            format!(
                "≤ {} ms: {}",
                aim.as_millis(),
                if p99 <= aim { "met" } else { "MISSED" }
            )
        });
        println!(
            "{route:<34} {:>9} {:>9} {:>11}  {verdict}",
            format_ms(self.percentile(50)),
            format_ms(p99),
            if self.body_bytes == 0 {
                String::new()
            } else {
                format_bytes(self.body_bytes)
            }
        );
    }
}

fn format_ms(duration: StdDuration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn format_bytes(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Sequential GETs over one keep-alive connection; the whole body is read each time.
async fn measure(client: &reqwest::Client, url: &str, token: Option<&str>, requests: usize) -> anyhow::Result<Figures> {
    let mut samples = Vec::with_capacity(requests);
    let mut body_bytes = 0;
    for index in 0..WARMUP + requests {
        let started = Instant::now();
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        anyhow::ensure!(response.status().is_success(), "{url}: {}", response.status());
        let body = response.bytes().await?;
        if index >= WARMUP {
            samples.push(started.elapsed());
        }
        body_bytes = body.len();
    }
    Ok(Figures::new(samples, body_bytes))
}

fn restore(asset: &str, finished_at: DateTime<Utc>, seconds: f64) -> RunResult {
    RunResult {
        result_id: ResultId::new(),
        kind: ResultKind::Restore,
        run_id: None,
        asset: asset.to_owned(),
        backup: "nightly".to_owned(),
        recovery_point: format!("{asset}-{}.dump", finished_at.timestamp()),
        outcome: Outcome::Passed,
        started_at: finished_at - Duration::seconds(seconds as i64),
        finished_at,
        restore_seconds: seconds * 0.8,
        rto_seconds: seconds,
        recovery_point_age_seconds: 3_600,
        findings: Vec::new(),
        detail: json!({"recoverable": true, "runs": [{"outcome": "passed", "runbook": ["pg_restore …"]}]}),
    }
}

/// Tests, agents, results (batched) and verdicts for `shape`.
async fn seed(store: &Store, shape: &Shape) -> anyhow::Result<()> {
    let now = Utc::now();
    let started = Instant::now();
    let specs: Vec<TestSpec> = (0..shape.assets)
        .map(|asset| TestSpec {
            environment: shape.environment(asset),
            asset: shape.asset(asset),
            schedule: "0 */6 * * *".to_owned(),
            timeout_seconds: 3_600,
            interval_seconds: 86_400,
            rpo_seconds: 86_400,
            rto_seconds: 1_800,
        })
        .collect();
    store.sync_tests(&specs, now).await?;
    let mut agents = Vec::with_capacity(shape.environments);
    for environment in 0..shape.environments {
        let name = format!("env-{environment:02}");
        let hash = format!("bench-token-{environment}");
        store
            .insert_join_token(&NewJoinToken {
                token_hash: hash.clone(),
                environment: Environment::parse(&name)?,
                expires_at: now + Duration::hours(1),
                uses_allowed: 1,
                created_at: now,
            })
            .await?;
        let claimed = store
            .claim_join_token(&TokenClaim {
                token_hash: hash,
                key_fingerprint: format!("key-{environment}"),
                agent_name: format!("{name}-agent"),
                now,
            })
            .await?;
        store
            .mark_connected(claimed.agent_id, "bench", "0.1.0", &json!({}), "bench", now)
            .await?;
        agents.push(claimed.agent_id);
    }
    println!("  tests and agents: {:.1} s", started.elapsed().as_secs_f64());

    // Results, interleaved across assets (as they arrive), one every 6 h per asset.
    let started = Instant::now();
    let per_asset = shape.results.div_ceil(shape.assets).max(1);
    let mut batch: Vec<ResultRow> = Vec::with_capacity(SEED_BATCH);
    let mut stored = 0;
    'rounds: for round in 0..per_asset {
        let finished_at = now - Duration::hours(6 * (per_asset - round) as i64);
        for asset in 0..shape.assets {
            if stored == shape.results {
                break 'rounds;
            }
            let name = shape.asset(asset);
            let seconds = 300.0 + ((asset * 7 + round * 13) % 600) as f64;
            let mut result = restore(&name, finished_at, seconds);
            // The last round of every asset but one in a hundred is a posture scan.
            if round + 1 == per_asset && asset % 100 != 0 {
                result.kind = ResultKind::Posture;
                result.findings = vec![
                    Finding::new(FindingKind::DriftDetected, name.as_str(), "PostgreSQL 15 → 16.")
                        .with_remediation("Re-run the restore test against the new version."),
                ];
            }
            let environment = asset % shape.environments;
            batch.push(ResultRow {
                agent_id: agents.get(environment).copied().unwrap_or_else(AgentId::new),
                environment: Environment::parse(&shape.environment(asset))?,
                result,
                received_at: finished_at,
            });
            stored += 1;
            if batch.len() == SEED_BATCH {
                store.insert_results(&batch).await?;
                batch.clear();
            }
        }
    }
    store.insert_results(&batch).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "  results: {stored} in {elapsed:.1} s ({:.0}/s)",
        stored as f64 / elapsed.max(1e-9)
    );

    // Verdicts: the bad ones flipped from good an hour ago.
    let started = Instant::now();
    for asset in 0..shape.assets {
        let environment = shape.environment(asset);
        let name = shape.asset(asset);
        let dedup_key = format!("{environment}/{name}");
        let good = VerdictRecord {
            environment: environment.clone(),
            asset: name.clone(),
            recoverable: true,
            reasons: Vec::new(),
            last_passed_at: Some(now - Duration::hours(2)),
            backup_age_seconds: Some(7_200),
            restore_seconds: Some(420.0),
            rpo_seconds: Some(86_400),
            rto_seconds: Some(1_800),
            since: now - Duration::days(7),
            updated_at: now,
        };
        store.record_verdict(&good, &dedup_key, |_, _, _| Vec::new()).await?;
        if !shape.recoverable(asset) {
            let bad = VerdictRecord {
                recoverable: false,
                reasons: vec![
                    Finding::new(
                        FindingKind::BackupStale,
                        name.as_str(),
                        format!("The newest recoverable backup of {name} is 3 days old; its RPO is 24 h."),
                    )
                    .with_remediation("Fix the nightly backup job."),
                ],
                backup_age_seconds: Some(3 * 86_400),
                since: now - Duration::hours(1),
                ..good
            };
            store.record_verdict(&bad, &dedup_key, |_, _, _| Vec::new()).await?;
        }
    }
    println!("  verdicts: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
