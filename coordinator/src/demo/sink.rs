//! The demo's ticket system: a local webhook receiver that checks each delivery's
//! `X-Lifeboat-Signature` and prints and keeps what arrived — what Jira or PagerDuty would get.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::escalation::webhook::verify_signature;

/// One delivery the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub body: serde_json::Value,
}

#[derive(Clone)]
struct Sink {
    secret: Arc<Vec<u8>>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A running sink.
pub struct WebhookSink {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl WebhookSink {
    /// Starts on a free loopback port until `shutdown`.
    pub async fn start(secret: &str, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/lifeboat", listener.local_addr()?);
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink {
            secret: Arc::new(secret.as_bytes().to_vec()),
            received: received.clone(),
        };
        let app = axum::Router::new().route("/lifeboat", post(receive)).with_state(sink);
        tokio::spawn(async move {
            let _served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
        });
        Ok(Self { url, received })
    }

    /// What arrived so far.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .map(|received| received.clone())
            .unwrap_or_default()
    }
}

async fn receive(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-lifeboat-signature")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !verify_signature(&sink.secret, &body, signature) {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let event = body["event"].as_str().unwrap_or("").to_owned();
    if let Ok(mut received) = sink.received.lock() {
        received.push(Received { event, body });
    }
    StatusCode::OK
}
