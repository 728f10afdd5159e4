//! The JSON API, `/api/v1/*` (behind [`super::auth`]). Every answer is a JSON object, so fields
//! can be added without breaking clients; errors are `{"error": "..."}` with a 4xx/5xx status.
//!
//! | route | answer |
//! |---|---|
//! | `GET /verdicts[?environment=]` | `{"recoverable", "verdicts": [...]}`: reasons, backup age vs RPO, restore time vs RTO |
//! | `GET /assets` | `{"assets": [...]}`: every asset with a test or a verdict |
//! | `GET /environments` | `{"recoverable", "environments": [...]}`: per environment and the organisation |
//! | `GET /runs[?asset=&limit=]` | `{"runs": [...]}`: scheduled runs, newest due first |
//! | `GET /findings[?environment=]` | `{"findings": [...]}`: open findings, worst first |
//! | `GET /agents` | `{"agents": [...]}` |
//! | `GET /flips[?environment=&asset=&limit=]` | `{"flips": [...]}`: verdict changes, newest first |
//! | `POST /guard/check` | the guard's decision: `{"allowed", "reasons", "assets": [...], "decision_id", ...}` for `{"environment", "provider", "resource": "KIND:ID", "operation"}` |
//!
//! Limits default to [`DEFAULT_LIMIT`] and must lie in `1..=`[`MAX_LIMIT`]; unknown query
//! parameters are refused, so a typo is a `400`, not a silently ignored filter.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_shared::ids::Environment;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AppState, asset_path, backup_age_now};
use crate::store::{StoreError, VerdictRecord};

/// Rows returned when a request names no limit.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most rows one request may ask for.
pub const MAX_LIMIT: u32 = 1_000;

/// An API failure, as the client sees it. Store errors are logged here and reach the wire only
/// as "storage unavailable".
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid operator token is required: Authorization: Bearer lbo_...")]
    Unauthorized,
    #[error("no such API route")]
    NotFound,
    #[error("storage unavailable")]
    Store(#[from] StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Store(err) => {
                tracing::error!(error = %err, "api request failed in the store");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(format!("bad query: {}", rejection.body_text()))
    }
}

/// Answers are serialised straight from typed views (no intermediate `serde_json::Value`: a
/// list of 10,000 verdicts would otherwise be built twice).
type ApiResult = Result<Response, ApiError>;

fn answer(body: impl Serialize) -> ApiResult {
    Ok(Json(body).into_response())
}

/// `{"<name>": [...]}`, the answer of a list endpoint.
fn listing<T: Serialize>(name: &'static str, items: T) -> ApiResult {
    answer(BTreeMap::from([(name, items)]))
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/verdicts", get(verdicts))
        .route("/assets", get(assets))
        .route("/environments", get(environments))
        .route("/runs", get(runs))
        .route("/findings", get(findings))
        .route("/agents", get(agents))
        .route("/flips", get(flips))
        .route("/guard/check", axum::routing::post(guard_check))
        .fallback(|| async { ApiError::NotFound })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentQuery {
    environment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    asset: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlipsQuery {
    environment: Option<String>,
    asset: Option<String>,
    limit: Option<u32>,
}

/// Validates an `environment` filter (the same rules as agent certificates).
fn environment_filter(environment: Option<&str>) -> Result<Option<&str>, ApiError> {
    match environment {
        None => Ok(None),
        Some(name) => Environment::parse(name)
            .map(|_| Some(name))
            .map_err(|_| ApiError::BadRequest(format!("environment {name:?} is not a valid environment name"))),
    }
}

/// Validates a `limit`: `DEFAULT_LIMIT` when absent, else within `1..=MAX_LIMIT`.
fn bounded_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        Some(limit) => Err(ApiError::BadRequest(format!(
            "limit {limit} is out of range: use 1 to {MAX_LIMIT}"
        ))),
    }
}

/// One asset's verdict on the wire.
#[derive(Debug, Serialize)]
pub(super) struct VerdictView<'a> {
    environment: &'a str,
    asset: &'a str,
    recoverable: bool,
    /// The worst reason's message: what to read first.
    worst_reason: Option<&'a str>,
    reasons: &'a [Finding],
    since: DateTime<Utc>,
    last_passed_at: Option<DateTime<Utc>>,
    /// Age of the recovery point of the last pass, now.
    backup_age_seconds: Option<i64>,
    rpo_seconds: Option<i64>,
    backup_within_rpo: Option<bool>,
    /// Measured time to recover in the latest restore test.
    restore_seconds: Option<f64>,
    rto_seconds: Option<i64>,
    restore_within_rto: Option<bool>,
    updated_at: DateTime<Utc>,
    url: String,
}

impl<'a> VerdictView<'a> {
    fn new(state: &AppState, verdict: &'a VerdictRecord, now: DateTime<Utc>) -> Self {
        let backup_age_seconds = backup_age_now(verdict, now);
        Self {
            environment: &verdict.environment,
            asset: &verdict.asset,
            recoverable: verdict.recoverable,
            worst_reason: verdict.reasons.first().map(|finding| finding.message.as_str()),
            reasons: &verdict.reasons,
            since: verdict.since,
            last_passed_at: verdict.last_passed_at,
            backup_age_seconds,
            rpo_seconds: verdict.rpo_seconds,
            backup_within_rpo: backup_age_seconds.zip(verdict.rpo_seconds).map(|(age, rpo)| age <= rpo),
            restore_seconds: verdict.restore_seconds,
            rto_seconds: verdict.rto_seconds,
            restore_within_rto: verdict
                .restore_seconds
                .zip(verdict.rto_seconds)
                .map(|(seconds, rto)| seconds <= rto as f64),
            updated_at: verdict.updated_at,
            url: state.link(&asset_path(&verdict.environment, &verdict.asset)),
        }
    }
}

/// How long a serialised verdict listing is reused: verdicts change on flips and results, seconds
/// apart at the least, and the listing of 10,000 assets costs tens of milliseconds to build.
pub(super) const LISTING_TTL: std::time::Duration = std::time::Duration::from_secs(1);

async fn verdicts(State(state): State<AppState>, query: Result<Query<EnvironmentQuery>, QueryRejection>) -> ApiResult {
    let Query(query) = query?;
    let environment = environment_filter(query.environment.as_deref())?;
    let key = environment.map(str::to_owned);
    let cached = state.inner.verdict_listings.lock().ok().and_then(|listings| {
        listings
            .get(&key)
            .filter(|(at, _)| at.elapsed() < LISTING_TTL)
            .map(|(_, body)| body.clone())
    });
    if let Some(body) = cached {
        return Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let verdicts = state.store().verdicts(environment).await?;
    let now = Utc::now();
    let views: Vec<VerdictView<'_>> = verdicts
        .iter()
        .map(|verdict| VerdictView::new(&state, verdict, now))
        .collect();
    #[derive(Serialize)]
    struct Answer<'a> {
        recoverable: bool,
        verdicts: Vec<VerdictView<'a>>,
    }
    let body = serde_json::to_vec(&Answer {
        recoverable: views.iter().all(|view| view.recoverable),
        verdicts: views,
    })
    .map(axum::body::Bytes::from)
    .map_err(|err| ApiError::Store(StoreError::Encode(format!("verdict listing: {err}"))))?;
    if let Ok(mut listings) = state.inner.verdict_listings.lock() {
        listings.insert(key, (std::time::Instant::now(), body.clone()));
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One asset: its test (schedule, RPO/RTO) and its verdict, either of which may be missing.
#[derive(Debug, Default, Serialize)]
struct AssetView {
    environment: String,
    asset: String,
    /// `None` until the first verdict.
    recoverable: Option<bool>,
    schedule: Option<String>,
    interval_seconds: Option<i64>,
    rpo_seconds: Option<i64>,
    rto_seconds: Option<i64>,
    paused: Option<bool>,
    next_due_at: Option<DateTime<Utc>>,
    last_passed_at: Option<DateTime<Utc>>,
    backup_age_seconds: Option<i64>,
    restore_seconds: Option<f64>,
    url: String,
}

async fn assets(State(state): State<AppState>, query: Result<Query<EmptyQuery>, QueryRejection>) -> ApiResult {
    let Query(EmptyQuery {}) = query?;
    let (tests, verdicts) = tokio::try_join!(state.store().tests(), state.store().verdicts(None))?;
    let now = Utc::now();
    let blank = |environment: &str, asset: &str| AssetView {
        environment: environment.to_owned(),
        asset: asset.to_owned(),
        url: state.link(&asset_path(environment, asset)),
        ..AssetView::default()
    };
    let mut by_key: BTreeMap<(String, String), AssetView> = BTreeMap::new();
    for test in &tests {
        let mut view = blank(&test.environment, &test.asset);
        view.schedule = Some(test.effective_schedule().to_owned());
        view.interval_seconds = Some(test.interval_seconds);
        view.rpo_seconds = Some(test.rpo_seconds);
        view.rto_seconds = Some(test.rto_seconds);
        view.paused = Some(test.paused);
        view.next_due_at = test.next_due_at;
        by_key.insert((test.environment.clone(), test.asset.clone()), view);
    }
    for verdict in &verdicts {
        let key = (verdict.environment.clone(), verdict.asset.clone());
        let view = by_key
            .entry(key)
            .or_insert_with(|| blank(&verdict.environment, &verdict.asset));
        view.recoverable = Some(verdict.recoverable);
        view.last_passed_at = verdict.last_passed_at;
        view.backup_age_seconds = backup_age_now(verdict, now);
        view.restore_seconds = verdict.restore_seconds;
        view.rpo_seconds = view.rpo_seconds.or(verdict.rpo_seconds);
        view.rto_seconds = view.rto_seconds.or(verdict.rto_seconds);
    }
    let views: Vec<AssetView> = by_key.into_values().collect();
    listing("assets", views)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyQuery {}

/// One environment's verdict.
#[derive(Debug, Serialize)]
struct EnvironmentView<'a> {
    environment: &'a str,
    recoverable: bool,
    assets: usize,
    not_recoverable: usize,
    /// Assets that are not recoverable, by name.
    not_recoverable_assets: Vec<&'a str>,
}

async fn environments(State(state): State<AppState>, query: Result<Query<EmptyQuery>, QueryRejection>) -> ApiResult {
    let Query(EmptyQuery {}) = query?;
    let verdicts = state.store().verdicts(None).await?;
    let mut environments: BTreeMap<&str, EnvironmentView<'_>> = BTreeMap::new();
    for verdict in &verdicts {
        let view = environments
            .entry(verdict.environment.as_str())
            .or_insert_with(|| EnvironmentView {
                environment: &verdict.environment,
                recoverable: true,
                assets: 0,
                not_recoverable: 0,
                not_recoverable_assets: Vec::new(),
            });
        view.assets += 1;
        if !verdict.recoverable {
            view.recoverable = false;
            view.not_recoverable += 1;
            view.not_recoverable_assets.push(&verdict.asset);
        }
    }
    let views: Vec<EnvironmentView<'_>> = environments.into_values().collect();
    #[derive(Serialize)]
    struct Answer<'a> {
        recoverable: bool,
        assets: usize,
        not_recoverable: usize,
        environments: Vec<EnvironmentView<'a>>,
    }
    answer(Answer {
        recoverable: views.iter().all(|view| view.recoverable),
        assets: verdicts.len(),
        not_recoverable: views.iter().map(|view| view.not_recoverable).sum(),
        environments: views,
    })
}

async fn runs(State(state): State<AppState>, query: Result<Query<RunsQuery>, QueryRejection>) -> ApiResult {
    let Query(query) = query?;
    let limit = bounded_limit(query.limit)?;
    let runs = state.store().runs(query.asset.as_deref(), limit).await?;
    listing("runs", runs)
}

/// One open finding, with the asset it belongs to.
#[derive(Debug, Serialize)]
struct FindingView<'a> {
    environment: &'a str,
    asset: &'a str,
    kind: FindingKind,
    severity: Severity,
    subject: &'a str,
    message: &'a str,
    remediation: &'a str,
    evidence: &'a serde_json::Value,
}

async fn findings(State(state): State<AppState>, query: Result<Query<EnvironmentQuery>, QueryRejection>) -> ApiResult {
    let Query(query) = query?;
    let environment = environment_filter(query.environment.as_deref())?;
    let open = state.store().open_findings(environment).await?;
    let mut views: Vec<FindingView<'_>> = open
        .iter()
        .flat_map(|asset| {
            asset.findings.iter().map(|finding| FindingView {
                environment: &asset.environment,
                asset: &asset.asset,
                kind: finding.kind,
                severity: finding.severity,
                subject: &finding.subject,
                message: &finding.message,
                remediation: &finding.remediation,
                evidence: &finding.evidence,
            })
        })
        .collect();
    // Worst first; by environment and asset among equals (the sort is stable).
    views.sort_by_key(|view| std::cmp::Reverse(view.severity));
    listing("findings", views)
}

async fn agents(State(state): State<AppState>, query: Result<Query<EmptyQuery>, QueryRejection>) -> ApiResult {
    let Query(EmptyQuery {}) = query?;
    let agents = state.store().list_agents().await?;
    listing("agents", agents)
}

async fn flips(State(state): State<AppState>, query: Result<Query<FlipsQuery>, QueryRejection>) -> ApiResult {
    let Query(query) = query?;
    let environment = environment_filter(query.environment.as_deref())?;
    let limit = bounded_limit(query.limit)?;
    let flips = state.store().flips(environment, query.asset.as_deref(), limit).await?;
    listing("flips", flips)
}

/// The body of `POST /guard/check`: the fields of `guard check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardCheckBody {
    environment: String,
    provider: String,
    resource: String,
    operation: String,
}

/// `POST /guard/check`: asks the guard, as the operator whose token came with the request.
async fn guard_check(
    guard: Option<axum::Extension<crate::guard::Guard>>,
    operator: Option<axum::Extension<super::Operator>>,
    body: Result<Json<GuardCheckBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Some(axum::Extension(guard)) = guard else {
        return Err(ApiError::BadRequest("the guard is not served here".into()));
    };
    let Json(body) = body.map_err(|rejection| ApiError::BadRequest(format!("bad body: {}", rejection.body_text())))?;
    let bad = |err: &dyn std::fmt::Display| ApiError::BadRequest(err.to_string());
    let request = crate::guard::CheckRequest {
        environment: Environment::parse(&body.environment).map_err(|err| bad(&err))?,
        resource: crate::guard::resources::Resource::parse(&body.provider, &body.resource).map_err(|err| bad(&err))?,
        operation: crate::guard::resources::Operation::parse(&body.operation).map_err(|err| bad(&err))?,
        action: None,
    };
    let caller = crate::guard::Caller {
        name: operator.map_or_else(|| "unknown".to_owned(), |axum::Extension(operator)| operator.0),
        surface: crate::guard::Surface::Api,
    };
    match guard.check(&request, &caller).await {
        Ok(decided) => answer(decided),
        Err(crate::guard::GuardError::Store(err)) => Err(ApiError::Store(err)),
        Err(err) => Err(ApiError::Store(StoreError::Encode(err.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(bounded_limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(bounded_limit(Some(MAX_LIMIT)).ok(), Some(MAX_LIMIT));
        assert!(matches!(bounded_limit(Some(0)), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            bounded_limit(Some(MAX_LIMIT + 1)),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn environment_filters_are_validated() {
        assert_eq!(environment_filter(Some("prod")).ok(), Some(Some("prod")));
        assert!(environment_filter(Some("Prod; DROP")).is_err());
        assert_eq!(environment_filter(None).ok(), Some(None));
    }
}
