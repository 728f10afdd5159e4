//! `/metrics` in the Prometheus text format, rendered by `metrics-exporter-prometheus` without
//! its own HTTP listener.
//!
//! Two sources, rendered one after the other:
//!
//! - Events of this process, recorded through the global `metrics` recorder (installed on first
//!   use): `lifeboat_runs_total{outcome}` and the histogram `lifeboat_restore_duration_seconds`,
//!   both from [`record_run`], which the ingest path calls for every stored restore result. The
//!   histogram needs [`run_upkeep`] now and then, which [`super::serve`] does.
//! - Gauges read from the store, shared by every replica: `lifeboat_asset_recoverable`,
//!   `lifeboat_backup_age_seconds`, `lifeboat_rpo_seconds`, `lifeboat_restore_seconds`,
//!   `lifeboat_rto_seconds` (per environment and asset), `lifeboat_agent_connected` (per agent),
//!   `lifeboat_outbox_depth`; plus `lifeboat_connected_agents`, the sessions this replica holds.
//!   They are rebuilt into a fresh recorder at most every [`GAUGE_REFRESH`] (so an asset that
//!   disappears disappears from the output too), and the rendered text is cached in between: a
//!   scrape of 10,000 assets costs two queries every few seconds, not per scraper.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{AppState, backup_age_now};
use crate::store::StoreError;

/// Longest the store-derived gauges are served from the cache.
pub const GAUGE_REFRESH: Duration = Duration::from_secs(5);
/// How often the histogram upkeep runs.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

const RUNS_TOTAL: &str = "lifeboat_runs_total";
const RESTORE_DURATION: &str = "lifeboat_restore_duration_seconds";

/// Histogram buckets for restore durations: seconds to hours.
const RESTORE_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1_800.0, 3_600.0, 7_200.0, 14_400.0, 28_800.0,
];

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process-wide recorder of run events; `None` when another recorder was installed first.
static RUN_METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// A failure to build a fresh set of gauges.
#[derive(Debug, thiserror::Error)]
enum MetricsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the prometheus recorder: {0}")]
    Build(#[from] BuildError),
}

fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new().set_buckets_for_metric(Matcher::Full(RESTORE_DURATION.to_owned()), RESTORE_BUCKETS)
}

/// The global recorder's handle, installing the recorder on first use.
fn run_metrics() -> Option<&'static PrometheusHandle> {
    RUN_METRICS
        .get_or_init(|| {
            let recorder = match builder() {
                Ok(builder) => builder.build_recorder(),
                Err(err) => {
                    tracing::warn!(error = %err, "run metrics disabled: bad histogram buckets");
                    return None;
                }
            };
            let handle = recorder.handle();
            if let Err(err) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %err, "run metrics disabled: another metrics recorder is installed");
                return None;
            }
            metrics::describe_counter!(RUNS_TOTAL, "Restore results stored, by outcome.");
            metrics::describe_histogram!(
                RESTORE_DURATION,
                metrics::Unit::Seconds,
                "Measured time to recover (sandbox created until every check passed) of stored restore results."
            );
            Some(handle)
        })
        .as_ref()
}

/// Records one stored restore result: counts it by `outcome` (`passed`, `failed`, …) and adds
/// its measured time to recover to the duration histogram. Cheap; call it after the commit.
pub fn record_run(outcome: &str, restore_seconds: f64) {
    if run_metrics().is_none() {
        return;
    }
    metrics::counter!(RUNS_TOTAL, "outcome" => outcome.to_owned()).increment(1);
    if restore_seconds.is_finite() && restore_seconds >= 0.0 {
        metrics::histogram!(RESTORE_DURATION).record(restore_seconds);
    }
}

/// Drains the histogram's buckets; without it they grow without bound. [`super::serve`] runs
/// it every few seconds.
pub fn run_upkeep() {
    if let Some(handle) = run_metrics() {
        handle.run_upkeep();
    }
}

/// Runs [`run_upkeep`] until `stop`.
pub(super) async fn upkeep(stop: CancellationToken) {
    let mut ticker = tokio::time::interval(UPKEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => run_upkeep(),
        }
    }
}

/// The store-derived gauges, rendered, and when.
pub(super) struct StoreGauges {
    cached: Mutex<Option<(Instant, String)>>,
}

impl StoreGauges {
    pub(super) fn new() -> Self {
        Self {
            cached: Mutex::new(None),
        }
    }
}

/// `GET /metrics`.
pub(super) async fn scrape(State(state): State<AppState>) -> Response {
    let gauges = {
        // Held across the refresh: concurrent scrapes wait for one refresh instead of each
        // running the queries.
        let mut cached = state.inner.metrics.cached.lock().await;
        match cached.as_ref() {
            Some((at, text)) if at.elapsed() < GAUGE_REFRESH => Ok(text.clone()),
            _ => match render_store_gauges(&state).await {
                Ok(text) => {
                    *cached = Some((Instant::now(), text.clone()));
                    Ok(text)
                }
                Err(err) => Err(err),
            },
        }
    };
    let gauges = match gauges {
        Ok(text) => text,
        Err(err) => {
            tracing::error!(error = %err, "metrics scrape failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response();
        }
    };
    let mut text = run_metrics().map(PrometheusHandle::render).unwrap_or_default();
    text.push_str(&gauges);
    let connected = (state.inner.connected_agents)();
    text.push_str(&format!(
        "# HELP lifeboat_connected_agents Agent sessions this coordinator replica holds.\n\
         # TYPE lifeboat_connected_agents gauge\nlifeboat_connected_agents {connected}\n"
    ));
    ([(CONTENT_TYPE, TEXT_FORMAT)], text).into_response()
}

/// Reads the store and renders its gauges through a fresh recorder.
async fn render_store_gauges(state: &AppState) -> Result<String, MetricsError> {
    let store = state.store();
    let (verdicts, agents, outbox_depth) =
        tokio::try_join!(store.verdicts(None), store.list_agents(), store.outbox_depth())?;
    let now = Utc::now();
    let recorder: PrometheusRecorder = builder()?.build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_gauge!(
            "lifeboat_asset_recoverable",
            "1 when the asset can be recovered right now, else 0."
        );
        metrics::describe_gauge!(
            "lifeboat_backup_age_seconds",
            metrics::Unit::Seconds,
            "Age of the recovery point of the asset's last passing restore test."
        );
        metrics::describe_gauge!("lifeboat_rpo_seconds", metrics::Unit::Seconds, "The asset's RPO.");
        metrics::describe_gauge!(
            "lifeboat_restore_seconds",
            metrics::Unit::Seconds,
            "Measured time to recover in the asset's latest restore test."
        );
        metrics::describe_gauge!("lifeboat_rto_seconds", metrics::Unit::Seconds, "The asset's RTO.");
        metrics::describe_gauge!(
            "lifeboat_agent_connected",
            "1 when a coordinator replica holds a session with the agent."
        );
        metrics::describe_gauge!(
            "lifeboat_outbox_depth",
            "Messages (tickets, pages, webhooks) waiting to be delivered."
        );
        for verdict in &verdicts {
            let labels = [
                ("environment", verdict.environment.clone()),
                ("asset", verdict.asset.clone()),
            ];
            metrics::gauge!("lifeboat_asset_recoverable", &labels).set(if verdict.recoverable { 1.0 } else { 0.0 });
            if let Some(age) = backup_age_now(verdict, now) {
                metrics::gauge!("lifeboat_backup_age_seconds", &labels).set(age as f64);
            }
            if let Some(rpo) = verdict.rpo_seconds {
                metrics::gauge!("lifeboat_rpo_seconds", &labels).set(rpo as f64);
            }
            if let Some(seconds) = verdict.restore_seconds {
                metrics::gauge!("lifeboat_restore_seconds", &labels).set(seconds);
            }
            if let Some(rto) = verdict.rto_seconds {
                metrics::gauge!("lifeboat_rto_seconds", &labels).set(rto as f64);
            }
        }
        for agent in agents.iter().filter(|agent| agent.revoked_at.is_none()) {
            let labels = [
                ("environment", agent.environment.to_string()),
                ("agent", agent.name.clone()),
                ("agent_id", agent.id.to_string()),
            ];
            metrics::gauge!("lifeboat_agent_connected", &labels).set(if agent.connected { 1.0 } else { 0.0 });
        }
        metrics::gauge!("lifeboat_outbox_depth").set(outbox_depth as f64);
    });
    Ok(handle.render())
}
