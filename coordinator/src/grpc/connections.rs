//! Connection caps of the agent listener, applied before TLS.
//!
//! Every accepted connection takes a slot of `max_connections`; until its TLS handshake shows a
//! client certificate of our CA it also takes one of `max_anonymous_connections` and may live at
//! most [`ANONYMOUS_LIFETIME`] (a handshake and an enrollment take well under a second). A
//! connection that finds no slot is closed at once. So strangers can hold at most the anonymous
//! slots, for a bounded time each, and can neither exhaust file descriptors nor crowd out agents.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Longest a connection without a client certificate may live.
pub const ANONYMOUS_LIFETIME: Duration = Duration::from_secs(30);

/// The caps; cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    all: Arc<Semaphore>,
    anonymous: Arc<Semaphore>,
    anonymous_lifetime: Duration,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` connections are open.
    Full,
    /// `max_anonymous_connections` connections have not shown a client certificate yet.
    AnonymousFull,
}

impl ConnectionLimits {
    pub fn new(max_connections: usize, max_anonymous: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new(max_connections)),
            anonymous: Arc::new(Semaphore::new(max_anonymous.min(max_connections))),
            anonymous_lifetime: ANONYMOUS_LIFETIME,
        }
    }

    /// Sets how long a connection without a client certificate may live (tests).
    pub fn with_anonymous_lifetime(mut self, lifetime: Duration) -> Self {
        self.anonymous_lifetime = lifetime;
        self
    }

    /// Admits a just-accepted connection as anonymous, or says which cap is reached (the
    /// caller drops the stream, closing it).
    pub fn admit(&self, stream: TcpStream) -> Result<Guarded, Refused> {
        let slot = self.all.clone().try_acquire_owned().map_err(|_| Refused::Full)?;
        let anonymous = self
            .anonymous
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::AnonymousFull)?;
        Ok(Guarded {
            stream,
            _slot: slot,
            anonymous: Some(Anonymous {
                _slot: anonymous,
                deadline: Box::pin(tokio::time::sleep(self.anonymous_lifetime)),
            }),
        })
    }
}

/// A TCP connection holding its slots until it is dropped.
#[derive(Debug)]
pub struct Guarded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    anonymous: Option<Anonymous>,
}

#[derive(Debug)]
struct Anonymous {
    _slot: OwnedSemaphorePermit,
    /// Reads fail once it fires, which ends the connection.
    deadline: Pin<Box<Sleep>>,
}

impl Guarded {
    /// The TLS handshake verified a client certificate: the connection no longer counts as
    /// anonymous and has no deadline (certificate expiry and revocation end sessions instead).
    pub fn authenticated(&mut self) {
        self.anonymous = None;
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(anonymous) = self.anonymous.as_mut()
            && anonymous.deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "a connection without a client certificate lived too long",
            )));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for Guarded {
    // The same connect info as a bare TCP stream, so `Request::peer_certs` finds the
    // certificates under TLS.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpListener;

    use super::*;

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let address = listener.local_addr().expect("address");
        let (client, server) = tokio::join!(TcpStream::connect(address), listener.accept());
        (client.expect("connect"), server.expect("accept").0)
    }

    #[tokio::test]
    async fn caps_hold_until_connections_close_and_agents_keep_room() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let limits = ConnectionLimits::new(3, 2);
        let (_c1, s1) = pair(&listener).await;
        let (_c2, s2) = pair(&listener).await;
        let (_c3, s3) = pair(&listener).await;
        let mut first = limits.admit(s1).expect("room");
        let second = limits.admit(s2).expect("room");
        assert_eq!(limits.admit(s3).err(), Some(Refused::AnonymousFull));
        // An authenticated connection frees its anonymous slot but keeps its slot overall.
        first.authenticated();
        let (_c4, s4) = pair(&listener).await;
        let third = limits.admit(s4).expect("anonymous room again");
        let (_c5, s5) = pair(&listener).await;
        assert_eq!(limits.admit(s5).err(), Some(Refused::Full));
        drop((second, third));
        let (_c6, s6) = pair(&listener).await;
        assert!(limits.admit(s6).is_ok());
    }

    #[tokio::test]
    async fn anonymous_connections_end_at_their_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let limits = ConnectionLimits::new(4, 4).with_anonymous_lifetime(Duration::from_millis(50));
        let (_client, server) = pair(&listener).await;
        let mut guarded = limits.admit(server).expect("room");
        let mut buffer = [0u8; 8];
        let err = guarded.read(&mut buffer).await.expect_err("deadline");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
