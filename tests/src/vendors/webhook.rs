//! A local webhook receiver for the notifier tests: refuses a delivery whose HMAC-SHA256
//! signature does not verify (401), checks the JSON body and the `X-Lifeboat-*` headers of the
//! others (a mismatch is a 400 and a violation), and keeps the deliveries, so tests can count
//! them by `delivery_id`.

use axum::http::StatusCode;
use lifeboat_coordinator::escalation::webhook::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verify_signature};
use serde_json::Value;

use super::openapi::Auth;
use super::{Exchange, FaultOptions, Reply, Server, Vendor};

/// How the receiver is set up.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// The shared HMAC key.
    pub secret: Vec<u8>,
    pub faults: FaultOptions,
}

impl WebhookOptions {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
            faults: FaultOptions::none(),
        }
    }

    pub fn with_faults(mut self, faults: FaultOptions) -> Self {
        self.faults = faults;
        self
    }
}

/// One accepted delivery.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    pub event: String,
    pub delivery_id: String,
    pub signature: String,
    /// The exact body bytes (what was signed).
    pub raw_body: Vec<u8>,
    pub body: Value,
}

/// The in-memory receiver.
#[derive(Debug)]
pub struct WebhookModel {
    options: WebhookOptions,
    deliveries: Vec<WebhookDelivery>,
}

/// The local webhook receiver.
pub type WebhookSink = Server<WebhookModel>;

impl Server<WebhookModel> {
    /// Starts a receiver on 127.0.0.1:0; point the channel at [`Server::base_url`] + any path.
    pub async fn start(options: WebhookOptions) -> Self {
        let faults = options.faults.clone();
        let model = WebhookModel {
            options,
            deliveries: Vec::new(),
        };
        Self::start_with(model, None, Auth::AsSpecified, faults).await
    }

    /// Returns every accepted delivery (repeats included), in order.
    pub fn deliveries(&self) -> Vec<WebhookDelivery> {
        self.with_model(|model| model.deliveries.clone())
    }
}

impl Vendor for WebhookModel {
    fn authenticate(&self, exchange: &Exchange) -> Result<(), Reply> {
        let signature = header(exchange, SIGNATURE_HEADER).unwrap_or_default();
        if verify_signature(&self.options.secret, &exchange.body, signature) {
            Ok(())
        } else {
            Err(Reply::empty(StatusCode::UNAUTHORIZED))
        }
    }

    fn apply(&mut self, exchange: &Exchange, violations: &mut Vec<String>) -> Reply {
        let mut problems = Vec::new();
        if exchange.method != axum::http::Method::POST {
            problems.push(format!("method {} is not POST", exchange.method));
        }
        if header(exchange, "content-type") != Some("application/json") {
            problems.push("Content-Type is not application/json".to_owned());
        }
        let body: Value = serde_json::from_slice(&exchange.body).unwrap_or(Value::Null);
        for field in [
            "event",
            "dedup_key",
            "environment",
            "asset",
            "severity",
            "summary",
            "reasons",
            "status_url",
            "at",
            "delivery_id",
        ] {
            if body.get(field).is_none() {
                problems.push(format!("body has no {field}"));
            }
        }
        let event = header(exchange, EVENT_HEADER).unwrap_or_default().to_owned();
        let delivery_id = header(exchange, DELIVERY_HEADER).unwrap_or_default().to_owned();
        if body.get("event").and_then(Value::as_str) != Some(event.as_str()) {
            problems.push(format!("{EVENT_HEADER} {event:?} differs from the body's event"));
        }
        if body.get("delivery_id").and_then(Value::as_str) != Some(delivery_id.as_str()) {
            problems.push(format!(
                "{DELIVERY_HEADER} {delivery_id:?} differs from the body's delivery_id"
            ));
        }
        if !problems.is_empty() {
            violations.extend(problems);
            return Reply::empty(StatusCode::BAD_REQUEST);
        }
        self.deliveries.push(WebhookDelivery {
            event,
            delivery_id,
            signature: header(exchange, SIGNATURE_HEADER).unwrap_or_default().to_owned(),
            raw_body: exchange.body.to_vec(),
            body,
        });
        Reply::empty(StatusCode::NO_CONTENT)
    }
}

fn header<'a>(exchange: &'a Exchange, name: &str) -> Option<&'a str> {
    exchange.headers.get(name).and_then(|value| value.to_str().ok())
}
