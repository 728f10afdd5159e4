//! A local PagerDuty Events API v2 (`POST /v2/enqueue`) for the notifier tests, validated
//! against the published spec plus the documented limits (`payload.summary` at most 1024
//! characters, `dedup_key` at most 255, a payload on every trigger, a `dedup_key` on every
//! resolve), over an in-memory set of incidents keyed by `dedup_key`.
//!
//! A wrong routing key is answered with a 400 (`Invalid routing key`), as PagerDuty does for an
//! unknown integration; that is a refusal, not a violation.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::openapi::{Auth, Spec};
use super::{Exchange, FaultOptions, Reply, Server, Vendor, openapi_fixture};

/// The PagerDuty spec, relative to `tests/fixtures/openapi`.
pub const SPEC: &str = "pagerduty/events-v2.json";
pub const SUMMARY_MAX_CHARS: usize = 1024;
pub const DEDUP_KEY_MAX_CHARS: usize = 255;

/// How the local PagerDuty is set up.
#[derive(Debug, Clone)]
pub struct PagerDutyOptions {
    /// The one integration key that exists.
    pub routing_key: String,
    pub faults: FaultOptions,
}

impl PagerDutyOptions {
    pub fn new(routing_key: &str) -> Self {
        Self {
            routing_key: routing_key.to_owned(),
            faults: FaultOptions::none(),
        }
    }

    pub fn with_faults(mut self, faults: FaultOptions) -> Self {
        self.faults = faults;
        self
    }
}

/// What PagerDuty made of the events of one `dedup_key`.
#[derive(Debug, Clone)]
pub struct PagerDutyIncident {
    pub dedup_key: String,
    /// Whether an alert is open now.
    pub open: bool,
    /// How many times an alert was opened (a trigger while none was open).
    pub opened: u32,
    pub triggers: u32,
    pub resolves: u32,
    /// The last trigger's payload.
    pub payload: Value,
    /// The last trigger's whole event.
    pub last_trigger: Value,
}

/// The in-memory PagerDuty.
#[derive(Debug)]
pub struct PagerDutyModel {
    options: PagerDutyOptions,
    incidents: BTreeMap<String, PagerDutyIncident>,
    generated_keys: u64,
}

/// The local PagerDuty server.
pub type PagerDutyServer = Server<PagerDutyModel>;

impl Server<PagerDutyModel> {
    /// Starts a local PagerDuty on 127.0.0.1:0 (point the channel's `url` at [`Server::base_url`]).
    pub async fn start(options: PagerDutyOptions) -> Self {
        let spec = Spec::load(&openapi_fixture(SPEC)).expect("load the PagerDuty spec");
        let faults = options.faults.clone();
        let model = PagerDutyModel {
            options,
            incidents: BTreeMap::new(),
            generated_keys: 0,
        };
        Self::start_with(model, Some(spec), Auth::AsSpecified, faults).await
    }

    /// Returns a snapshot of every incident, by dedup key.
    pub fn incidents(&self) -> BTreeMap<String, PagerDutyIncident> {
        self.with_model(|model| model.incidents.clone())
    }
}

impl Vendor for PagerDutyModel {
    fn authenticate(&self, exchange: &Exchange) -> Result<(), Reply> {
        let body = exchange.json();
        if body.get("routing_key").and_then(Value::as_str) == Some(self.options.routing_key.as_str()) {
            Ok(())
        } else {
            Err(invalid_event(vec!["Invalid routing key".into()]))
        }
    }

    fn apply(&mut self, exchange: &Exchange, violations: &mut Vec<String>) -> Reply {
        if exchange.method != Method::POST || exchange.path != "/v2/enqueue" {
            violations.push(format!("unexpected request {} {}", exchange.method, exchange.path));
            return Reply::json(
                StatusCode::NOT_FOUND,
                json!({ "status": "not found", "message": "Not found" }),
            );
        }
        let event = exchange.json();
        let action = event.get("event_action").and_then(Value::as_str).unwrap_or_default();
        let dedup_key = event.get("dedup_key").and_then(Value::as_str).map(str::to_owned);
        let mut problems = Vec::new();
        if let Some(key) = &dedup_key
            && key.chars().count() > DEDUP_KEY_MAX_CHARS
        {
            problems.push(format!("'dedup_key' is longer than {DEDUP_KEY_MAX_CHARS} characters"));
        }
        match action {
            "trigger" => {
                let summary = event.pointer("/payload/summary").and_then(Value::as_str);
                match summary {
                    None => problems.push("'payload' with a 'summary' is required for a trigger".into()),
                    Some(text) if text.chars().count() > SUMMARY_MAX_CHARS => {
                        problems.push(format!(
                            "'payload.summary' is longer than {SUMMARY_MAX_CHARS} characters"
                        ));
                    }
                    Some(_) => {}
                }
            }
            "acknowledge" | "resolve" if dedup_key.is_none() => {
                problems.push(format!("'dedup_key' is required for {action}"));
            }
            "acknowledge" | "resolve" => {}
            other => problems.push(format!("'event_action' {other:?} is invalid")),
        }
        if !problems.is_empty() {
            violations.extend(problems.iter().map(|problem| format!("event: {problem}")));
            return invalid_event(problems);
        }

        let key = dedup_key.unwrap_or_else(|| {
            self.generated_keys += 1;
            format!("generated-{}", self.generated_keys)
        });
        match action {
            "trigger" => {
                let incident = self.incidents.entry(key.clone()).or_insert_with(|| PagerDutyIncident {
                    dedup_key: key.clone(),
                    open: false,
                    opened: 0,
                    triggers: 0,
                    resolves: 0,
                    payload: Value::Null,
                    last_trigger: Value::Null,
                });
                if !incident.open {
                    incident.open = true;
                    incident.opened += 1;
                }
                incident.triggers += 1;
                incident.payload = event.get("payload").cloned().unwrap_or(Value::Null);
                incident.last_trigger = event.clone();
            }
            "resolve" => {
                if let Some(incident) = self.incidents.get_mut(&key) {
                    incident.open = false;
                    incident.resolves += 1;
                }
            }
            _ => {}
        }
        Reply::json(
            StatusCode::ACCEPTED,
            json!({ "status": "success", "message": "Event processed", "dedup_key": key }),
        )
    }
}

fn invalid_event(errors: Vec<String>) -> Reply {
    Reply::json(
        StatusCode::BAD_REQUEST,
        json!({ "status": "invalid event", "message": "Event object is invalid", "errors": errors }),
    )
}
