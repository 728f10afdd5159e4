//! PagerDuty Events API v2: `POST {url}/v2/enqueue` with `trigger` or `resolve` and the
//! notification's `dedup_key`.
//!
//! PagerDuty deduplicates by `dedup_key`: a repeated trigger updates the open alert instead of
//! opening another, and a repeated resolve is a no-op, so retrying after a lost response is
//! safe. Reminders are triggers again with the same key; a channel alert is a trigger with its
//! own key. `202` is success; `400` is permanent (PagerDuty's `message` and `errors` go into the
//! reason); `429` and `5xx` are retried.

use serde_json::{Map, Value, json};

use lifeboat_shared::env_string::EnvString;
use lifeboat_shared::findings::Severity;
use reqwest::Url;

use super::channels::{
    ChannelError, PagerDutyConfig, error_body, http_client, invalid, join_path, parse_http_url, status_error,
    transport_error, truncate_chars,
};
use super::{Delivered, DeliveryError, Event, Notification};

/// PagerDuty's limit on `payload.summary`, in characters.
pub const SUMMARY_MAX_CHARS: usize = 1024;
/// PagerDuty's limit on `dedup_key`, in characters.
pub const DEDUP_KEY_MAX_CHARS: usize = 255;
/// At most this many reasons go into `custom_details` (the whole event must stay under 512 KB).
const REASONS_SENT: usize = 20;
/// Each reason's message and remediation are cut to this many characters.
const REASON_TEXT_MAX_CHARS: usize = 1_000;

/// A PagerDuty service's Events API v2 integration.
#[derive(Debug, Clone)]
pub struct PagerDutyChannel {
    name: String,
    enqueue_url: Url,
    routing_key: EnvString,
    client: reqwest::Client,
}

impl PagerDutyChannel {
    pub(crate) fn from_config(config: &PagerDutyConfig) -> Result<Self, ChannelError> {
        let name = config.name.as_str();
        let base_url = parse_http_url(name, "url", &config.url)?;
        if config.routing_key.value.trim().is_empty() {
            return Err(invalid(name, "routing_key", "must not be empty"));
        }
        Ok(Self {
            name: config.name.clone(),
            enqueue_url: join_path(&base_url, "/v2/enqueue"),
            routing_key: config.routing_key.clone(),
            client: http_client(name, config.timeout)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends one event; safe to repeat (PagerDuty deduplicates by `dedup_key`).
    pub async fn deliver(&self, notification: &Notification) -> Result<Delivered, DeliveryError> {
        if notification.dedup_key.chars().count() > DEDUP_KEY_MAX_CHARS {
            // Cutting it would merge unrelated incidents; `escalation::dedup_key` never does this.
            return Err(DeliveryError::Permanent {
                reason: format!("dedup_key is longer than {DEDUP_KEY_MAX_CHARS} characters"),
            });
        }
        let event = event_body(&self.routing_key.value, notification);
        let response = self
            .client
            .post(self.enqueue_url.clone())
            .json(&event)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            // The status is the answer; the body only echoes the dedup key.
            return Ok(Delivered {
                external_id: Some(notification.dedup_key.clone()),
            });
        }
        let headers = response.headers().clone();
        let text = error_body(response).await;
        Err(status_error(status, &headers, &pagerduty_error_detail(&text)))
    }
}

/// Maps Lifeboat's severities onto PagerDuty's four.
pub fn pagerduty_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Info => "info",
    }
}

/// Builds the Events API v2 body of `notification`.
pub fn event_body(routing_key: &str, notification: &Notification) -> Value {
    if notification.event == Event::Resolve {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": notification.dedup_key,
        });
    }
    let mut reasons: Vec<_> = notification.reasons.iter().collect();
    reasons.sort_by_key(|reason| std::cmp::Reverse(reason.severity));
    let reason_details: Vec<Value> = reasons
        .iter()
        .take(REASONS_SENT)
        .map(|reason| {
            json!({
                "kind": reason.kind.code(),
                "severity": reason.severity.as_str(),
                "subject": reason.subject,
                "message": truncate_chars(&reason.message, REASON_TEXT_MAX_CHARS),
                "remediation": truncate_chars(&reason.remediation, REASON_TEXT_MAX_CHARS),
            })
        })
        .collect();
    let mut custom_details = Map::new();
    custom_details.insert("reasons".into(), Value::Array(reason_details));
    if reasons.len() > REASONS_SENT {
        custom_details.insert("reasons_not_shown".into(), json!(reasons.len() - REASONS_SENT));
    }
    if let Some(url) = &notification.status_url {
        custom_details.insert("status_url".into(), json!(url));
    }
    if notification.event == Event::Reminder {
        custom_details.insert("reminder".into(), json!(true));
    }

    let mut payload = json!({
        "summary": truncate_chars(&notification.summary, SUMMARY_MAX_CHARS),
        "source": format!("lifeboat/{}", notification.environment),
        "severity": pagerduty_severity(notification.severity),
        "timestamp": notification.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "component": notification.asset,
        "group": notification.environment,
        "custom_details": custom_details,
    });
    if let Some(worst) = reasons.first() {
        payload["class"] = json!(worst.kind.code());
    }
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": notification.dedup_key,
        "payload": payload,
        "client": "Lifeboat",
    });
    if let Some(url) = &notification.status_url {
        body["links"] = json!([{ "href": url, "text": format!("{} on the Lifeboat status page", notification.asset) }]);
    }
    body
}

/// Extracts PagerDuty's `message` and `errors` from an error body (or keeps the text).
fn pagerduty_error_detail(body: &str) -> String {
    let Ok(parsed) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    let message = parsed.get("message").and_then(Value::as_str).unwrap_or_default();
    let errors: Vec<&str> = parsed
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| errors.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match (message.is_empty(), errors.is_empty()) {
        (true, true) => body.to_owned(),
        (false, true) => message.to_owned(),
        (true, false) => errors.join("; "),
        (false, false) => format!("{message} ({})", errors.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use lifeboat_shared::findings::{Finding, FindingKind};

    use super::*;

    fn notification(event: Event) -> Notification {
        Notification {
            event,
            dedup_key: "lifeboat-prod-db".into(),
            environment: "prod".into(),
            asset: "db".into(),
            severity: Severity::High,
            summary: "ß".repeat(1500),
            reasons: vec![
                Finding::new(FindingKind::DriftDetected, "db", "drift"),
                Finding::new(FindingKind::RestoreRtoExceeded, "db", "slow"),
            ],
            status_url: Some("https://lifeboat.example/db".into()),
            at: chrono::Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap(),
        }
    }

    #[test]
    fn trigger_carries_payload_links_and_bounded_summary() {
        let body = event_body("key", &notification(Event::Trigger));
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["payload"]["severity"], "error");
        assert_eq!(body["payload"]["class"], "restore.rto_exceeded");
        assert_eq!(body["payload"]["source"], "lifeboat/prod");
        assert_eq!(body["payload"]["timestamp"], "2026-11-25T03:00:00.000Z");
        let summary = body["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), SUMMARY_MAX_CHARS);
        assert!(summary.ends_with('…'));
        assert_eq!(body["links"][0]["href"], "https://lifeboat.example/db");
        assert_eq!(
            body["payload"]["custom_details"]["reasons"][0]["kind"],
            "restore.rto_exceeded"
        );
    }

    #[test]
    fn resolve_sends_only_the_key() {
        let body = event_body("key", &notification(Event::Resolve));
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["dedup_key", "event_action", "routing_key"]);
    }

    #[test]
    fn severities_map() {
        assert_eq!(pagerduty_severity(Severity::Critical), "critical");
        assert_eq!(pagerduty_severity(Severity::Medium), "warning");
        assert_eq!(pagerduty_severity(Severity::Info), "info");
    }

    #[test]
    fn errors_are_summarised() {
        let body = r#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.summary' is missing"]}"#;
        assert_eq!(
            pagerduty_error_detail(body),
            "Event object is invalid ('payload.summary' is missing)"
        );
    }
}
