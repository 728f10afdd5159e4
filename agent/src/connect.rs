//! Opening a gRPC channel to the coordinator over our own rustls configuration.
//!
//! Enrollment uses a CA-pin verifier and no client certificate; everything else uses the agent's
//! certificate and trusts only the coordinator CA. Both go through [`channel`], which does the
//! TCP connect and TLS handshake itself and hands tonic the encrypted stream.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// A coordinator address that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid coordinator URL {0:?}: expected https://host:port")]
    BadUrl(String),
    #[error("cannot connect to the coordinator at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The host and port of an `https://host:port` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorAddress {
    pub host: String,
    pub port: u16,
}

impl CoordinatorAddress {
    pub fn parse(url: &str) -> Result<Self, ConnectError> {
        let bad = || ConnectError::BadUrl(url.chars().take(200).collect());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("https") {
            return Err(bad());
        }
        let host = uri.host().ok_or_else(bad)?.trim_matches(['[', ']']).to_owned();
        Ok(Self {
            host,
            port: uri.port_u16().unwrap_or(443),
        })
    }
}

/// Connects to `url` with `tls`; fails fast (10 s) so the caller's backoff decides what next.
pub async fn channel(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Channel, ConnectError> {
    let address = CoordinatorAddress::parse(url)?;
    let server_name = ServerName::try_from(address.host.clone())
        .map_err(|_| ConnectError::BadUrl(url.chars().take(200).collect()))?;
    let endpoint = Endpoint::from_shared(format!("http://{}:{}", bracket(&address.host), address.port))
        .map_err(|_| ConnectError::BadUrl(url.chars().take(200).collect()))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let connector = TlsConnector::from(tls);
    let host = address.host.clone();
    let port = address.port;
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let host = host.clone();
            async move {
                let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect((host.as_str(), port)))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|source| ConnectError::Transport {
            url: url.to_owned(),
            source,
        })
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The full error chain of a transport error, for messages (tonic hides the cause otherwise).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_coordinator_urls() {
        assert_eq!(
            CoordinatorAddress::parse("https://lifeboat.example.com:7443").expect("valid"),
            CoordinatorAddress {
                host: "lifeboat.example.com".into(),
                port: 7443
            }
        );
        assert_eq!(
            CoordinatorAddress::parse("https://[::1]:7443").expect("valid").host,
            "::1"
        );
        assert!(CoordinatorAddress::parse("http://insecure:1").is_err());
        assert!(CoordinatorAddress::parse("nonsense").is_err());
    }
}
