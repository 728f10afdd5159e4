//! The HTTP listener: serves the router on `http_listen` so that slow or idle clients cannot
//! exhaust file descriptors or crowd out others (a slowloris of 20,000 connections once did).
//!
//! - At most `max_connections` connections are open. When a new one arrives and all are taken,
//!   the oldest connection with no request in progress — one still trickling its headers, or an
//!   idle keep-alive — is closed to make room; only when every connection is busy is the new
//!   one refused.
//! - A connection must start its first request within `header_timeout`, and HTTP/1 request
//!   headers must arrive within `header_timeout` too (hyper's header read timeout).
//! - A request must be answered within `request_timeout` (503 otherwise).
//!
//! Shutdown stops accepting, lets requests in flight finish and closes idle connections.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// Least time between two warnings about refused connections or failed accepts.
const WARNING_EVERY: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 connection may carry at once.
const MAX_HTTP2_STREAMS: u32 = 32;

/// The caps and deadlines of the listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    /// The defaults of `[limits]`.
    fn default() -> Self {
        let limits = crate::config::LimitsConfig::default();
        Self {
            max_connections: limits.max_http_connections as usize,
            header_timeout: limits.http_header_timeout.into(),
            request_timeout: limits.http_request_timeout.into(),
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        answer_within,
    ));
    let table = Table::new(limits.max_connections.max(1));
    let connections = TaskTracker::new();
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut warn = |message: &str, detail: String| {
        if last_warning.is_none_or(|at| at.elapsed() >= WARNING_EVERY) {
            last_warning = Some(tokio::time::Instant::now());
            tracing::warn!(%detail, "{message}");
        }
    };
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn("HTTP accept failed", err.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = table.admit() else {
            warn(
                "HTTP connection refused: every connection is busy",
                format!("limits.max_http_connections = {}", table.max),
            );
            continue;
        };
        connections.spawn(serve_connection(stream, router.clone(), slot, limits, shutdown.clone()));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Serves one connection until it ends, is evicted, misses its first-request deadline, or
/// shutdown closes it gracefully.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    slot: Slot,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let state = slot.state.clone();
    let service = tower::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let busy = Busy::start(&state);
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(busy);
            response
        }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_HTTP2_STREAMS);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let first_request = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(first_request);
    let mut closing = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(error = %err, "HTTP connection ended with an error");
                }
                return;
            }
            () = slot.state.evict.cancelled() => return,
            () = &mut first_request, if !slot.state.requested.load(Ordering::Relaxed) => return,
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answers 503 when a request takes longer than the configured time.
async fn answer_within(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the request took too long to answer\n").into_response(),
    }
}

/// The open connections, oldest first.
struct Table {
    max: usize,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    connections: BTreeMap<u64, Arc<ConnectionState>>,
}

#[derive(Default)]
struct ConnectionState {
    /// Requests being answered right now.
    in_flight: AtomicUsize,
    /// Whether a request ever started.
    requested: AtomicBool,
    /// Closes the connection to make room for a new one.
    evict: CancellationToken,
}

/// A connection's place in the table, given back when dropped.
struct Slot {
    id: u64,
    state: Arc<ConnectionState>,
    open: Arc<Mutex<Open>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connections
            .remove(&self.id);
    }
}

/// A request in progress on a connection.
struct Busy(Arc<ConnectionState>);

impl Busy {
    fn start(state: &Arc<ConnectionState>) -> Self {
        state.requested.store(true, Ordering::Relaxed);
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Table {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::new(Mutex::new(Open::default())),
        }
    }

    /// A slot for a new connection, closing the oldest idle one when all are taken; `None`
    /// when every connection is busy.
    fn admit(&self) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.connections.len() >= self.max {
            let idle = open
                .connections
                .iter()
                .find(|(_, state)| state.in_flight.load(Ordering::Relaxed) == 0)
                .map(|(id, _)| *id)?;
            if let Some(evicted) = open.connections.remove(&idle) {
                evicted.evict.cancel();
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let state = Arc::new(ConnectionState::default());
        open.connections.insert(id, state.clone());
        Some(Slot {
            id,
            state,
            open: self.open.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_closes_the_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let table = Table::new(2);
        let first = table.admit().expect("room");
        let second = table.admit().expect("room");
        let busy_second = Busy::start(&second.state);
        let third = table.admit().expect("the idle first one makes room");
        assert!(first.state.evict.is_cancelled());
        assert!(!second.state.evict.is_cancelled());
        let busy_third = Busy::start(&third.state);
        assert!(table.admit().is_none(), "every connection is busy");
        drop(busy_second);
        let fourth = table.admit().expect("the second one is idle again");
        assert!(second.state.evict.is_cancelled());
        drop((busy_third, first, second));
        assert_eq!(table.open.lock().expect("lock").connections.len(), 2);
        drop((third, fourth));
        assert!(table.open.lock().expect("lock").connections.is_empty());
    }
}
