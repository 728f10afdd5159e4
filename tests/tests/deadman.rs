//! The dead-man's switch on a real store with a driven clock: an asset that stops passing is
//! reported `test.overdue` (explained by `agent.lost` when its agent went silent — one flip, not
//! two), a message is queued for its route, and both clear — with a resolve — when a pass
//! arrives again.

use chrono::{DateTime, Duration, Utc};
use lifeboat_coordinator::config::{AlertsConfig, RouteConfig};
use lifeboat_coordinator::posture::Posture;
use lifeboat_coordinator::store::{NewJoinToken, NewRun, ResultRow, Store, TestSpec, TokenClaim};
use lifeboat_shared::durations::HumanDuration;
use lifeboat_shared::findings::{FindingKind, Severity};
use lifeboat_shared::ids::{AgentId, Environment, ResultId};
use lifeboat_shared::protocol::{Outcome, ResultKind, RunResult};

fn at(hours: i64, t0: DateTime<Utc>) -> DateTime<Utc> {
    t0 + Duration::hours(hours)
}

fn passed(asset: &str, finished_at: DateTime<Utc>) -> RunResult {
    let mut result = RunResult::for_test(asset, Outcome::Passed);
    result.result_id = ResultId::new();
    result.kind = ResultKind::Restore;
    result.started_at = finished_at - Duration::minutes(3);
    result.finished_at = finished_at;
    result.recovery_point_age_seconds = 3600;
    result.rto_seconds = 180.0;
    result
}

async fn store_result(store: &Store, agent: AgentId, result: RunResult) {
    store
        .insert_results(&[ResultRow {
            agent_id: agent,
            environment: Environment::parse("prod").expect("env"),
            result,
            received_at: Utc::now(),
        }])
        .await
        .expect("insert");
}

#[tokio::test]
async fn overdue_and_lost_fire_once_and_clear_with_a_resolve() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("lifeboat.db").display()))
        .await
        .expect("store");
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now") - Duration::days(2);
    store
        .insert_join_token(&NewJoinToken {
            token_hash: "h".into(),
            environment: Environment::parse("prod").expect("env"),
            expires_at: t0 + Duration::days(10),
            uses_allowed: 1,
            created_at: t0,
        })
        .await
        .expect("token");
    let agent = store
        .claim_join_token(&TokenClaim {
            token_hash: "h".into(),
            key_fingerprint: "k".into(),
            agent_name: "prod-1".into(),
            now: t0,
        })
        .await
        .expect("claim")
        .agent_id;
    store.touch_agents(&[(agent, t0)]).await.expect("seen");
    store
        .sync_tests(
            &[TestSpec {
                environment: "prod".into(),
                asset: "rentals-db".into(),
                schedule: "0 */6 * * *".into(),
                timeout_seconds: 600,
                interval_seconds: 6 * 3600,
                rpo_seconds: 86_400,
                rto_seconds: 1800,
            }],
            t0,
        )
        .await
        .expect("tests");
    store
        .materialise_runs(
            "prod",
            "rentals-db",
            &[NewRun {
                environment: "prod".into(),
                asset: "rentals-db".into(),
                due_at: t0,
                start_deadline: t0 + Duration::hours(1),
                timeout_seconds: 600,
                max_attempts: 3,
                manual: false,
            }],
            None,
            t0,
        )
        .await
        .expect("run");
    let posture = Posture {
        store: store.clone(),
        routes: vec![RouteConfig {
            environments: vec!["prod".into()],
            min_severity: Severity::High,
            channels: vec!["hook".into()],
            group_wait: None,
            repeat_interval: Some(HumanDuration::from_secs(3600)),
        }],
        alerts: AlertsConfig::default(),
    };

    // Before the first interval is over nothing is judged; then a pass makes it recoverable,
    // quietly.
    assert!(posture.evaluate_all(at(1, t0)).await.expect("evaluate").is_empty());
    assert!(store.verdict("prod", "rentals-db").await.expect("verdict").is_none());
    store_result(&store, agent, passed("rentals-db", at(1, t0))).await;
    store.touch_agents(&[(agent, at(2, t0))]).await.expect("seen");
    assert!(posture.evaluate_all(at(2, t0)).await.expect("evaluate").is_empty());
    assert!(
        store
            .verdict("prod", "rentals-db")
            .await
            .expect("verdict")
            .expect("verdict")
            .recoverable
    );
    assert_eq!(store.outbox_depth().await.expect("depth"), 0, "quiet while healthy");

    // The agent goes silent; eight hours later the test is overdue, and says why.
    let flips = posture.evaluate_all(at(8, t0)).await.expect("evaluate");
    assert_eq!(flips.len(), 1);
    assert!(!flips[0].recoverable);
    let kinds: Vec<FindingKind> = flips[0].reasons.iter().map(|finding| finding.kind).collect();
    assert!(
        kinds.contains(&FindingKind::TestOverdue) && kinds.contains(&FindingKind::AgentLost),
        "{kinds:?}"
    );
    let overdue = flips[0]
        .reasons
        .iter()
        .find(|f| f.kind == FindingKind::TestOverdue)
        .expect("overdue");
    assert!(overdue.message.contains("prod-1"), "{}", overdue.message);
    assert_eq!(
        store.outbox_depth().await.expect("depth"),
        1,
        "one message for one flip"
    );
    // Evaluating again changes nothing: no second flip, no second message.
    assert!(
        posture
            .evaluate_all(at(8, t0) + Duration::minutes(1))
            .await
            .expect("evaluate")
            .is_empty()
    );
    assert_eq!(store.outbox_depth().await.expect("depth"), 1);

    // A reminder after the route's repeat interval, once.
    assert_eq!(posture.remind(at(10, t0)).await.expect("remind"), 1);
    assert_eq!(posture.remind(at(10, t0)).await.expect("remind"), 0);

    // The agent is back and passes: recoverable, and the ticket is resolved.
    store.touch_agents(&[(agent, at(9, t0))]).await.expect("seen");
    store_result(&store, agent, passed("rentals-db", at(9, t0))).await;
    let flips = posture
        .evaluate_all(at(9, t0) + Duration::minutes(1))
        .await
        .expect("evaluate");
    assert_eq!(flips.len(), 1);
    assert!(flips[0].recoverable);
    let due = store
        .claim_messages("w", at(12, t0), at(13, t0), 10)
        .await
        .expect("claim");
    let events: Vec<&str> = due.iter().map(|message| message.event.as_str()).collect();
    assert_eq!(events, ["trigger"], "the resolve waits behind the trigger");
    store
        .message_delivered(due[0].id, "w", None, at(12, t0))
        .await
        .expect("delivered");
    let rest = store
        .claim_messages("w", at(12, t0), at(13, t0), 10)
        .await
        .expect("claim");
    let events: Vec<&str> = rest.iter().map(|message| message.event.as_str()).collect();
    assert_eq!(events, ["reminder"]);
    store
        .message_delivered(rest[0].id, "w", None, at(12, t0))
        .await
        .expect("delivered");
    let last = store
        .claim_messages("w", at(12, t0), at(13, t0), 10)
        .await
        .expect("claim");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].event, "resolve");
}
