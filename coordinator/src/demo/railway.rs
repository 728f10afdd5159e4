//! The demo's Railway: a local GraphQL endpoint that answers like Railway's API for the one call
//! the story needs (`volumeDelete`), accepts only the real token — which only Lifeboat's gate
//! holds — and remembers which volumes it "deleted". And the AI coding agent of the incident,
//! reduced to its one call, sent through the gate with an operator token of its own.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The document Railway's CLI sends to delete a volume (`src/gql/mutations/strings/VolumeDelete.graphql`).
pub const VOLUME_DELETE: &str = "mutation VolumeDelete($id: String!) {\n  volumeDelete(volumeId: $id)\n}";

#[derive(Clone)]
struct Railway {
    token: Arc<String>,
    deleted: Arc<Mutex<Vec<String>>>,
}

/// A running stand-in for Railway's API.
pub struct RailwayStub {
    pub url: String,
    deleted: Arc<Mutex<Vec<String>>>,
}

impl RailwayStub {
    /// Starts on a free loopback port until `shutdown`, accepting only `token`.
    pub async fn start(token: &str, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/graphql/v2", listener.local_addr()?);
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let railway = Railway {
            token: Arc::new(token.to_owned()),
            deleted: deleted.clone(),
        };
        let app = axum::Router::new().fallback(answer).with_state(railway);
        tokio::spawn(async move {
            let _served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
        });
        Ok(Self { url, deleted })
    }

    /// The volumes deleted so far.
    pub fn deleted(&self) -> Vec<String> {
        self.deleted.lock().map(|deleted| deleted.clone()).unwrap_or_default()
    }
}

async fn answer(State(railway): State<Railway>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let authorized = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == format!("Bearer {}", railway.token));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"message":"Not Authorized"}]}"#.to_owned(),
        );
    }
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match request["variables"]["id"].as_str() {
        Some(volume)
            if request["query"]
                .as_str()
                .is_some_and(|query| query.contains("volumeDelete")) =>
        {
            if let Ok(mut deleted) = railway.deleted.lock() {
                deleted.push(volume.to_owned());
            }
            (StatusCode::OK, r#"{"data":{"volumeDelete":true}}"#.to_owned())
        }
        _ => (StatusCode::OK, r#"{"data":null}"#.to_owned()),
    }
}

/// The AI coding agent's call: `volumeDelete` of `volume` through the gate at `gate_url`;
/// returns whether it went through and what came back (the gate's reasons when refused).
pub async fn agent_deletes_volume(gate_url: &str, token: &str, volume: &str) -> anyhow::Result<(bool, String)> {
    let body =
        serde_json::json!({"query": VOLUME_DELETE, "variables": {"id": volume}, "operationName": "VolumeDelete"});
    let answer: serde_json::Value = reqwest::Client::new()
        .post(gate_url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    if answer["data"]["volumeDelete"] == true {
        return Ok((true, answer.to_string()));
    }
    let message = answer["errors"][0]["message"]
        .as_str()
        .unwrap_or("no answer")
        .to_owned();
    Ok((false, message))
}
