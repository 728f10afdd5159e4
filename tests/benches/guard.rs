//! The guard's benchmark, in one run: decision latency over a store of 10,000 assets (each on a
//! volume of its own, with a backup on that volume and one elsewhere, restore tests, posture
//! scans and verdicts), and the Railway gate's overhead for pass-through queries over a direct
//! call to the same local upstream.
//!
//! Measured, never asserted: p50/p99 of `Guard::check` (placement reused, fresh facts read and
//! the decision recorded with its evidence record, as in production) for volumes that are
//! allowed and refused, next to the aim (p99 ≤ 10 ms); then p50/p99 of a GraphQL query sent
//! straight to the upstream and through the gate, alternately, with the difference (aim: ≤ 2 ms
//! at p99) and the ratio.
//!
//! ```text
//! cargo bench -p lifeboat-tests --bench guard
//! LIFEBOAT_BENCH_ASSETS=1000 cargo bench -p lifeboat-tests --bench guard   # smoke
//! ```
//!
//! Knobs: `LIFEBOAT_BENCH_ASSETS` (10,000), `LIFEBOAT_BENCH_ENVIRONMENTS` (20),
//! `LIFEBOAT_BENCH_REQUESTS` (1,000 per measurement).

use std::time::{Duration as StdDuration, Instant};

use anyhow::Context as _;
use chrono::{Duration, Utc};
use lifeboat_coordinator::config::Config;
use lifeboat_coordinator::guard::proxy::{Gate, UpstreamToken};
use lifeboat_coordinator::guard::resources::{Operation, Resource};
use lifeboat_coordinator::guard::{Caller, CheckRequest, Guard, Surface};
use lifeboat_coordinator::store::Store;
use lifeboat_shared::ids::Environment;
use lifeboat_shared::protocol::{Inventory, Outcome, RunResult};
use lifeboat_tests::guard_world::{declare, enroll, posture, restore, set_verdict, store_results};
use lifeboat_tests::knob;
use tokio_util::sync::CancellationToken;

const DECISION_AIM: StdDuration = StdDuration::from_millis(10);
const OVERHEAD_AIM: StdDuration = StdDuration::from_millis(2);
/// One asset in this many is not recoverable (its decisions are refusals).
const NOT_RECOVERABLE_EVERY: usize = 50;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("build runtime")?;
    runtime.block_on(run())
}

/// p50 and p99 of `samples`.
fn percentiles(samples: &mut [StdDuration]) -> (StdDuration, StdDuration) {
    samples.sort();
    let at = |percent: usize| {
        let index = (samples.len() * percent).div_ceil(100).saturating_sub(1);
        samples.get(index).copied().unwrap_or_default()
    };
    (at(50), at(99))
}

fn ms(duration: StdDuration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn report(what: &str, samples: &mut [StdDuration], aim: Option<StdDuration>) -> StdDuration {
    let (p50, p99) = percentiles(samples);
    let verdict = aim.map_or_else(String::new, |aim| {
        format!("aim ≤ {}: {}", ms(aim), if p99 <= aim { "met" } else { "MISSED" })
    });
    println!("{what:<44} p50 {:>9}  p99 {:>9}  {verdict}", ms(p50), ms(p99));
    p99
}

fn asset_name(index: usize) -> String {
    format!("asset-{index:05}")
}

fn volume_of(index: usize) -> String {
    format!("vol-{index:05}")
}

async fn seed(store: &Store, assets: usize, environments: usize) -> anyhow::Result<()> {
    let now = Utc::now();
    for environment_index in 0..environments {
        let environment = format!("env-{environment_index:02}");
        let agent = enroll(store, &environment, &format!("{environment}-agent")).await;
        let mine: Vec<usize> = (environment_index..assets).step_by(environments).collect();
        let mut inventory = Inventory::default();
        for index in &mine {
            declare(&mut inventory, &asset_name(*index), &volume_of(*index));
        }
        store
            .save_inventory(agent, &serde_json::to_value(&inventory)?, now)
            .await?;
        let mut results: Vec<RunResult> = Vec::with_capacity(mine.len() * 3);
        for index in &mine {
            let asset = asset_name(*index);
            let offsite_outcome = if index % NOT_RECOVERABLE_EVERY == 0 {
                Outcome::Failed
            } else {
                Outcome::Passed
            };
            results.push(restore(
                &asset,
                &format!("{asset}-volume"),
                Outcome::Passed,
                now - Duration::hours(2),
                Duration::hours(1),
            ));
            results.push(restore(
                &asset,
                &format!("{asset}-offsite"),
                offsite_outcome,
                now - Duration::hours(1),
                Duration::hours(3),
            ));
            results.push(posture(
                &asset,
                &volume_of(*index),
                Vec::new(),
                now - Duration::minutes(5),
            ));
        }
        for chunk in results.chunks(2_048) {
            store_results(store, agent, &environment, chunk.to_vec()).await;
        }
        for index in &mine {
            set_verdict(
                store,
                &environment,
                &asset_name(*index),
                index % NOT_RECOVERABLE_EVERY != 0,
                Vec::new(),
            )
            .await;
        }
    }
    Ok(())
}

fn volume_delete(index: usize, environments: usize) -> anyhow::Result<CheckRequest> {
    Ok(CheckRequest {
        environment: Environment::parse(&format!("env-{:02}", index % environments))?,
        resource: Resource::parse("railway", &format!("volume:{}", volume_of(index)))?,
        operation: Operation::Delete,
        action: Some("volumeDelete".into()),
    })
}

async fn run() -> anyhow::Result<()> {
    let assets = knob("LIFEBOAT_BENCH_ASSETS", 10_000).max(1);
    let environments = knob("LIFEBOAT_BENCH_ENVIRONMENTS", 20).clamp(1, assets);
    let requests = knob("LIFEBOAT_BENCH_REQUESTS", 1_000).max(1);
    let dir = tempfile::tempdir().context("temp dir")?;
    let config_text = format!(
        "listen = \"127.0.0.1:7443\"\ndata_dir = \"{}\"\nserver_names = [\"127.0.0.1\"]\n",
        dir.path().display()
    );
    let config = Config::parse(&dir.path().join("coordinator.toml"), &config_text)?;
    let store = Store::connect(&config.database_url()).await.context("open store")?;
    println!(
        "guard bench: {assets} assets in {environments} environments, {requests} requests per measurement (SQLite)"
    );
    let seeding = Instant::now();
    seed(&store, assets, environments).await?;
    println!("seeded in {:.1} s", seeding.elapsed().as_secs_f64());

    let guard = Guard::new(store.clone(), &config);
    let caller = Caller {
        name: "bench".into(),
        surface: Surface::Api,
    };
    let building = Instant::now();
    guard.current_placement().await?;
    println!("placement of {assets} assets built in {}", ms(building.elapsed()));

    let mut allowed = Vec::with_capacity(requests);
    let mut refused = Vec::with_capacity(requests);
    for step in 0..requests * 2 {
        // Spread over the assets, alternately one that is recoverable and one that is not.
        let spread = (step / 2 * 7919) % assets;
        let index = if step % 2 == 0 {
            spread | 1
        } else {
            spread - spread % NOT_RECOVERABLE_EVERY
        } % assets;
        let request = volume_delete(index, environments)?;
        let started = Instant::now();
        let answer = guard.check(&request, &caller).await?;
        let took = started.elapsed();
        if answer.decision.allowed {
            allowed.push(took);
        } else {
            refused.push(took);
        }
    }
    println!();
    report("Guard::check, allowed (recorded)", &mut allowed, Some(DECISION_AIM));
    report("Guard::check, refused (recorded)", &mut refused, Some(DECISION_AIM));

    proxy_overhead(guard, &store, requests).await
}

/// The gate in front of a local upstream: the same query straight and through the gate.
async fn proxy_overhead(guard: Guard, store: &Store, requests: usize) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let upstream = axum::Router::new().fallback(|| async {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            r#"{"data":{"me":{"id":"user-1","name":"Bench","email":"bench@example.com"}}}"#,
        )
    });
    let upstream_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_url = format!("http://{}/graphql/v2", upstream_listener.local_addr()?);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(upstream_listener, upstream)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    let gate = Gate::new(
        guard,
        upstream_url.clone(),
        UpstreamToken::new("bench-upstream-token".into()),
        Environment::parse("env-00")?,
    )?;
    let gate_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gate_url = format!("http://{}/graphql/v2", gate_listener.local_addr()?);
    tokio::spawn(lifeboat_coordinator::guard::proxy::serve(
        gate_listener,
        gate,
        shutdown.clone(),
    ));
    let token = store.create_operator_token("bench-caller", None).await?;
    let client = reqwest::Client::new();
    let body =
        serde_json::json!({"query": "query UserMeta {\n\tme {\n\t\tid\n\t\tname\n\t\temail\n\t}\n}\n"}).to_string();
    let send = |url: String| {
        let request = client
            .post(url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.clone());
        async move {
            let started = Instant::now();
            let response = request.send().await?;
            anyhow::ensure!(response.status().is_success(), "status {}", response.status());
            response.bytes().await?;
            Ok::<StdDuration, anyhow::Error>(started.elapsed())
        }
    };
    for _ in 0..20 {
        send(upstream_url.clone()).await?;
        send(gate_url.clone()).await?;
    }
    let mut direct = Vec::with_capacity(requests);
    let mut through = Vec::with_capacity(requests);
    for _ in 0..requests {
        direct.push(send(upstream_url.clone()).await?);
        through.push(send(gate_url.clone()).await?);
    }
    println!();
    let direct_p99 = report("query straight to the upstream", &mut direct, None);
    let gate_p99 = report("query through the gate", &mut through, None);
    let overhead = gate_p99.saturating_sub(direct_p99);
    println!(
        "{:<44} p99 {:>9}  ratio {:.2}x  aim ≤ {}: {}",
        "gate overhead (p99 difference)",
        ms(overhead),
        gate_p99.as_secs_f64() / direct_p99.as_secs_f64().max(1e-9),
        ms(OVERHEAD_AIM),
        if overhead <= OVERHEAD_AIM { "met" } else { "MISSED" }
    );
    shutdown.cancel();
    Ok(())
}
