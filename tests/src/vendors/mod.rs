//! Local stand-ins for the services Lifeboat escalates to — Jira Cloud, PagerDuty Events v2 and
//! a webhook receiver — for the notifier contract tests (`tests/tests/notifiers.rs`).
//!
//! Each is an axum server on 127.0.0.1:0 that checks **every** request against the vendor's
//! published OpenAPI spec (trimmed copies in `tests/fixtures/openapi`, see
//! `scripts/trim-openapi.py`) plus the limits the vendors document outside it, keeps an
//! in-memory model (issues, incidents, deliveries) the tests assert on, and injects faults:
//! a seeded fraction of requests is answered with a 500, a 429 with `Retry-After: 1`, or held
//! beyond the client's timeout — some of them *after* the request took effect (the issue exists,
//! the answer is a 500, never comes, or is cut off), which is what proves the channels
//! idempotent.
//!
//! # Layout
//!
//! - [`openapi`]: the request/response validator.
//! - [`jira`]: Jira Cloud REST v3 (search by JQL, create, comment, transitions).
//! - [`pagerduty`]: PagerDuty Events API v2 (`/v2/enqueue`).
//! - [`webhook`]: a receiver that verifies `X-Lifeboat-Signature`.

pub mod jira;
pub mod openapi;
pub mod pagerduty;
pub mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::task::JoinHandle;

use self::openapi::{Auth, HttpRequest, Spec};

/// Returns the path of a fixture under `tests/fixtures/openapi`.
pub fn openapi_fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/openapi")
        .join(relative)
}

/// A way of failing one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// 500 before the request takes effect.
    ServerError,
    /// 429 with `Retry-After: 1` before the request takes effect.
    TooManyRequests,
    /// Held for [`FaultOptions::delay`], then a 504 without effect (it never reached the backend).
    Timeout,
    /// The request takes effect, then the answer is a 500.
    ServerErrorAfterEffect,
    /// The request takes effect, then the answer is held for [`FaultOptions::delay`].
    TimeoutAfterEffect,
    /// The request takes effect, then the connection is cut in the middle of the answer's body.
    DroppedAfterEffect,
}

impl Fault {
    /// Every fault, before and after effect.
    pub const ALL: [Fault; 6] = [
        Fault::ServerError,
        Fault::TooManyRequests,
        Fault::Timeout,
        Fault::ServerErrorAfterEffect,
        Fault::TimeoutAfterEffect,
        Fault::DroppedAfterEffect,
    ];

    /// Whether the request took effect before the fault.
    pub fn after_effect(self) -> bool {
        matches!(
            self,
            Self::ServerErrorAfterEffect | Self::TimeoutAfterEffect | Self::DroppedAfterEffect
        )
    }
}

/// Which requests fail, and how.
///
/// The choice is a hash of the seed, the request (method, path, body) and how many times that
/// same request was seen, so it is deterministic however concurrent requests interleave.
#[derive(Debug, Clone)]
pub struct FaultOptions {
    pub seed: u64,
    /// The fraction of requests (0.0–1.0) that fail.
    pub rate: f64,
    /// The faults to pick from, uniformly.
    pub kinds: Vec<Fault>,
    /// How long timeout faults hold the answer: longer than the client's timeout.
    pub delay: Duration,
    /// When not empty, only requests to these paths fail (`/a/b`, or `POST /a/b` for one method).
    pub only_paths: Vec<String>,
    /// When set, at most this many faults are injected.
    pub limit: Option<usize>,
}

impl Default for FaultOptions {
    fn default() -> Self {
        Self::none()
    }
}

impl FaultOptions {
    /// No faults.
    pub fn none() -> Self {
        Self {
            seed: 0,
            rate: 0.0,
            kinds: Vec::new(),
            delay: Duration::from_secs(3),
            only_paths: Vec::new(),
            limit: None,
        }
    }

    /// A fraction `rate` of requests fails with any of [`Fault::ALL`].
    pub fn all(seed: u64, rate: f64) -> Self {
        Self {
            seed,
            rate,
            kinds: Fault::ALL.to_vec(),
            delay: Duration::from_secs(3),
            only_paths: Vec::new(),
            limit: None,
        }
    }

    /// The first request to `path` fails with `fault`; everything else succeeds.
    pub fn once_on(path: &str, fault: Fault) -> Self {
        Self {
            only_paths: vec![path.to_owned()],
            limit: Some(1),
            ..Self::always(fault)
        }
    }

    /// Every request fails with `fault`.
    pub fn always(fault: Fault) -> Self {
        Self {
            seed: 0,
            rate: 1.0,
            kinds: vec![fault],
            delay: Duration::from_secs(3),
            only_paths: Vec::new(),
            limit: None,
        }
    }
}

/// Draws faults (see [`FaultOptions`]) and remembers what was injected.
#[derive(Debug)]
struct FaultPlan {
    options: FaultOptions,
    seen: Mutex<HashMap<u64, u64>>,
    injected: Mutex<usize>,
}

impl FaultPlan {
    fn new(options: FaultOptions) -> Self {
        Self {
            options,
            seen: Mutex::new(HashMap::new()),
            injected: Mutex::new(0),
        }
    }

    fn draw(&self, method: &str, path: &str, request: &[&[u8]]) -> Option<Fault> {
        if self.options.kinds.is_empty() || self.options.rate <= 0.0 {
            return None;
        }
        if !self.options.only_paths.is_empty()
            && !self
                .options
                .only_paths
                .iter()
                .any(|only| only == path || *only == format!("{method} {path}"))
        {
            return None;
        }
        let fingerprint = request.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, part| {
            part.iter().chain(b"\0").fold(hash, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
            })
        });
        let attempt = {
            let mut seen = lock(&self.seen);
            let count = seen.entry(fingerprint).or_insert(0);
            *count += 1;
            *count
        };
        let draw = splitmix64(self.options.seed ^ fingerprint ^ attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let unit = (draw >> 11) as f64 / (1_u64 << 53) as f64;
        if unit >= self.options.rate {
            return None;
        }
        let mut injected = lock(&self.injected);
        if self.options.limit.is_some_and(|limit| *injected >= limit) {
            return None;
        }
        *injected += 1;
        let index = (splitmix64(draw) % self.options.kinds.len() as u64) as usize;
        self.options.kinds.get(index).copied()
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lowercase names; the value of `authorization` is replaced by its scheme and `<redacted>`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The fault this request was answered with, if any.
    pub fault: Option<Fault>,
}

impl RecordedRequest {
    /// Parses the body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Returns the first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A request handed to a vendor model.
#[derive(Debug)]
pub struct Exchange {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Exchange {
    /// Parses the body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A model's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
}

impl Reply {
    pub fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        Self { status, body: None }
    }

    fn into_response(self) -> Response {
        match self.body {
            Some(body) => (self.status, axum::Json(body)).into_response(),
            None => self.status.into_response(),
        }
    }

    /// Sends the status and the start of the body, then cuts the connection.
    fn into_dropped_response(self) -> Response {
        let start = Bytes::from_static(b"{\"");
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(start),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault: dropped",
            )),
        ];
        let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// What a vendor stand-in does with a request that passed the fault plan.
pub trait Vendor: Send + 'static {
    /// Called once the server is bound, with its base URL (for `self` links).
    fn bound(&mut self, _base_url: &str) {}

    /// Refuses a request whose credentials are wrong (checked before any fault).
    fn authenticate(&self, exchange: &Exchange) -> Result<(), Reply>;

    /// Applies the request to the model and answers it; adds a violation for anything the spec
    /// allows but the vendor documents as refused (limits, shapes).
    fn apply(&mut self, exchange: &Exchange, violations: &mut Vec<String>) -> Reply;
}

struct Shared<V> {
    spec: Option<Spec>,
    auth: Auth,
    vendor: Mutex<V>,
    log: Mutex<Log>,
    faults: FaultPlan,
}

#[derive(Default)]
struct Log {
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
}

/// A running vendor stand-in; stops when dropped.
pub struct Server<V> {
    base_url: String,
    shared: Arc<Shared<V>>,
    task: JoinHandle<()>,
}

impl<V> Drop for Server<V> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<V: Vendor> Server<V> {
    async fn start_with(mut vendor: V, spec: Option<Spec>, auth: Auth, faults: FaultOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind vendor server");
        let address = listener.local_addr().expect("vendor server address");
        let base_url = format!("http://{address}");
        vendor.bound(&base_url);
        let shared = Arc::new(Shared {
            spec,
            auth,
            vendor: Mutex::new(vendor),
            log: Mutex::new(Log::default()),
            faults: FaultPlan::new(faults),
        });
        let router = Router::new().fallback(handle::<V>).with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "vendor server stopped");
            }
        });
        Self { base_url, shared, task }
    }

    /// Returns `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Returns every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).requests.clone()
    }

    /// Returns every violation of the spec or the vendor's documented limits so far.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared.log).violations.clone()
    }

    /// Returns the faults injected so far, in order.
    pub fn injected_faults(&self) -> Vec<Fault> {
        lock(&self.shared.log)
            .requests
            .iter()
            .filter_map(|request| request.fault)
            .collect()
    }

    /// Runs `read` on the model.
    pub fn with_model<R>(&self, read: impl FnOnce(&V) -> R) -> R {
        read(&lock(&self.shared.vendor))
    }
}

async fn handle<V: Vendor>(
    State(shared): State<Arc<Shared<V>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let exchange = Exchange {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
    };
    let label = format!("{} {}", exchange.method, exchange.path);
    let mut violations: Vec<String> = Vec::new();
    if let Some(spec) = &shared.spec {
        let request = HttpRequest {
            method: exchange.method.as_str(),
            path: &exchange.path,
            query: exchange.query.as_deref(),
            headers: &exchange.headers,
            body: &exchange.body,
        };
        violations.extend(
            spec.validate_request(&request, shared.auth)
                .iter()
                .map(ToString::to_string),
        );
    }

    let refusal = lock(&shared.vendor).authenticate(&exchange).err();
    let fault = if refusal.is_none() {
        let request: [&[u8]; 3] = [
            exchange.method.as_str().as_bytes(),
            exchange.path.as_bytes(),
            &exchange.body,
        ];
        shared.faults.draw(exchange.method.as_str(), &exchange.path, &request)
    } else {
        None
    };
    let index = {
        let mut log = lock(&shared.log);
        log.requests.push(RecordedRequest {
            method: exchange.method.to_string(),
            path: exchange.path.clone(),
            query: exchange.query.clone(),
            headers: redacted_headers(&exchange.headers),
            body: exchange.body.to_vec(),
            fault,
        });
        log.requests.len() - 1
    };
    let record = |found: Vec<String>| {
        if !found.is_empty() {
            let mut log = lock(&shared.log);
            log.violations.extend(
                found
                    .into_iter()
                    .map(|violation| format!("request #{index} {label}: {violation}")),
            );
        }
    };
    record(std::mem::take(&mut violations));
    if let Some(refusal) = refusal {
        return refusal.into_response();
    }

    match fault {
        Some(Fault::ServerError) => return fault_reply(StatusCode::INTERNAL_SERVER_ERROR).into_response(),
        Some(Fault::TooManyRequests) => {
            let mut response = fault_reply(StatusCode::TOO_MANY_REQUESTS).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Some(Fault::Timeout) => {
            tokio::time::sleep(shared.faults.options.delay).await;
            return fault_reply(StatusCode::GATEWAY_TIMEOUT).into_response();
        }
        _ => {}
    }

    let reply = lock(&shared.vendor).apply(&exchange, &mut violations);
    if let (Some(spec), Some(body)) = (&shared.spec, &reply.body)
        && reply.status.is_success()
    {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let found = spec.validate_response(exchange.method.as_str(), &exchange.path, reply.status.as_u16(), &bytes);
        violations.extend(found.iter().map(|violation| format!("(our fake's answer) {violation}")));
    }
    record(violations);

    match fault {
        Some(Fault::ServerErrorAfterEffect) => fault_reply(StatusCode::INTERNAL_SERVER_ERROR).into_response(),
        Some(Fault::TimeoutAfterEffect) => {
            tokio::time::sleep(shared.faults.options.delay).await;
            reply.into_response()
        }
        Some(Fault::DroppedAfterEffect) => reply.into_dropped_response(),
        _ => reply.into_response(),
    }
}

fn fault_reply(status: StatusCode) -> Reply {
    Reply::json(
        status,
        serde_json::json!({ "errorMessages": [format!("injected fault: {status}")], "errors": {} }),
    )
}

fn redacted_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or("<binary>");
            let shown = if *name == header::AUTHORIZATION {
                let scheme = value.split_whitespace().next().unwrap_or_default();
                format!("{scheme} <redacted>")
            } else {
                value.to_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

/// Locks a mutex, recovering the data of a poisoned one (a panicking test thread).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_draws_are_deterministic_and_near_the_rate() {
        let plan = |seed| FaultPlan::new(FaultOptions::all(seed, 0.3));
        let first = plan(7);
        let second = plan(7);
        let draws: Vec<Option<Fault>> = (0..1000)
            .map(|i: u32| first.draw("GET", "/", &[&i.to_le_bytes()]))
            .collect();
        let again: Vec<Option<Fault>> = (0..1000)
            .map(|i: u32| second.draw("GET", "/", &[&i.to_le_bytes()]))
            .collect();
        assert_eq!(draws, again);
        let failed = draws.iter().filter(|draw| draw.is_some()).count();
        assert!((230..370).contains(&failed), "{failed}");
        for fault in Fault::ALL {
            assert!(draws.contains(&Some(fault)), "{fault:?} never drawn");
        }
        // The same request drawn again is a new attempt.
        let repeated: Vec<Option<Fault>> = (0..50).map(|_| first.draw("GET", "/", &[b"same"])).collect();
        assert!(repeated.iter().any(Option::is_none) && repeated.iter().any(Option::is_some));
    }

    #[test]
    fn faults_can_be_limited_to_one_path_and_count() {
        let plan = FaultPlan::new(FaultOptions::once_on("/a", Fault::ServerError));
        assert_eq!(plan.draw("GET", "/b", &[b"x"]), None);
        assert_eq!(plan.draw("GET", "/a", &[b"x"]), Some(Fault::ServerError));
        assert_eq!(plan.draw("GET", "/a", &[b"x"]), None);
    }
}
