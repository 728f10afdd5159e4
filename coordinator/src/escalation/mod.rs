//! Escalation: a flip of a verdict (or an alert about Lifeboat itself) becomes a message to the
//! channels its route names — a Jira Cloud issue, a PagerDuty incident, a signed webhook — and
//! nothing at all while no verdict flips (`docs/verdict.md`, "Flips and tickets").
//!
//! Messages are rows of the `outbox` table, written in the same transaction as the flip that
//! caused them; a worker claims them one at a time (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
//! several coordinators deliver each row once) and delivers them with retries. A channel makes
//! one delivery attempt per call and says whether to retry, when (a `Retry-After`), or that it
//! was refused for authentication — which raises an alert about the channel itself.
//!
//! # Layout
//!
//! - [`channels`]: channel configuration and the [`channels::Channel`] each delivers through.
//! - [`jira`]: Jira Cloud REST v3 (create with an ADF description, find by dedup label,
//!   comment on reminders, transition to a done status on resolve).
//! - [`pagerduty`]: PagerDuty Events API v2 (trigger / resolve by `dedup_key`).
//! - [`outbox`]: the worker that claims, delivers and retries outbox messages.
//! - [`webhook`]: a JSON body signed with HMAC-SHA256 (`X-Lifeboat-Signature`).

pub mod channels;
pub mod jira;
pub mod outbox;
pub mod pagerduty;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, Severity};
use serde::{Deserialize, Serialize};

/// What a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The asset flipped to not recoverable: open a ticket (or find the open one).
    Trigger,
    /// The asset flipped back to recoverable: resolve the ticket.
    Resolve,
    /// Still not recoverable after `repeat_interval`: remind (a comment; capped).
    Reminder,
    /// A channel refused Lifeboat (401/403): tell the other channels.
    ChannelAlert,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trigger => "trigger",
            Self::Resolve => "resolve",
            Self::Reminder => "reminder",
            Self::ChannelAlert => "channel_alert",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "trigger" => Some(Self::Trigger),
            "resolve" => Some(Self::Resolve),
            "reminder" => Some(Self::Reminder),
            "channel_alert" => Some(Self::ChannelAlert),
            _ => None,
        }
    }
}

/// One message, as stored in the outbox (`payload`) and handed to a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub event: Event,
    /// Stable per asset (`lifeboat-<environment>-<asset>`, at most 255 characters, only
    /// `[a-z0-9-]`): the same ticket is found, reminded and resolved by it.
    pub dedup_key: String,
    pub environment: String,
    pub asset: String,
    /// The worst reason's severity (Critical for a flip to not recoverable).
    pub severity: Severity,
    /// One line: `rentals-db (pocketos-prod) is NOT RECOVERABLE: The newest recoverable backup…`.
    pub summary: String,
    /// The findings behind the verdict, worst first, with evidence and remediation.
    pub reasons: Vec<Finding>,
    /// The asset on the status page, when the coordinator knows its public URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    /// When the verdict flipped.
    pub at: DateTime<Utc>,
}

/// A delivery that went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// What the other side calls it: the Jira issue key, PagerDuty's dedup key, nothing for a
    /// webhook.
    pub external_id: Option<String>,
}

/// A delivery that did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later (5xx, 429, timeouts, connection errors); `after` is the server's
    /// `Retry-After` when it sent one.
    #[error("temporary failure: {reason}")]
    Retry { reason: String, after: Option<Duration> },
    /// 401 or 403: Lifeboat's credential for this channel is wrong or lacks rights.
    #[error("refused ({status}): {reason}")]
    Unauthorized { status: u16, reason: String },
    /// Any other refusal: retrying the same request cannot help (400, 404 of a project, …).
    #[error("rejected: {reason}")]
    Permanent { reason: String },
}

/// Builds a dedup key from environment and asset: lowercase `[a-z0-9-]`, at most 255
/// characters (PagerDuty's limit), stable for the same pair.
pub fn dedup_key(environment: &str, asset: &str) -> String {
    let raw = format!("lifeboat-{environment}-{asset}");
    let mut key: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if key.len() > 255 {
        let digest = sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), raw.as_bytes()));
        key.truncate(255 - 17);
        key.push('-');
        key.push_str(&hex::encode(&digest[..8]));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keys_are_stable_safe_and_bounded() {
        assert_eq!(
            dedup_key("pocketos-prod", "rentals-db"),
            "lifeboat-pocketos-prod-rentals-db"
        );
        assert_eq!(dedup_key("Env", "a b/c"), "lifeboat-env-a-b-c");
        let long = dedup_key("env", &"x".repeat(400));
        assert_eq!(long.len(), 255);
        assert_eq!(long, dedup_key("env", &"x".repeat(400)));
        assert_ne!(long, dedup_key("env", &"x".repeat(401)));
    }
}
