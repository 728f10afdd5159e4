//! The gRPC server: TLS termination and the two services.
//!
//! We accept TCP connections ourselves, within the caps of [`connections`], run the rustls
//! handshake (with a deadline, off the accept loop so a slow client cannot stall others) and
//! hand finished TLS streams to tonic with `serve_with_incoming`. Client certificates are
//! verified by rustls against our CA; which RPCs require one is decided in [`auth`], and
//! [`gate`] enforces it before a request body is read. Each connection carries a bounded number
//! of streams and flow-control windows, so one connection cannot make the coordinator buffer
//! more than a few MiB.

pub mod admission;
pub mod agent_service;
pub mod auth;
pub mod connections;
pub mod enrollment;
pub mod gate;

use std::sync::Arc;
use std::time::Duration;

use lifeboat_proto::v1::agent_service_server::AgentServiceServer;
use lifeboat_proto::v1::enrollment_server::EnrollmentServer;
use lifeboat_shared::MAX_MESSAGE_BYTES;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

pub use agent_service::AgentApi;
use connections::{ConnectionLimits, Guarded, Refused};
pub use enrollment::EnrollmentApi;
use gate::AgentGate;

/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest enrollment request (a CSR and a token).
const MAX_ENROLL_BYTES: usize = 64 * 1024;
/// Streams open at once on one connection: an agent needs its session and a renewal.
const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// HTTP/2 flow-control windows: what a peer may send before the coordinator reads it, per
/// stream and per connection.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;
/// Largest header block a peer may send.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Streams a peer may open and reset before the coordinator has accepted them (rapid reset).
const MAX_PENDING_RESETS: usize = 32;
/// Least time between two warnings about refused connections.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Serves both services on `listener` until `shutdown`; returns once every connection closed.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    enrollment: EnrollmentApi,
    agents: AgentApi,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (connections, incoming) = mpsc::channel::<Result<TlsStream<Guarded>, std::io::Error>>(1024);
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        limits,
        connections,
        shutdown.clone(),
    ));

    let enrollment = EnrollmentServer::new(enrollment).max_decoding_message_size(MAX_ENROLL_BYTES);
    let revocations = agents.revocations.clone();
    let agents = AgentServiceServer::new(agents)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
        .add_service(enrollment)
        .add_service(AgentGate::new(agents, revocations))
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), shutdown.cancelled_owned())
        .await
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: ConnectionLimits,
    connections: mpsc::Sender<Result<TlsStream<Guarded>, std::io::Error>>,
    shutdown: CancellationToken,
) {
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = match limits.admit(stream) {
            Ok(stream) => stream,
            Err(refused) => {
                if last_warning.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY) {
                    last_warning = Some(tokio::time::Instant::now());
                    let cap = match refused {
                        Refused::Full => "limits.max_connections",
                        Refused::AnonymousFull => "limits.max_anonymous_connections",
                    };
                    tracing::warn!(%peer, cap, "connection refused: the cap is reached");
                }
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(mut tls)) => {
                    let (stream, session) = tls.get_mut();
                    if session.peer_certificates().is_some() {
                        stream.authenticated();
                    }
                    let _closing = connections.send(Ok(tls)).await;
                }
                Ok(Err(err)) => tracing::info!(%peer, error = %err, "TLS handshake failed"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
