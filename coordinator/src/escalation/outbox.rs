//! The outbox worker: claims due messages (one per channel and dedup key at a time, so a
//! resolve never overtakes its trigger), hands each to its channel once per attempt, and records
//! the outcome — delivered, retry later (exponential backoff with jitter from backon, or the
//! server's `Retry-After` when it is later), or dead. A channel that answers 401/403 raises a
//! `channel_alert` on the other channels, at most once an hour per channel.
//!
//! Several replicas may run a worker on one PostgreSQL: claims use `FOR UPDATE SKIP LOCKED` and
//! expire, so a message is delivered by one worker at a time, and a crashed worker's claim is
//! taken over after it expires. Channels make every attempt idempotent (Jira searches for the open
//! issue before creating one; PagerDuty and webhooks carry a dedup key), so a delivery whose
//! answer was lost and is retried does not open a second ticket.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder as _;
use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use tokio_util::sync::CancellationToken;

use super::channels::Channel;
use super::{DeliveryError, Event, Notification};
use crate::store::{NewMessage, OutboxMessage, Store, StoreError};

/// How often the worker looks for due messages when idle.
pub const POLL: Duration = Duration::from_millis(250);
/// Attempts before a message is given up (with backoff capped at 10 min: about a day).
pub const MAX_ATTEMPTS: i64 = 150;
/// How long a claim lasts: longer than a channel attempt can take.
const CLAIM_FOR: Duration = Duration::from_secs(120);
/// Messages claimed per pass.
const BATCH: u32 = 16;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
}

/// Delivers the outbox of one replica.
#[derive(Clone)]
pub struct OutboxWorker {
    pub store: Store,
    pub channels: Arc<BTreeMap<String, Channel>>,
    pub instance: String,
    /// Woken when this replica queues a message, so a flip is delivered at once rather than at
    /// the next poll (other replicas' messages are found by polling).
    pub wake: Arc<tokio::sync::Notify>,
    /// The longest wait between two attempts (`[alerts] retry_max_delay`).
    pub max_delay: Duration,
}

/// The delay before attempt `attempts + 1`: exponential from 1 s to `max_delay`, with jitter.
pub fn backoff(attempts: i64, max_delay: Duration) -> Duration {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1).min(max_delay))
        .with_max_delay(max_delay)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(usize::try_from(attempts.max(1) - 1).unwrap_or(0))
        .unwrap_or(max_delay)
}

impl OutboxWorker {
    /// Claims and delivers what is due now; returns what happened.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<PassReport, StoreError> {
        let claim_until = now + chrono::Duration::from_std(CLAIM_FOR).unwrap_or_default();
        let messages = self
            .store
            .claim_messages(&self.instance, now, claim_until, BATCH)
            .await?;
        let mut report = PassReport::default();
        for message in messages {
            self.deliver(message, &mut report).await?;
        }
        Ok(report)
    }

    async fn deliver(&self, message: OutboxMessage, report: &mut PassReport) -> Result<(), StoreError> {
        let Some(channel) = self.channels.get(&message.channel) else {
            report.dead += 1;
            return self
                .store
                .message_dead(message.id, &self.instance, "no channel of this name is configured")
                .await;
        };
        let notification: Notification = match serde_json::from_value(message.payload.clone()) {
            Ok(notification) => notification,
            Err(err) => {
                report.dead += 1;
                return self
                    .store
                    .message_dead(message.id, &self.instance, &format!("unreadable payload: {err}"))
                    .await;
            }
        };
        let outcome = channel.deliver(&notification).await;
        let now = Utc::now();
        match outcome {
            Ok(delivered) => {
                report.delivered += 1;
                tracing::info!(
                    channel = %message.channel,
                    event = %message.event,
                    dedup_key = %message.dedup_key,
                    external_id = delivered.external_id.as_deref().unwrap_or(""),
                    attempts = message.attempts,
                    "message delivered"
                );
                self.store
                    .message_delivered(message.id, &self.instance, delivered.external_id.as_deref(), now)
                    .await?;
            }
            Err(err) if message.attempts >= MAX_ATTEMPTS => {
                report.dead += 1;
                tracing::error!(channel = %message.channel, error = %err, "giving up on a message");
                self.store
                    .message_dead(
                        message.id,
                        &self.instance,
                        &format!("after {} attempts: {err}", message.attempts),
                    )
                    .await?;
            }
            Err(DeliveryError::Retry { reason, after }) => {
                report.retried += 1;
                let wait = backoff(message.attempts, self.max_delay).max(after.unwrap_or_default());
                tracing::warn!(channel = %message.channel, %reason, ?wait, attempts = message.attempts, "delivery failed; retrying");
                self.store
                    .message_retry(
                        message.id,
                        &self.instance,
                        now + chrono::Duration::from_std(wait).unwrap_or_default(),
                        &reason,
                    )
                    .await?;
            }
            Err(DeliveryError::Unauthorized { status, reason }) => {
                // The credential may be fixed soon: keep the message, retry slowly, and say so
                // on the other channels.
                report.retried += 1;
                let wait = backoff(message.attempts, self.max_delay).max(Duration::from_secs(60));
                let error = format!("refused with {status}: {reason}");
                tracing::error!(channel = %message.channel, %error, "channel refuses Lifeboat's credential");
                self.store
                    .message_retry(
                        message.id,
                        &self.instance,
                        now + chrono::Duration::from_std(wait).unwrap_or_default(),
                        &error,
                    )
                    .await?;
                self.alert_channel_broken(&message.channel, status, &reason, now)
                    .await?;
            }
            Err(DeliveryError::Permanent { reason }) => {
                report.dead += 1;
                tracing::error!(channel = %message.channel, %reason, "channel rejected a message");
                self.store.message_dead(message.id, &self.instance, &reason).await?;
                self.alert_channel_broken(&message.channel, 400, &reason, now).await?;
            }
        }
        Ok(())
    }

    /// Queues a `channel_alert` about `broken` on every other channel (once an hour).
    async fn alert_channel_broken(
        &self,
        broken: &str,
        status: u16,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = super::dedup_key("lifeboat", &format!("channel-{broken}"));
        if self
            .store
            .alert_queued_since(&key, now - chrono::Duration::hours(1))
            .await?
        {
            return Ok(());
        }
        let finding = Finding::new(
            FindingKind::ChannelFailing,
            broken,
            format!("Lifeboat cannot deliver to channel {broken}: it answered {status} ({reason})."),
        )
        .with_severity(Severity::High)
        .with_remediation(format!(
            "Check the credential of channel {broken} in coordinator.toml (an expired API token, a revoked \
             routing key, a user without permission to create issues in the project)."
        ));
        let notification = Notification {
            event: Event::ChannelAlert,
            dedup_key: key.clone(),
            environment: "lifeboat".to_owned(),
            asset: format!("channel {broken}"),
            severity: Severity::High,
            summary: format!("Lifeboat cannot deliver alerts to {broken}: it answered {status}."),
            reasons: vec![finding],
            status_url: None,
            at: now,
        };
        let payload = serde_json::to_value(&notification).unwrap_or_default();
        let messages: Vec<NewMessage> = self
            .channels
            .keys()
            .filter(|name| name.as_str() != broken)
            .map(|name| NewMessage {
                channel: name.clone(),
                event: "channel_alert",
                dedup_key: key.clone(),
                payload: payload.clone(),
                not_before: now,
                silenced: false,
            })
            .collect();
        if messages.is_empty() {
            tracing::error!(channel = broken, "no other channel to report a broken channel on");
            return Ok(());
        }
        self.store.enqueue_messages(&messages, now).await
    }

    /// Delivers until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let busy = match self.pass(Utc::now()).await {
                Ok(report) => report.delivered + report.retried + report.dead > 0,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox pass failed");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(POLL) => {}
                    _ = self.wake.notified() => {}
                }
            } else if shutdown.is_cancelled() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let cap = Duration::from_secs(600);
        for attempts in 1..200 {
            assert!(backoff(attempts, cap) <= 2 * cap, "{attempts}");
        }
        assert!(backoff(50, Duration::from_secs(2)) <= Duration::from_secs(4));
        let late: Duration = (0..20).map(|_| backoff(30, cap)).sum();
        let early: Duration = (0..20).map(|_| backoff(1, cap)).sum();
        assert!(late > early, "{late:?} vs {early:?}");
    }
}
