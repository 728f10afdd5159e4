//! The coordinator's HTTP surfaces, served by axum on `http_listen`:
//!
//! - `/api/v1/*`: the JSON API for operators, behind bearer tokens ([`auth`]).
//! - `/` and `/assets/{environment}/{asset}`: the status page, server-rendered HTML with inline
//!   CSS and SVG, no JavaScript ([`status_page`], [`svg`]).
//! - The guard's decisions on both pages ([`guard_section`]) and `POST /api/v1/guard/check`.
//! - `/metrics`: Prometheus text format ([`metrics`]); `/healthz` and `/readyz`: probes.
//! - `/login`, `/logout`: operator sessions for the status page ([`login`]). The status page,
//!   asset pages and `/metrics` need a session or a bearer token unless `public_status = true`;
//!   the probes are always open.
//!
//! [`listener`] serves it all within connection caps and timeouts. Everything here only reads
//! the store; the one write path into this module is [`record_run`], which the ingest path calls
//! for every stored restore result.

mod api;
mod auth;
mod guard_section;
pub mod listener;
mod login;
mod metrics;
mod status_page;
mod svg;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, VerdictRecord};

pub(crate) use auth::Operator;
pub use listener::HttpLimits;
pub use metrics::{record_run, run_upkeep};
pub use status_page::asset_path;

/// Largest login or logout form.
const MAX_FORM_BYTES: usize = 4 * 1024;

/// Longest `/readyz` waits for the store before answering "not ready".
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the HTTP surfaces need from the running coordinator.
pub struct HttpState {
    pub store: Store,
    /// Sessions this replica holds right now (the session registry's count), for
    /// `lifeboat_connected_agents`: live, where the store's flag lags by a flush interval.
    pub connected_agents: Arc<dyn Fn() -> usize + Send + Sync>,
    /// The address operators reach the status page at (`https://lifeboat.example.com`), so the
    /// API can return absolute links; relative links when `None`. An `https` URL also marks the
    /// session cookie `Secure`.
    pub public_url: Option<String>,
    /// Serve the status page, asset pages and `/metrics` without a login.
    pub public_status: bool,
}

/// The state every handler shares; cheap to clone.
#[derive(Clone)]
struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    connected_agents: Arc<dyn Fn() -> usize + Send + Sync>,
    public_url: Option<String>,
    public_status: bool,
    sessions: login::Sessions,
    metrics: metrics::StoreGauges,
    /// The serialised verdict listing per environment filter, reused for [`api::LISTING_TTL`]:
    /// dashboards polling every asset of a large organisation read it from memory.
    verdict_listings:
        std::sync::Mutex<std::collections::HashMap<Option<String>, (std::time::Instant, axum::body::Bytes)>>,
}

impl AppState {
    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Whether cookies get `Secure`: the public URL is HTTPS, or a proxy says the request came
    /// over HTTPS.
    fn secure_cookies(&self, headers: &HeaderMap) -> bool {
        let public_https = self
            .inner
            .public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"));
        let forwarded_https = headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
        public_https || forwarded_https
    }

    /// The absolute URL of `path` when a public URL is configured, else `path`.
    fn link(&self, path: &str) -> String {
        match &self.inner.public_url {
            Some(base) => format!("{}{path}", base.trim_end_matches('/')),
            None => path.to_owned(),
        }
    }
}

/// Builds the router of every HTTP surface.
pub fn router(state: HttpState) -> Router {
    let state = AppState {
        inner: Arc::new(Inner {
            store: state.store,
            connected_agents: state.connected_agents,
            public_url: state.public_url,
            public_status: state.public_status,
            sessions: login::Sessions::default(),
            metrics: metrics::StoreGauges::new(),
            verdict_listings: std::sync::Mutex::default(),
        }),
    };
    let api = api::routes().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_operator,
    ));
    let viewer = Router::new()
        .route("/", get(status_page::overview))
        .route("/assets/{environment}/{asset}", get(status_page::asset_detail))
        .route("/metrics", get(metrics::scrape))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_viewer,
        ));
    let sessions = Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES));
    Router::new()
        .merge(viewer)
        .merge(sessions)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/api/v1", api)
        .fallback(status_page::not_found)
        .with_state(state)
}

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled, then lets
/// requests in flight finish. Runs the metrics upkeep (histogram maintenance) in the meantime.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let upkeep_stop = shutdown.child_token();
    let upkeep = tokio::spawn(metrics::upkeep(upkeep_stop.clone()));
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, max_connections = limits.max_connections, "serving the API, status page and metrics");
    }
    let served = listener::serve(listener, router, limits, shutdown).await;
    upkeep_stop.cancel();
    if let Err(err) = upkeep.await {
        tracing::warn!(error = %err, "metrics upkeep task failed");
    }
    served
}

/// Liveness: the process runs and answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the store answers.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(READY_TIMEOUT, state.store().ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness probe: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
        }
        Err(_) => {
            tracing::warn!(timeout = ?READY_TIMEOUT, "readiness probe: store did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "store did not answer in time\n")
        }
    }
}

/// The age of the verdict's recovery point now: the verdict stores it as of its last update.
fn backup_age_now(verdict: &VerdictRecord, now: DateTime<Utc>) -> Option<i64> {
    let since_update = (now - verdict.updated_at).num_seconds().max(0);
    verdict.backup_age_seconds.map(|age| age.saturating_add(since_update))
}
