//! Channel configuration (`[[channel]]` entries of coordinator.toml) and the [`Channel`] a
//! notification is delivered through.
//!
//! Each channel owns one `reqwest::Client` with its timeout and makes exactly one delivery
//! attempt per [`Channel::deliver`] call; the outbox worker retries. Every attempt is built to be
//! idempotent against a lost response (Jira looks for the open issue by its dedup label before
//! creating one, PagerDuty deduplicates by `dedup_key`, a webhook carries a stable
//! `delivery_id`), so a retry after a timeout or a 500 never opens a second ticket.
//!
//! The HTTP outcome is classified here once for all channels: timeouts, connection errors, 5xx
//! and 429 are worth retrying (with the server's `Retry-After`), 401/403 mean Lifeboat's
//! credential is refused, any other 4xx is permanent. Secrets (API tokens, routing keys, webhook
//! secrets) appear neither in errors nor in logs: the config keeps them in
//! [`EnvString`](lifeboat_shared::env_string::EnvString)s, whose `Debug` shows the template only.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::durations::HumanDuration;
use lifeboat_shared::env_string::EnvString;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::jira::JiraChannel;
use super::pagerduty::PagerDutyChannel;
use super::webhook::WebhookChannel;
use super::{Delivered, DeliveryError, Notification};

/// How long one delivery attempt may take when the channel does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a vendor's error body is kept in a [`DeliveryError`] reason.
const ERROR_BODY_LIMIT: usize = 300;

/// One `[[channel]]` entry; `kind` selects the variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ChannelConfig {
    Jira(JiraConfig),
    PagerDuty(PagerDutyConfig),
    Webhook(WebhookConfig),
}

impl ChannelConfig {
    /// Returns the name routes refer to the channel by.
    pub fn name(&self) -> &str {
        match self {
            Self::Jira(config) => &config.name,
            Self::PagerDuty(config) => &config.name,
            Self::Webhook(config) => &config.name,
        }
    }
}

/// A Jira Cloud project that gets one issue per flip.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraConfig {
    pub name: String,
    /// The site, e.g. `https://pocketos.atlassian.net`.
    pub url: String,
    /// The Atlassian account the API token belongs to (Basic auth user).
    pub email: String,
    /// An Atlassian API token, usually `${JIRA_API_TOKEN}`.
    pub api_token: EnvString,
    /// The project key issues are created in, e.g. `OPS`.
    pub project: String,
    /// The issue type created issues get.
    #[serde(default = "default_issue_type")]
    pub issue_type: String,
    /// At most this many reminder comments per open issue (the worker enforces it).
    #[serde(default)]
    pub max_reminders: Option<u32>,
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

fn default_issue_type() -> String {
    "Task".to_owned()
}

/// A PagerDuty service reached through an Events API v2 integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    pub name: String,
    /// The integration key, usually `${PD_ROUTING_KEY}`.
    pub routing_key: EnvString,
    /// The Events API host; only changed for tests or PagerDuty's EU service region.
    #[serde(default = "default_pagerduty_url")]
    pub url: String,
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com".to_owned()
}

/// Any HTTPS endpoint that accepts a signed JSON body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    /// Where to POST; kept out of logs as a whole because some hooks carry a token in the path.
    pub url: EnvString,
    /// The HMAC-SHA256 key of `X-Lifeboat-Signature`, usually `${LIFEBOAT_WEBHOOK_SECRET}`.
    pub secret: EnvString,
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

/// A channel configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel {channel:?}: {field} {reason}")]
    InvalidField {
        channel: String,
        field: &'static str,
        reason: String,
    },
    #[error("channel {channel:?}: build http client")]
    Client {
        channel: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Where notifications go: one configured Jira project, PagerDuty service or webhook.
#[derive(Debug, Clone)]
pub enum Channel {
    Jira(JiraChannel),
    PagerDuty(PagerDutyChannel),
    Webhook(WebhookChannel),
}

impl Channel {
    /// Validates `config` and builds the channel with its HTTP client.
    pub fn from_config(config: &ChannelConfig) -> Result<Channel, ChannelError> {
        let name = config.name();
        if name.trim().is_empty() {
            return Err(invalid(name, "name", "must not be empty"));
        }
        match config {
            ChannelConfig::Jira(jira) => JiraChannel::from_config(jira).map(Channel::Jira),
            ChannelConfig::PagerDuty(pagerduty) => PagerDutyChannel::from_config(pagerduty).map(Channel::PagerDuty),
            ChannelConfig::Webhook(webhook) => WebhookChannel::from_config(webhook).map(Channel::Webhook),
        }
    }

    /// Returns the channel's configured name.
    pub fn name(&self) -> &str {
        match self {
            Self::Jira(channel) => channel.name(),
            Self::PagerDuty(channel) => channel.name(),
            Self::Webhook(channel) => channel.name(),
        }
    }

    /// Returns the vendor kind as written in the config (`jira`, `pagerduty`, `webhook`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Jira(_) => "jira",
            Self::PagerDuty(_) => "pagerduty",
            Self::Webhook(_) => "webhook",
        }
    }

    /// Returns the cap on reminders per open ticket, when the channel has one.
    pub fn max_reminders(&self) -> Option<u32> {
        match self {
            Self::Jira(channel) => channel.max_reminders(),
            Self::PagerDuty(_) | Self::Webhook(_) => None,
        }
    }

    /// Makes one delivery attempt; safe to repeat after any error (see the module docs).
    pub async fn deliver(&self, notification: &Notification) -> Result<Delivered, DeliveryError> {
        let outcome = match self {
            Self::Jira(channel) => channel.deliver(notification).await,
            Self::PagerDuty(channel) => channel.deliver(notification).await,
            Self::Webhook(channel) => channel.deliver(notification).await,
        };
        match &outcome {
            Ok(delivered) => tracing::debug!(
                channel = self.name(),
                event = notification.event.as_str(),
                dedup_key = %notification.dedup_key,
                external_id = ?delivered.external_id,
                "notification delivered"
            ),
            Err(error) => tracing::debug!(
                channel = self.name(),
                event = notification.event.as_str(),
                dedup_key = %notification.dedup_key,
                %error,
                "notification not delivered"
            ),
        }
        outcome
    }
}

pub(crate) fn invalid(channel: &str, field: &'static str, reason: impl Into<String>) -> ChannelError {
    ChannelError::InvalidField {
        channel: channel.to_owned(),
        field,
        reason: reason.into(),
    }
}

/// Parses an `http(s)` base URL; the reason never repeats the value (it may hold a token).
pub(crate) fn parse_http_url(channel: &str, field: &'static str, text: &str) -> Result<Url, ChannelError> {
    let url = Url::parse(text.trim()).map_err(|error| invalid(channel, field, format!("is not a URL ({error})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(channel, field, "must be an http or https URL"));
    }
    if url.host_str().is_none() {
        return Err(invalid(channel, field, "has no host"));
    }
    Ok(url)
}

/// Joins a base URL (which may have a path and a trailing slash) and an absolute API path.
pub(crate) fn join_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    url
}

/// Builds the one client a channel uses: its timeout, no redirects (a redirect of an
/// authenticated POST is a misconfiguration to report, not to follow), no proxy from the
/// environment.
pub(crate) fn http_client(channel: &str, timeout: Option<HumanDuration>) -> Result<reqwest::Client, ChannelError> {
    let timeout = timeout.map(Duration::from).unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        return Err(invalid(channel, "timeout", "must be greater than zero"));
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(DEFAULT_TIMEOUT))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Lifeboat/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| ChannelError::Client {
            channel: channel.to_owned(),
            source,
        })
}

/// Classifies an error of sending a request or reading its response: always worth a retry,
/// since the request may not have arrived (and if it did, the next attempt is idempotent).
pub(crate) fn transport_error(error: reqwest::Error) -> DeliveryError {
    // `without_url`: a webhook URL may carry a token.
    let error = error.without_url();
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "response was cut off"
    } else {
        "request failed"
    };
    let mut reason = what.to_owned();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    DeliveryError::Retry { reason, after: None }
}

/// Classifies a response that is not a success. `detail` is what the vendor said, already
/// extracted from its body (it is shortened here).
pub(crate) fn status_error(status: StatusCode, headers: &HeaderMap, detail: &str) -> DeliveryError {
    let detail = truncate_chars(detail.trim(), ERROR_BODY_LIMIT);
    let reason = if detail.is_empty() {
        format!("http {}", status.as_u16())
    } else {
        format!("http {}: {detail}", status.as_u16())
    };
    match status.as_u16() {
        401 | 403 => DeliveryError::Unauthorized {
            status: status.as_u16(),
            reason,
        },
        408 | 425 | 429 | 500..=599 => DeliveryError::Retry {
            reason,
            after: retry_after(headers, Utc::now()),
        },
        _ => DeliveryError::Permanent { reason },
    }
}

/// Reads a response body as text for an error reason; a body that cannot be read is empty.
pub(crate) async fn error_body(response: reqwest::Response) -> String {
    response.text().await.unwrap_or_default()
}

/// Returns the `Retry-After` header as a delay from `now`, when present and well-formed.
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`); a date in the past means "now" (zero).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

/// Returns `text` cut to at most `max_chars` characters on a character boundary, ending in
/// `…` when something was cut.
pub fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use reqwest::header::HeaderValue;

    use super::*;

    const CONFIG: &str = r#"
        [[channel]]
        name = "ops-jira"
        kind = "jira"
        url = "https://pocketos.atlassian.net"
        email = "lifeboat@pocketos.example"
        api_token = "token-${USER_FOR_CHANNEL_TEST}"
        project = "OPS"
        max_reminders = 5
        timeout = "30s"

        [[channel]]
        name = "oncall"
        kind = "pagerduty"
        routing_key = "0123456789abcdef0123456789abcdef"

        [[channel]]
        name = "audit-hook"
        kind = "webhook"
        url = "https://hooks.example/lifeboat"
        secret = "s3cret"
    "#;

    #[derive(Debug, Deserialize)]
    struct File {
        channel: Vec<ChannelConfig>,
    }

    #[test]
    fn parses_all_kinds_with_defaults() {
        let text = CONFIG.replace("${USER_FOR_CHANNEL_TEST}", "x");
        let file: File = toml::from_str(&text).unwrap();
        let names: Vec<&str> = file.channel.iter().map(ChannelConfig::name).collect();
        assert_eq!(names, ["ops-jira", "oncall", "audit-hook"]);
        let ChannelConfig::Jira(jira) = &file.channel[0] else {
            panic!("not jira")
        };
        assert_eq!(jira.issue_type, "Task");
        assert_eq!(jira.max_reminders, Some(5));
        assert_eq!(jira.timeout, Some(HumanDuration::from_secs(30)));
        assert_eq!(jira.api_token.value, "token-x");
        let ChannelConfig::PagerDuty(pagerduty) = &file.channel[1] else {
            panic!("not pagerduty")
        };
        assert_eq!(pagerduty.url, "https://events.pagerduty.com");
        for config in &file.channel {
            let channel = Channel::from_config(config).unwrap();
            assert_eq!(channel.name(), config.name());
        }
        // Debug output shows templates, never expanded values.
        let secret = EnvString {
            value: "s3cret".into(),
            template: "${LIFEBOAT_WEBHOOK_SECRET}".into(),
        };
        let config = ChannelConfig::Webhook(WebhookConfig {
            name: "hook".into(),
            url: secret.clone(),
            secret,
            timeout: None,
        });
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn rejects_unknown_fields_and_kinds() {
        let unknown_field =
            "[[channel]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://x\"\nsecret = \"s\"\nsecrett = \"s\"\n";
        assert!(toml::from_str::<File>(unknown_field).is_err());
        let unknown_kind = "[[channel]]\nname = \"a\"\nkind = \"slack\"\nurl = \"https://x\"\n";
        assert!(toml::from_str::<File>(unknown_kind).is_err());
    }

    #[test]
    fn rejects_bad_urls_without_repeating_them() {
        let config = ChannelConfig::Webhook(WebhookConfig {
            name: "hook".into(),
            url: EnvString {
                value: "ftp://hooks.example/T0KEN".into(),
                template: "${HOOK_URL}".into(),
            },
            secret: EnvString {
                value: "s".into(),
                template: "s".into(),
            },
            timeout: None,
        });
        let error = Channel::from_config(&config).unwrap_err().to_string();
        assert!(error.contains("http or https"), "{error}");
        assert!(!error.contains("T0KEN"), "{error}");
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn statuses_are_classified() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            status_error(StatusCode::TOO_MANY_REQUESTS, &headers, ""),
            DeliveryError::Retry {
                reason: "http 429".into(),
                after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "oops"),
            DeliveryError::Retry { after: None, .. }
        ));
        assert!(matches!(
            status_error(StatusCode::FORBIDDEN, &HeaderMap::new(), ""),
            DeliveryError::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            status_error(StatusCode::NOT_FOUND, &HeaderMap::new(), ""),
            DeliveryError::Permanent { .. }
        ));
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_chars("short", 10), "short");
        let cut = truncate_chars(&"é".repeat(2000), 1024);
        assert_eq!(cut.chars().count(), 1024);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn paths_join_onto_base_urls() {
        let base = Url::parse("https://x.example/jira/").unwrap();
        assert_eq!(
            join_path(&base, "/rest/api/3/issue").as_str(),
            "https://x.example/jira/rest/api/3/issue"
        );
        let bare = Url::parse("https://events.pagerduty.com").unwrap();
        assert_eq!(
            join_path(&bare, "/v2/enqueue").as_str(),
            "https://events.pagerduty.com/v2/enqueue"
        );
    }
}
