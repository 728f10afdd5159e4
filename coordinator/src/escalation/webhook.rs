//! Generic webhook: the notification as a JSON body, signed with HMAC-SHA256.
//!
//! Headers: `X-Lifeboat-Event` (`trigger`, `resolve`, …), `X-Lifeboat-Delivery` (the body's
//! `delivery_id`) and `X-Lifeboat-Signature: sha256=<hex HMAC-SHA256(secret, body bytes)>`.
//! The delivery id is derived from the dedup key, the event and the flip time, so every retry of
//! one notification carries the same id and a receiver can drop repeats. Any 2xx is a success.
//! Receivers check the signature with [`verify_signature`].

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use lifeboat_shared::env_string::EnvString;
use lifeboat_shared::findings::{Finding, Severity};
use reqwest::Url;

use super::channels::{
    ChannelError, WebhookConfig, error_body, http_client, invalid, parse_http_url, status_error, transport_error,
};
use super::{Delivered, DeliveryError, Notification};

pub const EVENT_HEADER: &str = "X-Lifeboat-Event";
pub const DELIVERY_HEADER: &str = "X-Lifeboat-Delivery";
pub const SIGNATURE_HEADER: &str = "X-Lifeboat-Signature";

type HmacSha256 = Hmac<Sha256>;

/// An HTTP endpoint receiving signed notifications.
#[derive(Debug, Clone)]
pub struct WebhookChannel {
    name: String,
    url: EnvString,
    parsed_url: Url,
    secret: EnvString,
    client: reqwest::Client,
}

/// The JSON body a webhook receives.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    pub event: &'a str,
    pub dedup_key: &'a str,
    pub environment: &'a str,
    pub asset: &'a str,
    pub severity: Severity,
    pub summary: &'a str,
    pub reasons: &'a [Finding],
    pub status_url: Option<&'a str>,
    pub at: String,
    pub delivery_id: String,
}

impl WebhookChannel {
    pub(crate) fn from_config(config: &WebhookConfig) -> Result<Self, ChannelError> {
        let name = config.name.as_str();
        let parsed_url = parse_http_url(name, "url", &config.url.value)?;
        if config.secret.value.is_empty() {
            return Err(invalid(name, "secret", "must not be empty"));
        }
        Ok(Self {
            name: config.name.clone(),
            url: config.url.clone(),
            parsed_url,
            secret: config.secret.clone(),
            client: http_client(name, config.timeout)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the URL as configured (with `${VAR}` placeholders), safe to show.
    pub fn url_template(&self) -> &str {
        &self.url.template
    }

    /// POSTs the signed body once; any 2xx is a delivery.
    pub async fn deliver(&self, notification: &Notification) -> Result<Delivered, DeliveryError> {
        let delivery_id = delivery_id(notification);
        let body = body_bytes(notification, &delivery_id).map_err(|error| DeliveryError::Permanent {
            reason: format!("encode webhook body: {error}"),
        })?;
        let signature = sign(self.secret.value.as_bytes(), &body).ok_or_else(|| DeliveryError::Permanent {
            reason: "webhook secret is not usable as an hmac key".into(),
        })?;
        let response = self
            .client
            .post(self.parsed_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, notification.event.as_str())
            .header(DELIVERY_HEADER, &delivery_id)
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(Delivered::default());
        }
        let headers = response.headers().clone();
        let text = error_body(response).await;
        Err(status_error(status, &headers, &text))
    }
}

/// Returns the stable id of a notification's delivery: the first 32 hex digits of
/// SHA-256(dedup_key, event, at).
pub fn delivery_id(notification: &Notification) -> String {
    let digest = Sha256::new()
        .chain_update(notification.dedup_key.as_bytes())
        .chain_update(b"\n")
        .chain_update(notification.event.as_str().as_bytes())
        .chain_update(b"\n")
        .chain_update(notification.at.to_rfc3339().as_bytes())
        .finalize();
    hex::encode(&digest[..16])
}

/// Returns the exact body bytes that are signed and sent.
pub fn body_bytes(notification: &Notification, delivery_id: &str) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&WebhookBody {
        event: notification.event.as_str(),
        dedup_key: &notification.dedup_key,
        environment: &notification.environment,
        asset: &notification.asset,
        severity: notification.severity,
        summary: &notification.summary,
        reasons: &notification.reasons,
        status_url: notification.status_url.as_deref(),
        at: notification.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        delivery_id: delivery_id.to_owned(),
    })
}

/// Returns the `X-Lifeboat-Signature` value of `body`: `sha256=<hex HMAC-SHA256>`.
pub fn sign(secret: &[u8], body: &[u8]) -> Option<String> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(body);
    Some(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
}

/// Checks an `X-Lifeboat-Signature` header against `body` in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_digest) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::super::Event;
    use super::*;

    fn notification(event: Event) -> Notification {
        Notification {
            event,
            dedup_key: "lifeboat-prod-db".into(),
            environment: "prod".into(),
            asset: "db".into(),
            severity: Severity::Critical,
            summary: "db is NOT RECOVERABLE".into(),
            reasons: Vec::new(),
            status_url: None,
            at: chrono::Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap(),
        }
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let body = b"{\"event\":\"trigger\"}";
        let signature = sign(b"secret", body).unwrap();
        assert!(signature.starts_with("sha256="));
        assert_eq!(signature.len(), "sha256=".len() + 64);
        assert!(verify_signature(b"secret", body, &signature));
        assert!(!verify_signature(b"secret", b"{\"event\":\"resolve\"}", &signature));
        assert!(!verify_signature(b"other", body, &signature));
        assert!(!verify_signature(
            b"secret",
            body,
            signature.trim_start_matches("sha256=")
        ));
        assert!(!verify_signature(b"secret", body, "sha256=zz"));
    }

    #[test]
    fn delivery_ids_are_stable_per_notification() {
        let trigger = notification(Event::Trigger);
        let id = delivery_id(&trigger);
        assert_eq!(id.len(), 32);
        assert_eq!(id, delivery_id(&trigger.clone()));
        assert_ne!(id, delivery_id(&notification(Event::Resolve)));
    }

    #[test]
    fn body_has_every_field() {
        let trigger = notification(Event::Trigger);
        let body: serde_json::Value = serde_json::from_slice(&body_bytes(&trigger, "abc").unwrap()).unwrap();
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
            assert!(body.get(field).is_some(), "{field} missing from {body}");
        }
        assert_eq!(body["severity"], "critical");
        assert_eq!(body["at"], "2026-11-25T03:00:00.000Z");
    }
}
