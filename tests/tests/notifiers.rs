//! Contract tests of the escalation channels (`docs/verdict.md`, "Flips and tickets") against local
//! Jira, PagerDuty and webhook servers that validate every request against the vendors' published
//! OpenAPI specs (`lifeboat_tests::vendors`): each event through each channel with zero violations,
//! the classification of refusals and failures, and "exactly one ticket per flip" while 30 % of
//! requests fail — some after they took effect.

use std::time::{Duration, Instant};

use chrono::TimeZone;
use lifeboat_coordinator::escalation::channels::{Channel, ChannelConfig, JiraConfig, PagerDutyConfig, WebhookConfig};
use lifeboat_coordinator::escalation::webhook::verify_signature;
use lifeboat_coordinator::escalation::{Delivered, DeliveryError, Event, Notification, dedup_key};
use lifeboat_shared::durations::HumanDuration;
use lifeboat_shared::env_string::EnvString;
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_tests::vendors::jira::{JiraOptions, JiraServer, JiraStatus};
use lifeboat_tests::vendors::pagerduty::{PagerDutyOptions, PagerDutyServer};
use lifeboat_tests::vendors::webhook::{WebhookOptions, WebhookSink};
use lifeboat_tests::vendors::{Fault, FaultOptions};
use serde_json::{Value, json};

const EMAIL: &str = "lifeboat@pocketos.example";
const TOKEN: &str = "jira-api-token-123";
const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";
const SECRET_TEXT: &str = "webhook-secret";
const SECRET: &[u8] = SECRET_TEXT.as_bytes();

fn secret(value: &str, template: &str) -> EnvString {
    EnvString {
        value: value.to_owned(),
        template: template.to_owned(),
    }
}

fn jira_channel(server: &JiraServer, token: &str, timeout: Duration, issue_type: &str) -> Channel {
    Channel::from_config(&ChannelConfig::Jira(JiraConfig {
        name: "ops-jira".into(),
        url: server.base_url().to_owned(),
        email: EMAIL.into(),
        api_token: secret(token, "${JIRA_API_TOKEN}"),
        project: "OPS".into(),
        issue_type: issue_type.into(),
        max_reminders: Some(5),
        timeout: Some(HumanDuration(timeout)),
    }))
    .expect("jira channel")
}

fn pagerduty_channel(server: &PagerDutyServer, routing_key: &str, timeout: Duration) -> Channel {
    Channel::from_config(&ChannelConfig::PagerDuty(PagerDutyConfig {
        name: "oncall".into(),
        routing_key: secret(routing_key, "${PD_ROUTING_KEY}"),
        url: server.base_url().to_owned(),
        timeout: Some(HumanDuration(timeout)),
    }))
    .expect("pagerduty channel")
}

fn webhook_channel(sink: &WebhookSink, timeout: Duration) -> Channel {
    let url = format!("{}/hooks/lifeboat", sink.base_url());
    Channel::from_config(&ChannelConfig::Webhook(WebhookConfig {
        name: "audit-hook".into(),
        url: secret(&url, &url),
        secret: secret(SECRET_TEXT, "${LIFEBOAT_WEBHOOK_SECRET}"),
        timeout: Some(HumanDuration(timeout)),
    }))
    .expect("webhook channel")
}

fn notification(event: Event, asset: &str) -> Notification {
    let environment = "pocketos-prod";
    Notification {
        event,
        dedup_key: dedup_key(environment, asset),
        environment: environment.into(),
        asset: asset.into(),
        severity: Severity::Critical,
        summary: format!(
            "{asset} ({environment}) is NOT RECOVERABLE: The newest recoverable backup of {asset} is 92 days old"
        ),
        reasons: vec![
            Finding::new(
                FindingKind::DriftDetected,
                asset,
                "Since the last passing test: PostgreSQL 15 → 16.",
            ),
            Finding::new(
                FindingKind::BackupStale,
                asset,
                format!(
                    "The newest recoverable backup of {asset} outside its blast radius is 92 days old; its RPO is 24 h."
                ),
            )
            .with_evidence(json!({ "newest_backup": "2026-08-25T03:00:00Z", "age_hours": 2208, "rpo_hours": 24 }))
            .with_remediation("Schedule an off-site backup and run `lifeboat test` once it exists."),
        ],
        status_url: Some(format!("https://lifeboat.pocketos.example/assets/{asset}")),
        at: chrono::Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap(),
    }
}

/// The outbox worker in miniature: retries on `Retry`, sleeping `after` or 100 ms.
async fn deliver_with_retries(channel: &Channel, notification: &Notification) -> Delivered {
    for _ in 0..100 {
        match channel.deliver(notification).await {
            Ok(delivered) => return delivered,
            Err(DeliveryError::Retry { after, .. }) => {
                tokio::time::sleep(after.unwrap_or(Duration::from_millis(100))).await;
            }
            Err(other) => panic!("{} {} failed for good: {other}", channel.name(), notification.dedup_key),
        }
    }
    panic!(
        "{} {} still failing after 100 attempts",
        channel.name(),
        notification.dedup_key
    )
}

/// Every `text` of an ADF document, in order.
fn adf_texts(node: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(text) = node.get("text").and_then(Value::as_str) {
        out.push(text.to_owned());
    }
    for child in node.get("content").and_then(Value::as_array).into_iter().flatten() {
        out.extend(adf_texts(child));
    }
    out
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn jira_issue_lives_from_trigger_to_resolve() {
    let jira = JiraServer::start(JiraOptions::new(EMAIL, TOKEN, "OPS")).await;
    let channel = jira_channel(&jira, TOKEN, 5 * SECOND, "Task");
    let trigger = notification(Event::Trigger, "rentals-db");

    let delivered = channel.deliver(&trigger).await.unwrap();
    assert_eq!(delivered.external_id.as_deref(), Some("OPS-1"));
    let issues = jira.issues();
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert_eq!(issue.labels, ["lifeboat", "lifeboat-pocketos-prod-rentals-db"]);
    assert_eq!(issue.issue_type, "Task");
    assert_eq!(issue.summary, trigger.summary);
    assert_eq!(issue.status, JiraStatus::ToDo);
    let description = &issue.description;
    assert_eq!(
        (description["type"].as_str(), description["version"].as_u64()),
        (Some("doc"), Some(1))
    );
    let texts = adf_texts(description);
    let stale = texts
        .iter()
        .position(|t| t.contains("backup.stale"))
        .expect("stale reason");
    let drift = texts
        .iter()
        .position(|t| t.contains("drift.detected"))
        .expect("drift reason");
    assert!(stale < drift, "worst first: {texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("\"age_hours\": 2208")),
        "evidence as a code block: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("Schedule an off-site backup")),
        "remediation: {texts:?}"
    );
    let encoded = description.to_string();
    assert!(encoded.contains(r#""type":"codeBlock""#));
    assert!(encoded.contains(r#""href":"https://lifeboat.pocketos.example/assets/rentals-db""#));

    // A second trigger (a retried create whose answer was lost) finds the issue and comments.
    let again = channel.deliver(&trigger).await.unwrap();
    assert_eq!(again.external_id.as_deref(), Some("OPS-1"));
    let reminded = channel
        .deliver(&notification(Event::Reminder, "rentals-db"))
        .await
        .unwrap();
    assert_eq!(reminded.external_id.as_deref(), Some("OPS-1"));
    let issue = &jira.issues()[0];
    assert_eq!(jira.issues().len(), 1);
    assert_eq!(issue.comments.len(), 2);
    assert!(
        adf_texts(&issue.comments[1])
            .iter()
            .any(|t| t.contains("Still not recoverable"))
    );

    let resolved = channel
        .deliver(&notification(Event::Resolve, "rentals-db"))
        .await
        .unwrap();
    assert_eq!(resolved.external_id.as_deref(), Some("OPS-1"));
    let issue = &jira.issues()[0];
    assert_eq!(issue.status, JiraStatus::Done);
    assert_eq!(issue.status.category_key(), "done");
    assert!(
        adf_texts(issue.comments.last().unwrap())
            .iter()
            .any(|t| t.contains("Recoverable again"))
    );

    // Nothing open any more: a repeated resolve has nothing to do.
    let nothing = channel
        .deliver(&notification(Event::Resolve, "rentals-db"))
        .await
        .unwrap();
    assert_eq!(nothing.external_id, None);

    // A channel alert is an issue of its own, under its own dedup label.
    let mut alert = notification(Event::ChannelAlert, "rentals-db");
    alert.dedup_key = "lifeboat-channel-oncall".into();
    alert.summary = "Lifeboat cannot deliver to channel oncall: refused (401)".into();
    alert.reasons.clear();
    let alerted = channel.deliver(&alert).await.unwrap();
    assert_eq!(alerted.external_id.as_deref(), Some("OPS-2"));
    assert_eq!(jira.issues_labelled("lifeboat-channel-oncall").len(), 1);

    let requests = jira.requests();
    let calls: Vec<String> = requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(
        calls[..2],
        [
            "POST /rest/api/3/search/jql".to_owned(),
            "POST /rest/api/3/issue".to_owned()
        ],
        "{calls:#?}"
    );
    assert!(calls.contains(&"GET /rest/api/3/issue/OPS-1/transitions".to_owned()));
    assert!(calls.contains(&"POST /rest/api/3/issue/OPS-1/transitions".to_owned()));
    let search = requests[0].json();
    assert_eq!(
        search["jql"],
        r#"project = "OPS" AND labels = "lifeboat-pocketos-prod-rentals-db" AND statusCategory != Done"#
    );
    for request in &requests {
        assert_eq!(request.header("authorization"), Some("Basic <redacted>"));
    }
    assert_eq!(jira.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn jira_refusals_are_classified() {
    let jira = JiraServer::start(JiraOptions::new(EMAIL, TOKEN, "OPS")).await;
    let trigger = notification(Event::Trigger, "rentals-db");

    let wrong_token = jira_channel(&jira, "not-the-token", 5 * SECOND, "Task");
    let error = wrong_token.deliver(&trigger).await.unwrap_err();
    assert!(
        matches!(error, DeliveryError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("not-the-token"), "{error}");

    // An issue type the project does not have: Jira answers 400, retrying cannot help.
    let wrong_type = jira_channel(&jira, TOKEN, 5 * SECOND, "Epic");
    let error = wrong_type.deliver(&trigger).await.unwrap_err();
    let DeliveryError::Permanent { reason } = &error else {
        panic!("{error:?}")
    };
    assert!(reason.contains("http 400") && reason.contains("issuetype"), "{reason}");
    assert!(jira.issues().is_empty());
    let violations = jira.violations();
    assert_eq!(violations.len(), 1, "only the wrong issue type: {violations:#?}");
    assert!(violations[0].contains("issuetype"), "{violations:?}");
}

#[tokio::test]
async fn throttling_and_timeouts_are_retried() {
    let throttled = JiraServer::start(
        JiraOptions::new(EMAIL, TOKEN, "OPS").with_faults(FaultOptions::always(Fault::TooManyRequests)),
    )
    .await;
    let error = jira_channel(&throttled, TOKEN, 5 * SECOND, "Task")
        .deliver(&notification(Event::Trigger, "rentals-db"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DeliveryError::Retry {
                after: Some(SECOND),
                ..
            }
        ),
        "{error:?}"
    );

    let slow =
        JiraServer::start(JiraOptions::new(EMAIL, TOKEN, "OPS").with_faults(FaultOptions::always(Fault::Timeout)))
            .await;
    let started = Instant::now();
    let error = jira_channel(&slow, TOKEN, SECOND, "Task")
        .deliver(&notification(Event::Trigger, "rentals-db"))
        .await
        .unwrap_err();
    assert!(matches!(error, DeliveryError::Retry { after: None, .. }), "{error:?}");
    assert!(error.to_string().contains("timed out"), "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the client timeout applies"
    );

    let failing = PagerDutyServer::start(
        PagerDutyOptions::new(ROUTING_KEY).with_faults(FaultOptions::always(Fault::ServerError)),
    )
    .await;
    let error = pagerduty_channel(&failing, ROUTING_KEY, SECOND)
        .deliver(&notification(Event::Trigger, "rentals-db"))
        .await
        .unwrap_err();
    assert!(matches!(error, DeliveryError::Retry { after: None, .. }), "{error:?}");

    let throttled = PagerDutyServer::start(
        PagerDutyOptions::new(ROUTING_KEY).with_faults(FaultOptions::always(Fault::TooManyRequests)),
    )
    .await;
    let error = pagerduty_channel(&throttled, ROUTING_KEY, SECOND)
        .deliver(&notification(Event::Trigger, "rentals-db"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DeliveryError::Retry {
                after: Some(SECOND),
                ..
            }
        ),
        "{error:?}"
    );

    let nobody = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        address
    };
    let unreachable = Channel::from_config(&ChannelConfig::PagerDuty(PagerDutyConfig {
        name: "oncall".into(),
        routing_key: secret(ROUTING_KEY, "${PD_ROUTING_KEY}"),
        url: format!("http://{nobody}"),
        timeout: Some(HumanDuration(SECOND)),
    }))
    .unwrap();
    let error = unreachable
        .deliver(&notification(Event::Trigger, "rentals-db"))
        .await
        .unwrap_err();
    assert!(matches!(error, DeliveryError::Retry { .. }), "{error:?}");
}

#[tokio::test]
async fn pagerduty_triggers_and_resolves_by_dedup_key() {
    let pagerduty = PagerDutyServer::start(PagerDutyOptions::new(ROUTING_KEY)).await;
    let channel = pagerduty_channel(&pagerduty, ROUTING_KEY, 5 * SECOND);
    let mut trigger = notification(Event::Trigger, "rentals-db");
    trigger.severity = Severity::High;
    trigger.summary = "x".repeat(1500);
    let key = trigger.dedup_key.clone();

    let delivered = channel.deliver(&trigger).await.unwrap();
    assert_eq!(delivered.external_id.as_deref(), Some(key.as_str()));
    let incident = pagerduty.incidents()[&key].clone();
    assert!(incident.open);
    let payload = &incident.payload;
    assert_eq!(payload["severity"], "error");
    let summary = payload["summary"].as_str().unwrap();
    assert!(summary.chars().count() <= 1024, "{}", summary.chars().count());
    assert!(summary.ends_with('…'));
    assert_eq!(payload["source"], "lifeboat/pocketos-prod");
    assert_eq!(payload["component"], "rentals-db");
    assert_eq!(payload["group"], "pocketos-prod");
    assert_eq!(payload["class"], "backup.stale");
    assert_eq!(payload["timestamp"], "2026-11-25T03:00:00.000Z");
    assert_eq!(payload["custom_details"]["reasons"][0]["kind"], "backup.stale");
    assert_eq!(
        payload["custom_details"]["status_url"],
        "https://lifeboat.pocketos.example/assets/rentals-db"
    );
    assert_eq!(
        incident.last_trigger["links"][0]["href"],
        "https://lifeboat.pocketos.example/assets/rentals-db"
    );
    assert_eq!(incident.last_trigger["client"], "Lifeboat");

    channel
        .deliver(&notification(Event::Reminder, "rentals-db"))
        .await
        .unwrap();
    let incident = pagerduty.incidents()[&key].clone();
    assert_eq!((incident.opened, incident.triggers, incident.open), (1, 2, true));

    channel
        .deliver(&notification(Event::Resolve, "rentals-db"))
        .await
        .unwrap();
    let incident = pagerduty.incidents()[&key].clone();
    assert_eq!((incident.opened, incident.resolves, incident.open), (1, 1, false));
    let resolve = pagerduty.requests().last().unwrap().json();
    assert_eq!(
        resolve,
        json!({ "routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key })
    );

    for (severity, expected) in [
        (Severity::Critical, "critical"),
        (Severity::High, "error"),
        (Severity::Medium, "warning"),
        (Severity::Info, "info"),
    ] {
        let mut alert = notification(Event::ChannelAlert, "rentals-db");
        alert.dedup_key = format!("lifeboat-channel-alert-{expected}");
        alert.severity = severity;
        alert.reasons.clear();
        alert.status_url = None;
        channel.deliver(&alert).await.unwrap();
        assert_eq!(pagerduty.incidents()[&alert.dedup_key].payload["severity"], expected);
    }
    assert_eq!(pagerduty.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn pagerduty_bad_request_is_permanent() {
    let pagerduty = PagerDutyServer::start(PagerDutyOptions::new(ROUTING_KEY)).await;
    let channel = pagerduty_channel(&pagerduty, "ffffffffffffffffffffffffffffffff", 5 * SECOND);
    let error = channel
        .deliver(&notification(Event::Trigger, "rentals-db"))
        .await
        .unwrap_err();
    let DeliveryError::Permanent { reason } = &error else {
        panic!("{error:?}")
    };
    assert!(
        reason.contains("http 400") && reason.contains("Invalid routing key"),
        "{reason}"
    );
    assert!(!reason.contains("ffffffff"), "no secret in errors: {reason}");
    assert!(pagerduty.incidents().is_empty());
    assert_eq!(pagerduty.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn webhook_deliveries_are_signed_and_stable() {
    let sink = WebhookSink::start(WebhookOptions::new(SECRET)).await;
    let channel = webhook_channel(&sink, 5 * SECOND);
    let trigger = notification(Event::Trigger, "rentals-db");

    assert_eq!(channel.deliver(&trigger).await.unwrap(), Delivered::default());
    channel.deliver(&trigger).await.unwrap();
    channel
        .deliver(&notification(Event::Resolve, "rentals-db"))
        .await
        .unwrap();
    let deliveries = sink.deliveries();
    assert_eq!(deliveries.len(), 3);
    let first = &deliveries[0];
    assert_eq!(first.event, "trigger");
    assert_eq!(first.body["dedup_key"], trigger.dedup_key);
    assert_eq!(first.body["severity"], "critical");
    assert_eq!(first.body["reasons"][1]["kind"], "backup.stale");
    assert_eq!(first.delivery_id.len(), 32);
    assert_eq!(
        first.delivery_id, deliveries[1].delivery_id,
        "a repeat carries the same delivery id"
    );
    assert_ne!(first.delivery_id, deliveries[2].delivery_id);
    assert_eq!(sink.requests()[0].path, "/hooks/lifeboat");

    assert!(verify_signature(SECRET, &first.raw_body, &first.signature));
    let mut tampered = first.raw_body.clone();
    let position = tampered.windows(8).position(|w| w == b"critical").unwrap();
    tampered[position..position + 8].copy_from_slice(b"info\"   ");
    assert!(!verify_signature(SECRET, &tampered, &first.signature));
    assert!(!verify_signature(b"another-secret", &first.raw_body, &first.signature));
    assert_eq!(sink.violations(), Vec::<String>::new());

    let failing =
        WebhookSink::start(WebhookOptions::new(SECRET).with_faults(FaultOptions::always(Fault::ServerError))).await;
    let error = webhook_channel(&failing, 5 * SECOND)
        .deliver(&trigger)
        .await
        .unwrap_err();
    assert!(matches!(error, DeliveryError::Retry { .. }), "{error:?}");
    let refusing = WebhookSink::start(WebhookOptions::new(b"a-different-secret")).await;
    let error = webhook_channel(&refusing, 5 * SECOND)
        .deliver(&trigger)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DeliveryError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn lost_answers_to_effective_requests_do_not_duplicate() {
    for fault in [
        Fault::ServerErrorAfterEffect,
        Fault::TimeoutAfterEffect,
        Fault::DroppedAfterEffect,
    ] {
        let jira = JiraServer::start(
            JiraOptions::new(EMAIL, TOKEN, "OPS").with_faults(FaultOptions::once_on("/rest/api/3/issue", fault)),
        )
        .await;
        let channel = jira_channel(&jira, TOKEN, SECOND, "Task");
        let trigger = notification(Event::Trigger, "rentals-db");
        let error = channel.deliver(&trigger).await.unwrap_err();
        assert!(matches!(error, DeliveryError::Retry { .. }), "{fault:?}: {error:?}");
        assert_eq!(jira.issues().len(), 1, "{fault:?}: the create took effect");

        let retried = channel.deliver(&trigger).await.unwrap();
        assert_eq!(retried.external_id.as_deref(), Some("OPS-1"), "{fault:?}");
        assert_eq!(
            jira.issues().len(),
            1,
            "{fault:?}: the retry found the issue instead of creating another"
        );
        assert_eq!(jira.injected_faults(), [fault]);
        assert_eq!(jira.violations(), Vec::<String>::new());
    }

    // A transition whose answer is lost: the retry finds nothing open and is done.
    let jira = JiraServer::start(JiraOptions::new(EMAIL, TOKEN, "OPS").with_faults(FaultOptions::once_on(
        "POST /rest/api/3/issue/OPS-1/transitions",
        Fault::ServerErrorAfterEffect,
    )))
    .await;
    let channel = jira_channel(&jira, TOKEN, SECOND, "Task");
    channel
        .deliver(&notification(Event::Trigger, "rentals-db"))
        .await
        .unwrap();
    let resolve = notification(Event::Resolve, "rentals-db");
    let error = channel.deliver(&resolve).await.unwrap_err();
    assert!(matches!(error, DeliveryError::Retry { .. }), "{error:?}");
    assert_eq!(channel.deliver(&resolve).await.unwrap(), Delivered::default());
    let issues = jira.issues();
    assert_eq!((issues.len(), issues[0].status), (1, JiraStatus::Done));
    assert_eq!(jira.violations(), Vec::<String>::new());
}

/// The local servers are only useful if they notice bad requests: send some by hand.
#[tokio::test]
async fn the_local_vendors_catch_bad_requests() {
    let client = reqwest::Client::new();
    let jira = JiraServer::start(JiraOptions::new(EMAIL, TOKEN, "OPS")).await;
    let url = |path: &str| format!("{}{path}", jira.base_url());

    let unauthenticated = client
        .post(url("/rest/api/3/issue"))
        .json(&json!({ "fields": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let bad_create = json!({ "fields": {
        "project": { "key": "OPS" },
        "issuetype": { "name": "Task" },
        "summary": "x".repeat(300),
        "labels": ["has space"],
        "description": { "type": "doc", "version": 1, "content": [
            { "type": "paragraph", "content": [{ "type": "text", "text": "" }] }
        ]},
    }});
    let response = client
        .post(url("/rest/api/3/issue"))
        .basic_auth(EMAIL, Some(TOKEN))
        .json(&bad_create)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let bad_search = json!({ "jql": "text ~ \"backup\"", "maxResults": "1", "limit": 5 });
    let response = client
        .post(url("/rest/api/3/search/jql"))
        .basic_auth(EMAIL, Some(TOKEN))
        .json(&bad_search)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let bad_comment =
        json!({ "body": { "type": "doc", "version": 1, "content": [] }, "created": "2026-11-25T03:00:00Z" });
    client
        .post(url("/rest/api/3/issue/OPS-9/comment"))
        .basic_auth(EMAIL, Some(TOKEN))
        .json(&bad_comment)
        .send()
        .await
        .unwrap();
    client
        .get(url("/rest/api/3/issue/OPS-9/transitions?expand=x&bogus=1"))
        .basic_auth(EMAIL, Some(TOKEN))
        .send()
        .await
        .unwrap();

    let violations = jira.violations().join("\n");
    for expected in [
        "/header/Authorization: Basic authorization is missing",
        "create issue: summary: Summary must be less than 255 characters.",
        "create issue: labels/0: The label is invalid.",
        "ADF /content/0/content/0: text nodes need non-empty text",
        "/body/maxResults: expected integer, got string",
        "/body/limit: property is not allowed",
        "unsupported JQL",
        "/body/created: read-only property must not be sent",
        "/query/bogus: unknown query parameter",
    ] {
        assert!(violations.contains(expected), "missing {expected:?} in:\n{violations}");
    }

    let pagerduty = PagerDutyServer::start(PagerDutyOptions::new(ROUTING_KEY)).await;
    let bad_event = json!({
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "k".repeat(300),
        "payload": { "summary": "s".repeat(1500), "source": "x", "severity": "fatal", "timestamp": "yesterday" },
        "links": [{ "text": "no href" }],
    });
    let response = client
        .post(format!("{}/v2/enqueue", pagerduty.base_url()))
        .json(&bad_event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let violations = pagerduty.violations().join("\n");
    for expected in [
        "/body/payload/severity: \"fatal\" is not one of",
        "/body/payload/timestamp: \"yesterday\" is not an RFC 3339 date-time",
        "/body/links/0: required property href is missing",
        "'dedup_key' is longer than 255 characters",
        "'payload.summary' is longer than 1024 characters",
    ] {
        assert!(violations.contains(expected), "missing {expected:?} in:\n{violations}");
    }
}

/// Exactly one ticket per flip while 30 % of requests fail, a third of those after they took
/// effect (issue created / event accepted, then a 500, no answer within the timeout, or a cut
/// connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_per_flip_despite_faults() {
    lifeboat_tests::init_logs();
    let faults = |seed| FaultOptions {
        delay: Duration::from_secs(3),
        ..FaultOptions::all(seed, 0.3)
    };
    let jira = JiraServer::start(JiraOptions::new(EMAIL, TOKEN, "OPS").with_faults(faults(20261125))).await;
    let pagerduty = PagerDutyServer::start(PagerDutyOptions::new(ROUTING_KEY).with_faults(faults(7))).await;
    let jira_channel = jira_channel(&jira, TOKEN, SECOND, "Task");
    let pagerduty_channel = pagerduty_channel(&pagerduty, ROUTING_KEY, SECOND);
    let assets: Vec<String> = (1..=20).map(|n| format!("db-{n:02}")).collect();

    let flips = assets.iter().map(|asset| {
        let (jira_channel, pagerduty_channel) = (&jira_channel, &pagerduty_channel);
        async move {
            for event in [Event::Trigger, Event::Resolve] {
                let flip = notification(event, asset);
                tokio::join!(
                    deliver_with_retries(jira_channel, &flip),
                    deliver_with_retries(pagerduty_channel, &flip),
                );
            }
        }
    });
    futures::future::join_all(flips).await;

    for asset in &assets {
        let key = dedup_key("pocketos-prod", asset);
        let issues = jira.issues_labelled(&key);
        assert_eq!(issues.len(), 1, "{asset}: {issues:#?}");
        assert_eq!(issues[0].status, JiraStatus::Done, "{asset}");
        let incident = pagerduty.incidents()[&key].clone();
        assert_eq!((incident.opened, incident.open), (1, false), "{asset}: {incident:?}");
    }
    assert_eq!(jira.issues().len(), assets.len());
    assert_eq!(pagerduty.incidents().len(), assets.len());

    let jira_faults = jira.injected_faults();
    let pagerduty_faults = pagerduty.injected_faults();
    let requests = jira.requests().len() + pagerduty.requests().len();
    let injected = jira_faults.len() + pagerduty_faults.len();
    eprintln!("{requests} requests, {injected} faults: jira {jira_faults:?}, pagerduty {pagerduty_faults:?}");
    assert!(
        injected * 100 >= requests * 15,
        "about 30 % of {requests} requests fail, got {injected}"
    );
    assert!(
        jira_faults.iter().any(|fault| fault.after_effect()),
        "jira saw effect-then-fail faults"
    );
    assert!(pagerduty_faults.iter().any(|fault| fault.after_effect()));
    let creates_after_effect = jira
        .requests()
        .iter()
        .filter(|r| r.path == "/rest/api/3/issue" && r.fault.is_some_and(Fault::after_effect))
        .count();
    eprintln!("{creates_after_effect} issue creates took effect and then failed");
    assert!(
        creates_after_effect > 0,
        "the seed should make some creates fail after taking effect"
    );
    assert_eq!(jira.violations(), Vec::<String>::new());
    assert_eq!(pagerduty.violations(), Vec::<String>::new());
}
