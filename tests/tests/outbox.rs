//! The outbox worker against local vendor servers: a channel that refuses Lifeboat's credential
//! (401) keeps its message for later and raises `channel.failing` on the other channels, once;
//! a 429 with `Retry-After` is honoured; a message for a channel that no longer exists is given
//! up, not retried forever.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeboat_coordinator::escalation::channels::{Channel, ChannelConfig, JiraConfig, WebhookConfig};
use lifeboat_coordinator::escalation::outbox::OutboxWorker;
use lifeboat_coordinator::escalation::{Event, Notification, dedup_key};
use lifeboat_coordinator::store::{NewMessage, Store};
use lifeboat_shared::durations::HumanDuration;
use lifeboat_shared::env_string::EnvString;
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_tests::vendors::jira::{JiraOptions, JiraServer};
use lifeboat_tests::vendors::webhook::{WebhookOptions, WebhookSink};
use lifeboat_tests::vendors::{Fault, FaultOptions};

fn plain(value: &str) -> EnvString {
    EnvString {
        value: value.to_owned(),
        template: value.to_owned(),
    }
}

fn jira(server: &JiraServer, token: &str) -> Channel {
    Channel::from_config(&ChannelConfig::Jira(JiraConfig {
        name: "ops-jira".into(),
        url: server.base_url().to_owned(),
        email: "lifeboat@pocketos.example".into(),
        api_token: plain(token),
        project: "OPS".into(),
        issue_type: "Task".into(),
        max_reminders: None,
        timeout: Some(HumanDuration::from_secs(2)),
    }))
    .expect("jira")
}

fn hook(sink: &WebhookSink) -> Channel {
    Channel::from_config(&ChannelConfig::Webhook(WebhookConfig {
        name: "audit-hook".into(),
        url: plain(&format!("{}/lifeboat", sink.base_url())),
        secret: plain("hook-secret"),
        timeout: Some(HumanDuration::from_secs(2)),
    }))
    .expect("hook")
}

fn trigger(channel: &str) -> NewMessage {
    let notification = Notification {
        event: Event::Trigger,
        dedup_key: dedup_key("prod", "rentals-db"),
        environment: "prod".into(),
        asset: "rentals-db".into(),
        severity: Severity::Critical,
        summary: "rentals-db (prod) is NOT RECOVERABLE: stale".into(),
        reasons: vec![
            Finding::new(FindingKind::BackupStale, "rentals-db", "92 days old").with_severity(Severity::Critical),
        ],
        status_url: None,
        at: Utc::now(),
    };
    NewMessage {
        channel: channel.into(),
        event: "trigger",
        dedup_key: notification.dedup_key.clone(),
        payload: serde_json::to_value(&notification).expect("json"),
        not_before: Utc::now(),
        silenced: false,
    }
}

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("lifeboat.db").display()))
        .await
        .expect("store");
    (store, dir)
}

fn worker(store: &Store, channels: Vec<Channel>) -> OutboxWorker {
    OutboxWorker {
        store: store.clone(),
        channels: Arc::new(
            channels
                .into_iter()
                .map(|channel| (channel.name().to_owned(), channel))
                .collect::<BTreeMap<_, _>>(),
        ),
        instance: "test".into(),
        wake: Arc::new(tokio::sync::Notify::new()),
        max_delay: Duration::from_secs(600),
    }
}

#[tokio::test]
async fn a_refused_credential_keeps_the_message_and_alerts_the_other_channels_once() {
    let (store, _dir) = store().await;
    let jira_server = JiraServer::start(JiraOptions::new("lifeboat@pocketos.example", "right-token", "OPS")).await;
    let sink = WebhookSink::start(WebhookOptions::new(b"hook-secret")).await;
    let worker = worker(&store, vec![jira(&jira_server, "expired-token"), hook(&sink)]);
    store
        .enqueue_messages(&[trigger("ops-jira"), trigger("ops-jira")], Utc::now())
        .await
        .expect("enqueue");

    let first = worker.pass(Utc::now()).await.expect("pass");
    assert_eq!(first.retried, 1, "{first:?}");
    assert_eq!(first.delivered, 0);
    // The alert goes to the webhook; the Jira message waits for a fixed credential.
    let second = worker.pass(Utc::now()).await.expect("pass");
    assert_eq!(second.delivered, 1, "{second:?}");
    let deliveries = sink.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].body["event"], "channel_alert");
    assert_eq!(deliveries[0].body["reasons"][0]["kind"], "channel.failing");
    assert!(
        deliveries[0].body["summary"]
            .as_str()
            .unwrap_or("")
            .contains("ops-jira"),
        "{:?}",
        deliveries[0].body
    );
    assert_eq!(
        store.outbox_depth().await.expect("depth"),
        2,
        "both Jira messages are kept"
    );
    assert!(jira_server.issues().is_empty());

    // Refused again later: no second alert within the hour.
    let later = Utc::now() + chrono::Duration::minutes(30);
    worker.pass(later).await.expect("pass");
    worker.pass(later).await.expect("pass");
    assert_eq!(sink.deliveries().len(), 1, "one alert per broken channel per hour");
}

#[tokio::test]
async fn retry_after_is_honoured_and_unknown_channels_are_given_up() {
    let (store, _dir) = store().await;
    let throttled = JiraServer::start(
        JiraOptions::new("lifeboat@pocketos.example", "token", "OPS")
            .with_faults(FaultOptions::always(Fault::TooManyRequests)),
    )
    .await;
    let worker = worker(&store, vec![jira(&throttled, "token")]);
    store
        .enqueue_messages(&[trigger("ops-jira"), trigger("removed-channel")], Utc::now())
        .await
        .expect("enqueue");
    let now = Utc::now();
    let report = worker.pass(now).await.expect("pass");
    assert_eq!((report.retried, report.dead), (1, 1), "{report:?}");
    // Nothing is due again before Retry-After (1 s) has passed.
    assert!(
        store
            .claim_messages(
                "probe",
                now + chrono::Duration::milliseconds(900),
                now + chrono::Duration::minutes(1),
                10
            )
            .await
            .expect("claim")
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        store.outbox_depth().await.expect("depth"),
        1,
        "the unknown channel's message is dead, not pending"
    );
}
