//! The gRPC server: TLS termination and the two services.
//!
//! We accept TCP connections ourselves, run the rustls handshake (with a deadline, off the
//! accept loop so a slow client cannot stall others) and hand finished TLS streams to tonic with
//! `serve_with_incoming`. Client certificates are verified by rustls against our CA; which RPCs
//! require one is decided in [`auth`].

pub mod admission;
pub mod agent_service;
pub mod auth;
pub mod enrollment;

use std::sync::Arc;
use std::time::Duration;

use lifeboat_proto::v1::agent_service_server::AgentServiceServer;
use lifeboat_proto::v1::enrollment_server::EnrollmentServer;
use lifeboat_shared::MAX_MESSAGE_BYTES;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

pub use agent_service::AgentApi;
pub use enrollment::EnrollmentApi;

/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest enrollment request (a CSR and a token).
const MAX_ENROLL_BYTES: usize = 64 * 1024;

/// Serves both services on `listener` until `shutdown`; returns once every connection closed.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    enrollment: EnrollmentApi,
    agents: AgentApi,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (connections, incoming) = mpsc::channel::<Result<TlsStream<TcpStream>, std::io::Error>>(1024);
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        connections,
        shutdown.clone(),
    ));

    let enrollment = EnrollmentServer::new(enrollment).max_decoding_message_size(MAX_ENROLL_BYTES);
    let agents = AgentServiceServer::new(agents)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(enrollment)
        .add_service(agents)
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), shutdown.cancelled_owned())
        .await
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    connections: mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
    shutdown: CancellationToken,
) {
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
        let acceptor = acceptor.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _closing = connections.send(Ok(tls)).await;
                }
                Ok(Err(err)) => tracing::info!(%peer, error = %err, "TLS handshake failed"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
