//! The Railway gate, `guard proxy`: a GraphQL endpoint that AI agents and pipelines call
//! instead of Railway's API. Only the gate holds the real Railway token; each caller has an
//! operator token of its own (`Authorization: Bearer lbo_…`), so each is named in the decisions
//! and can be revoked alone.
//!
//! Queries pass through. A request with mutations is read by [`super::graphql`]: every
//! destructive call in it is put to the guard (one recorded decision each) and the request is
//! forwarded only if every one is allowed; anything the gate cannot read — malformed, batched,
//! unknown or mis-cased mutations — is refused. A refusal is a GraphQL error with the reasons
//! (and, through the guard, a `guard.refused` ticket). The gate never logs or returns the
//! upstream token, and adds nothing to what the caller asked.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lifeboat_shared::ids::Environment;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::graphql::{self, DestructiveCall, GraphqlError};
use super::{Caller, CheckRequest, Guard, Surface};
use crate::operators::operator_of;

/// Largest request body the gate reads.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long the upstream may take to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// The upstream API token. Shown nowhere: `Debug` prints a placeholder.
#[derive(Clone)]
pub struct UpstreamToken(String);

impl UpstreamToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }
}

impl std::fmt::Debug for UpstreamToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamToken(…)")
    }
}

/// What the gate needs.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<GateInner>,
}

struct GateInner {
    guard: Guard,
    upstream: String,
    token: UpstreamToken,
    environment: Environment,
    client: reqwest::Client,
}

impl Gate {
    /// A gate forwarding to `upstream` (Railway's GraphQL endpoint) with `token`, deciding in
    /// `environment`.
    pub fn new(guard: Guard, upstream: String, token: UpstreamToken, environment: Environment) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(UPSTREAM_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            inner: Arc::new(GateInner {
                guard,
                upstream,
                token,
                environment,
                client,
            }),
        })
    }

    /// The gate's routes: every path takes GraphQL POSTs (Railway's is `/graphql/v2`).
    pub fn router(self) -> Router {
        Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self)
    }
}

/// Serves the gate on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, gate: Gate, shutdown: CancellationToken) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, upstream = %gate.inner.upstream, "serving the Railway gate");
    }
    axum::serve(listener, gate.router())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// A GraphQL error answer: `{"errors": [{"message", "extensions"}], "data": null}`.
fn refusal(status: StatusCode, message: &str, extensions: serde_json::Value) -> Response {
    (
        status,
        axum::Json(json!({
            "errors": [{"message": message, "extensions": extensions}],
            "data": null,
        })),
    )
        .into_response()
}

async fn handle(State(gate): State<Gate>, method: axum::http::Method, headers: HeaderMap, body: Bytes) -> Response {
    let gate = &gate.inner;
    let caller = match authenticate(gate, &headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if method != axum::http::Method::POST {
        return refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "Lifeboat's gate takes GraphQL requests as POST application/json",
            json!({"code": "BAD_REQUEST"}),
        );
    }
    let inspection = match graphql::inspect(&body, &gate.guard.config().allow_mutations) {
        Ok(inspection) => inspection,
        Err(err) => {
            tracing::warn!(caller = %caller, error = %err, "gate: request refused before any decision");
            let code = match err {
                GraphqlError::UnknownMutation(_) | GraphqlError::CaseMismatch { .. } => "REFUSED_UNKNOWN_MUTATION",
                _ => "REFUSED_MALFORMED",
            };
            return refusal(
                StatusCode::BAD_REQUEST,
                &format!("refused by Lifeboat's gate: {err}"),
                json!({"code": code}),
            );
        }
    };
    match decide_every_call(gate, &caller, &inspection.destructive).await {
        Ok(decided) if decided.refused.is_empty() => forward(gate, &headers, body).await,
        Ok(decided) => decided.into_refusal(),
        Err(response) => response,
    }
}

/// The operator behind the request, or the answer that turns it away.
async fn authenticate(gate: &GateInner, headers: &HeaderMap) -> Result<String, Response> {
    match operator_of(gate.guard.store(), headers).await {
        Ok(Some(name)) => Ok(name),
        Ok(None) => Err(refusal(
            StatusCode::UNAUTHORIZED,
            "Lifeboat's gate needs your own operator token: Authorization: Bearer lbo_… (lifeboat-coordinator \
             operator-token create)",
            json!({"code": "UNAUTHENTICATED"}),
        )),
        Err(err) => {
            tracing::error!(error = %err, "gate: store unavailable");
            Err(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable",
                json!({"code": "UNAVAILABLE"}),
            ))
        }
    }
}

/// The guard's answers to every destructive call of one request.
struct Decided {
    /// Every decision's id.
    decisions: Vec<String>,
    /// The refused calls, with their reasons.
    refused: Vec<serde_json::Value>,
}

impl Decided {
    /// The GraphQL error naming every refused call and its reasons.
    fn into_refusal(self) -> Response {
        let message = self
            .refused
            .iter()
            .map(|call| {
                let reasons: Vec<&str> = call["reasons"]
                    .as_array()
                    .map(|reasons| reasons.iter().filter_map(serde_json::Value::as_str).collect())
                    .unwrap_or_default();
                format!(
                    "{} of {} refused by Lifeboat: {}",
                    call["mutation"].as_str().unwrap_or_default(),
                    call["resource"].as_str().unwrap_or_default(),
                    reasons.join("; ")
                )
            })
            .collect::<Vec<_>>()
            .join(" | ");
        refusal(
            StatusCode::OK,
            &message,
            json!({"code": "REFUSED_BY_LIFEBOAT", "refused": self.refused, "decisions": self.decisions}),
        )
    }
}

/// Puts every destructive call to the guard (each decision recorded); a failure to decide is
/// an answer that refuses the whole request.
async fn decide_every_call(gate: &GateInner, caller: &str, calls: &[DestructiveCall]) -> Result<Decided, Response> {
    let mut decided = Decided {
        decisions: Vec::new(),
        refused: Vec::new(),
    };
    let who = Caller {
        name: caller.to_owned(),
        surface: Surface::Proxy,
    };
    for call in calls {
        let request = CheckRequest {
            environment: gate.environment.clone(),
            resource: call.resource.clone(),
            operation: call.operation,
            action: Some(call.field.clone()),
        };
        let answer = gate.guard.check(&request, &who).await.map_err(|err| {
            tracing::error!(caller = %caller, error = %err, "gate: cannot decide; refusing");
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "refused by Lifeboat's gate: the decision could not be made (storage unavailable)",
                json!({"code": "UNAVAILABLE"}),
            )
        })?;
        decided.decisions.push(answer.decision_id.to_string());
        if !answer.decision.allowed {
            decided.refused.push(json!({
                "mutation": call.field,
                "resource": call.resource.label(),
                "operation": call.operation,
                "decision_id": answer.decision_id.to_string(),
                "reasons": answer.decision.reasons,
            }));
        }
    }
    Ok(decided)
}

/// Sends the caller's request, unchanged, to the upstream with the gate's token; returns the
/// upstream's status, content type and body.
async fn forward(gate: &GateInner, headers: &HeaderMap, body: Bytes) -> Response {
    let mut request = gate
        .client
        .post(&gate.upstream)
        .bearer_auth(&gate.token.0)
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(accept) = headers.get(ACCEPT) {
        request = request.header(ACCEPT, accept);
    }
    match request.send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = answer.headers().get(CONTENT_TYPE).cloned();
            match answer.bytes().await {
                Ok(bytes) => {
                    let mut response = (status, bytes).into_response();
                    if let Some(content_type) = content_type {
                        response.headers_mut().insert(CONTENT_TYPE, content_type);
                    }
                    response
                }
                Err(err) => upstream_failed(&err),
            }
        }
        Err(err) => upstream_failed(&err),
    }
}

fn upstream_failed(err: &reqwest::Error) -> Response {
    // reqwest's errors carry the URL, never request headers: no token in the log.
    tracing::warn!(error = %err, "gate: the upstream did not answer");
    refusal(
        StatusCode::BAD_GATEWAY,
        "the upstream API did not answer",
        json!({"code": "UPSTREAM_UNAVAILABLE"}),
    )
}
