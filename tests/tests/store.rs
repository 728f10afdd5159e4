//! The store test suite, run against both engines.
//!
//! Each test is an `async fn(TestDb)`; `both_engines!` instantiates it twice, in module `sqlite`
//! (a fresh file in a temporary directory) and module `postgres` (a fresh database on a
//! throw-away cluster of its own), so `cargo nextest run --test store sqlite::` or `postgres::`
//! selects one engine.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use lifeboat_coordinator::store::{
    AgentRecord, Claimed, IssuedCertificate, LeaseRequest, NewJoinToken, NewMessage, NewRun, ResultRow, Store,
    StoreError, TestSpec, TokenClaim, VerdictRecord,
};
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_shared::ids::{AgentId, Environment, ResultId, RunId};
use lifeboat_shared::protocol::{Outcome, ResultKind, RunResult};
use lifeboat_tests::store_db::TestDb;
use serde_json::json;

lifeboat_tests::both_engines! {
    migrations_apply_on_empty_database_and_are_idempotent,
    claim_admits_an_agent,
    retry_with_same_key_returns_same_agent_without_consuming_a_use,
    second_key_on_single_use_token_is_refused,
    expired_token_is_refused,
    unknown_token_is_refused,
    multi_use_token_admits_as_many_keys_as_allowed,
    concurrent_claims_of_single_use_token_have_one_winner,
    concurrent_retries_with_one_key_create_one_agent,
    certificate_is_recorded,
    connection_state_belongs_to_the_instance_that_holds_it,
    touch_agents_only_moves_last_seen_forward,
    revocation_is_idempotent_and_listed,
    inventory_is_replaced,
    agents_are_listed_by_environment_then_name,
    results_are_stored_once,
    results_round_trip,
    results_for_asset_are_newest_first_and_limited,
    runs_are_materialised_once_per_due_time,
    numbers_that_would_not_read_back_are_never_written,
    concurrent_leases_of_one_run_have_one_winner,
    expired_leases_requeue_until_attempts_run_out_and_late_runs_are_missed,
    a_flip_is_recorded_once_with_its_messages_under_concurrency,
    outbox_messages_go_to_one_worker_and_a_resolve_waits_for_its_trigger,
    a_flip_back_before_the_trigger_was_sent_sends_nothing,
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Now, truncated to the millisecond (the store's precision), so round trips compare equal.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now is in range")
}

fn env(name: &str) -> Environment {
    Environment::parse(name).expect("valid environment")
}

async fn insert_token(store: &Store, hash: &str, environment: &str, uses: u32, expires_at: DateTime<Utc>) {
    store
        .insert_join_token(&NewJoinToken {
            token_hash: hash.to_owned(),
            environment: env(environment),
            expires_at,
            uses_allowed: uses,
            created_at: now(),
        })
        .await
        .expect("insert token");
}

fn claim(hash: &str, key: &str, name: &str) -> TokenClaim {
    TokenClaim {
        token_hash: hash.to_owned(),
        key_fingerprint: key.to_owned(),
        agent_name: name.to_owned(),
        now: now(),
    }
}

/// Enrolls one agent with its own single-use token.
async fn enroll(store: &Store, environment: &str, name: &str) -> AgentId {
    let hash = format!("token-{name}-{}", uuid::Uuid::new_v4());
    insert_token(store, &hash, environment, 1, now() + Duration::hours(1)).await;
    store
        .claim_join_token(&claim(&hash, &format!("key-{name}"), name))
        .await
        .expect("claim")
        .agent_id
}

async fn agent(store: &Store, id: AgentId) -> AgentRecord {
    store.agent(id).await.expect("read agent").expect("agent exists")
}

fn result(asset: &str, finished_at: DateTime<Utc>) -> RunResult {
    RunResult {
        result_id: ResultId::new(),
        kind: ResultKind::Restore,
        run_id: None,
        asset: asset.to_owned(),
        backup: "nightly".to_owned(),
        recovery_point: "2026-11-01T02:00:00Z".to_owned(),
        outcome: Outcome::Passed,
        started_at: finished_at - Duration::seconds(90),
        finished_at,
        restore_seconds: 90.0,
        rto_seconds: 3600.0,
        recovery_point_age_seconds: 7200,
        findings: Vec::new(),
        detail: serde_json::Value::Null,
    }
}

fn rows(agent_id: AgentId, results: &[RunResult]) -> Vec<ResultRow> {
    results
        .iter()
        .map(|result| ResultRow {
            agent_id,
            environment: env("prod"),
            result: result.clone(),
            received_at: now(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Migrations

async fn migrations_apply_on_empty_database_and_are_idempotent(db: TestDb) {
    assert_eq!(db.store.count_results().await.expect("count"), 0);
    assert!(db.store.list_agents().await.expect("list").is_empty());
    let id = enroll(&db.store, "prod", "web-1").await;

    for _ in 0..2 {
        let again = Store::connect(&db.url).await.expect("reconnect runs migrations again");
        assert_eq!(agent(&again, id).await.name, "web-1");
        again.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Join tokens and enrollment

async fn claim_admits_an_agent(db: TestDb) {
    let store = &db.store;
    insert_token(store, "h1", "pocketos-prod", 1, now() + Duration::hours(1)).await;
    assert_eq!(
        store.join_token_environment("h1").await.expect("lookup"),
        Some(env("pocketos-prod"))
    );
    assert_eq!(store.join_token_environment("nope").await.expect("lookup"), None);

    let request = claim("h1", "key-a", "db-host-1");
    let claimed = store.claim_join_token(&request).await.expect("claim");
    assert!(!claimed.retry);
    assert_eq!(claimed.environment, env("pocketos-prod"));
    assert_eq!(claimed.certificate_pem, None);

    let record = agent(store, claimed.agent_id).await;
    assert_eq!(record.name, "db-host-1");
    assert_eq!(record.environment, env("pocketos-prod"));
    assert_eq!(record.created_at, request.now);
    assert!(!record.connected);
    assert_eq!(record.capabilities, serde_json::Value::Null);
    assert_eq!(record.hostname, None);
    assert_eq!(record.last_seen, None);
    assert_eq!(record.revoked_at, None);
    assert!(store.agent(AgentId::new()).await.expect("read").is_none());
}

async fn retry_with_same_key_returns_same_agent_without_consuming_a_use(db: TestDb) {
    let store = &db.store;
    insert_token(store, "h2", "prod", 2, now() + Duration::hours(1)).await;
    let first = store.claim_join_token(&claim("h2", "key-a", "a")).await.expect("claim");

    // Lost answer, before the certificate was saved: same agent, nothing to hand back yet.
    let retry = store.claim_join_token(&claim("h2", "key-a", "a")).await.expect("retry");
    assert_eq!(
        retry,
        Claimed {
            agent_id: first.agent_id,
            environment: env("prod"),
            retry: true,
            certificate_pem: None,
        }
    );

    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    store
        .save_certificate(&IssuedCertificate {
            agent_id: first.agent_id,
            serial: "01ab".to_owned(),
            not_after: now() + Duration::days(30),
            pem: pem.to_owned(),
            key_fingerprint: "key-a".to_owned(),
            issued_at: now(),
        })
        .await
        .expect("save certificate");
    let retry = store.claim_join_token(&claim("h2", "key-a", "a")).await.expect("retry");
    assert!(retry.retry);
    assert_eq!(retry.agent_id, first.agent_id);
    assert_eq!(retry.certificate_pem.as_deref(), Some(pem));

    // Retries consumed nothing: the second use is still there, and then the token is spent,
    // while the first key can still retry.
    let second = store
        .claim_join_token(&claim("h2", "key-b", "b"))
        .await
        .expect("second key");
    assert!(!second.retry);
    assert_ne!(second.agent_id, first.agent_id);
    assert!(matches!(
        store.claim_join_token(&claim("h2", "key-c", "c")).await,
        Err(StoreError::TokenExhausted)
    ));
    let retry = store.claim_join_token(&claim("h2", "key-a", "a")).await.expect("retry");
    assert_eq!(retry.agent_id, first.agent_id);
    assert_eq!(store.list_agents().await.expect("list").len(), 2);
}

async fn second_key_on_single_use_token_is_refused(db: TestDb) {
    let store = &db.store;
    insert_token(store, "h3", "prod", 1, now() + Duration::hours(1)).await;
    store.claim_join_token(&claim("h3", "key-a", "a")).await.expect("claim");
    let err = store
        .claim_join_token(&claim("h3", "key-b", "b"))
        .await
        .expect_err("spent");
    assert!(matches!(err, StoreError::TokenExhausted), "{err}");
    assert_eq!(store.list_agents().await.expect("list").len(), 1);
}

async fn expired_token_is_refused(db: TestDb) {
    let store = &db.store;
    let request = claim("h4", "key-a", "a");
    insert_token(store, "h4", "prod", 5, request.now - Duration::seconds(1)).await;
    let err = store.claim_join_token(&request).await.expect_err("expired");
    assert!(matches!(err, StoreError::TokenExpired), "{err}");

    // Expiry is exclusive: a token expiring this very millisecond is expired.
    insert_token(store, "h4-edge", "prod", 5, request.now).await;
    let err = store
        .claim_join_token(&TokenClaim {
            token_hash: "h4-edge".to_owned(),
            ..request
        })
        .await
        .expect_err("expired");
    assert!(matches!(err, StoreError::TokenExpired), "{err}");
    assert!(store.list_agents().await.expect("list").is_empty());
}

async fn unknown_token_is_refused(db: TestDb) {
    let err = db
        .store
        .claim_join_token(&claim("never-issued", "key-a", "a"))
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::TokenUnknown), "{err}");
}

async fn multi_use_token_admits_as_many_keys_as_allowed(db: TestDb) {
    let store = &db.store;
    insert_token(store, "h5", "prod", 3, now() + Duration::hours(1)).await;
    let mut agents = BTreeSet::new();
    for key in ["k1", "k2", "k3"] {
        let claimed = store.claim_join_token(&claim("h5", key, key)).await.expect("claim");
        assert!(!claimed.retry);
        agents.insert(claimed.agent_id);
    }
    assert_eq!(agents.len(), 3);
    let err = store
        .claim_join_token(&claim("h5", "k4", "k4"))
        .await
        .expect_err("spent");
    assert!(matches!(err, StoreError::TokenExhausted), "{err}");
    assert_eq!(store.list_agents().await.expect("list").len(), 3);
}

async fn concurrent_claims_of_single_use_token_have_one_winner(db: TestDb) {
    insert_token(&db.store, "h6", "prod", 1, now() + Duration::hours(1)).await;
    let mut claims = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = db.store.clone();
        claims.spawn(async move { store.claim_join_token(&claim("h6", &format!("key-{i}"), "racer")).await });
    }
    let (mut winners, mut exhausted) = (0, 0);
    while let Some(outcome) = claims.join_next().await {
        match outcome.expect("task") {
            Ok(claimed) => {
                assert!(!claimed.retry);
                winners += 1;
            }
            Err(StoreError::TokenExhausted) => exhausted += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((winners, exhausted), (1, 19));
    assert_eq!(db.store.list_agents().await.expect("list").len(), 1);
}

async fn concurrent_retries_with_one_key_create_one_agent(db: TestDb) {
    insert_token(&db.store, "h7", "prod", 5, now() + Duration::hours(1)).await;
    let mut claims = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = db.store.clone();
        claims.spawn(async move { store.claim_join_token(&claim("h7", "same-key", "agent")).await });
    }
    let mut agents = BTreeSet::new();
    let mut first_claims = 0;
    while let Some(outcome) = claims.join_next().await {
        let claimed = outcome.expect("task").expect("claim or retry");
        agents.insert(claimed.agent_id);
        first_claims += usize::from(!claimed.retry);
    }
    assert_eq!(agents.len(), 1);
    assert_eq!(first_claims, 1);
    assert_eq!(db.store.list_agents().await.expect("list").len(), 1);
}

async fn certificate_is_recorded(db: TestDb) {
    let store = &db.store;
    let id = enroll(store, "prod", "a").await;
    let not_after = now() + Duration::days(7);
    let certificate = IssuedCertificate {
        agent_id: id,
        serial: "7f".to_owned(),
        not_after,
        pem: "pem".to_owned(),
        key_fingerprint: "key-a".to_owned(),
        issued_at: now(),
    };
    store.save_certificate(&certificate).await.expect("save");
    assert_eq!(agent(store, id).await.cert_not_after, Some(not_after));

    let unknown = AgentId::new();
    let err = store
        .save_certificate(&IssuedCertificate {
            agent_id: unknown,
            serial: "80".to_owned(),
            ..certificate
        })
        .await
        .expect_err("unknown agent");
    assert!(matches!(err, StoreError::AgentNotFound(id) if id == unknown), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Agents

async fn connection_state_belongs_to_the_instance_that_holds_it(db: TestDb) {
    let store = &db.store;
    let id = enroll(store, "prod", "a").await;
    let t0 = now();
    let capabilities = json!({"postgres_majors": [15], "restic": true});

    store
        .mark_connected(id, "host-a", "0.1.0", &capabilities, "replica-1", t0)
        .await
        .expect("connect");
    let record = agent(store, id).await;
    assert!(record.connected);
    assert_eq!(record.hostname.as_deref(), Some("host-a"));
    assert_eq!(record.version.as_deref(), Some("0.1.0"));
    assert_eq!(record.capabilities, capabilities);
    assert_eq!(record.last_seen, Some(t0));

    // The agent reconnects to replica 2 before replica 1 notices the old session ended.
    let t1 = t0 + Duration::seconds(5);
    store
        .mark_connected(id, "host-a", "0.1.1", &capabilities, "replica-2", t1)
        .await
        .expect("reconnect");
    let t2 = t0 + Duration::seconds(6);
    assert!(
        !store
            .mark_disconnected(id, "replica-1", t2)
            .await
            .expect("stale disconnect")
    );
    let record = agent(store, id).await;
    assert!(record.connected, "a stale replica must not undo the reconnect");
    assert_eq!(record.version.as_deref(), Some("0.1.1"));
    assert_eq!(record.last_seen, Some(t1));

    let t3 = t0 + Duration::seconds(9);
    assert!(store.mark_disconnected(id, "replica-2", t3).await.expect("disconnect"));
    let record = agent(store, id).await;
    assert!(!record.connected);
    assert_eq!(record.last_seen, Some(t3));
    assert!(!store.mark_disconnected(id, "replica-2", t3).await.expect("twice"));

    let unknown = AgentId::new();
    let err = store
        .mark_connected(unknown, "h", "v", &capabilities, "replica-1", t3)
        .await
        .expect_err("unknown agent");
    assert!(matches!(err, StoreError::AgentNotFound(id) if id == unknown), "{err}");
}

async fn touch_agents_only_moves_last_seen_forward(db: TestDb) {
    let store = &db.store;
    let a = enroll(store, "prod", "a").await;
    let b = enroll(store, "prod", "b").await;
    let t = now();
    let (t1, t2, t3) = (
        t + Duration::seconds(1),
        t + Duration::seconds(2),
        t + Duration::seconds(3),
    );

    store.touch_agents(&[]).await.expect("empty batch");
    store.touch_agents(&[(a, t2), (b, t1)]).await.expect("touch");
    store
        .touch_agents(&[(a, t1), (b, t3), (AgentId::new(), t3)])
        .await
        .expect("touch with an unknown agent");
    assert_eq!(agent(store, a).await.last_seen, Some(t2));
    assert_eq!(agent(store, b).await.last_seen, Some(t3));

    let many: Vec<(AgentId, DateTime<Utc>)> = (0..300).map(|i| (a, t3 + Duration::milliseconds(i))).collect();
    store.touch_agents(&many).await.expect("large batch");
    assert_eq!(agent(store, a).await.last_seen, Some(t3 + Duration::milliseconds(299)));
}

async fn revocation_is_idempotent_and_listed(db: TestDb) {
    let store = &db.store;
    let a = enroll(store, "prod", "a").await;
    let b = enroll(store, "prod", "b").await;
    assert!(store.revoked_agents().await.expect("list").is_empty());

    let t1 = now();
    store.revoke_agent(a, t1).await.expect("revoke");
    store
        .revoke_agent(a, t1 + Duration::hours(1))
        .await
        .expect("revoke again");
    assert_eq!(store.revoked_agents().await.expect("list"), vec![a]);
    assert_eq!(
        agent(store, a).await.revoked_at,
        Some(t1),
        "the first revocation time is kept"
    );
    assert_eq!(agent(store, b).await.revoked_at, None);

    let unknown = AgentId::new();
    let err = store.revoke_agent(unknown, t1).await.expect_err("unknown");
    assert!(matches!(err, StoreError::AgentNotFound(id) if id == unknown), "{err}");
}

async fn inventory_is_replaced(db: TestDb) {
    let store = &db.store;
    let id = enroll(store, "prod", "a").await;
    assert_eq!(store.inventory(id).await.expect("read"), None);
    let first = json!({"assets": [{"name": "rentals-db"}], "backups": [], "tests": []});
    let second = json!({"assets": [], "backups": [], "tests": []});
    store.save_inventory(id, &first, now()).await.expect("save");
    assert_eq!(store.inventory(id).await.expect("read"), Some(first));
    store.save_inventory(id, &second, now()).await.expect("replace");
    assert_eq!(store.inventory(id).await.expect("read"), Some(second.clone()));

    let unknown = AgentId::new();
    let err = store
        .save_inventory(unknown, &second, now())
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::AgentNotFound(id) if id == unknown), "{err}");
}

async fn agents_are_listed_by_environment_then_name(db: TestDb) {
    let store = &db.store;
    for (environment, name) in [("staging", "b"), ("prod", "z"), ("staging", "a"), ("prod", "m")] {
        enroll(store, environment, name).await;
    }
    let listed: Vec<(String, String)> = store
        .list_agents()
        .await
        .expect("list")
        .into_iter()
        .map(|agent| (agent.environment.to_string(), agent.name))
        .collect();
    let expected = [("prod", "m"), ("prod", "z"), ("staging", "a"), ("staging", "b")]
        .map(|(environment, name)| (environment.to_owned(), name.to_owned()));
    assert_eq!(listed, expected);
}

// ---------------------------------------------------------------------------------------------
// Results

async fn results_are_stored_once(db: TestDb) {
    let store = &db.store;
    let agent_id = AgentId::new();
    let t = now();
    let first: Vec<RunResult> = (0..10).map(|i| result("db", t + Duration::seconds(i))).collect();
    assert_eq!(store.insert_results(&rows(agent_id, &first)).await.expect("insert"), 10);
    assert_eq!(store.insert_results(&rows(agent_id, &first)).await.expect("resend"), 0);

    let mut overlapping: Vec<RunResult> = first[5..].to_vec();
    overlapping.extend((0..5).map(|i| result("db", t + Duration::seconds(20 + i))));
    assert_eq!(
        store
            .insert_results(&rows(agent_id, &overlapping))
            .await
            .expect("overlap"),
        5
    );

    // The same result twice in one batch is stored once.
    let twice = result("db", t);
    assert_eq!(
        store
            .insert_results(&rows(agent_id, &[twice.clone(), twice.clone()]))
            .await
            .expect("duplicate in batch"),
        1
    );
    assert_eq!(store.insert_results(&[]).await.expect("empty"), 0);
    assert_eq!(store.count_results().await.expect("count"), 16);

    // A batch of 500 spans every statement shape (7 × 64 + 32 + 16 + 4).
    let large: Vec<RunResult> = (0..500).map(|i| result("big", t + Duration::milliseconds(i))).collect();
    assert_eq!(store.insert_results(&rows(agent_id, &large)).await.expect("large"), 500);
    assert_eq!(
        store
            .insert_results(&rows(agent_id, &large))
            .await
            .expect("large resend"),
        0
    );
    assert_eq!(store.count_results().await.expect("count"), 516);

    let mut expected: Vec<ResultId> = first
        .iter()
        .chain(&overlapping)
        .chain([&twice])
        .chain(&large)
        .map(|result| result.result_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    expected.sort();
    assert_eq!(store.result_ids().await.expect("ids"), expected);
}

async fn results_round_trip(db: TestDb) {
    let store = &db.store;
    let agent_id = AgentId::new();
    let t = now();
    let mut full = result("rentals-db", t);
    full.run_id = Some(RunId::new());
    full.outcome = Outcome::Failed;
    full.restore_seconds = 4123.25;
    full.rto_seconds = 3600.0;
    full.recovery_point_age_seconds = -5;
    full.recovery_point = "restic:4f2a9c".to_owned();
    full.findings = vec![
        Finding::new(
            FindingKind::RestoreRtoExceeded,
            "rentals-db",
            "restore took 68m, RTO is 60m",
        )
        .with_evidence(json!({"restore_seconds": 4123.25, "rto_seconds": 3600}))
        .with_remediation("restore from a closer copy"),
        Finding::new(FindingKind::DriftDetected, "rentals-db", "3 rows differ").with_severity(Severity::Medium),
    ];
    full.detail =
        json!({"checks": [{"name": "row_count", "passed": false, "tables": {"orders": 1043}}], "ünïcode": "✓"});
    let mut bare = result("rentals-db", t - Duration::hours(1));
    bare.outcome = Outcome::TimedOut;

    let received_at = now();
    let batch: Vec<ResultRow> = [&full, &bare]
        .into_iter()
        .map(|result| ResultRow {
            agent_id,
            environment: env("pocketos-prod"),
            result: result.clone(),
            received_at,
        })
        .collect();
    assert_eq!(store.insert_results(&batch).await.expect("insert"), 2);

    let stored = store.results_for_asset("rentals-db", 10).await.expect("read");
    assert_eq!(stored.len(), 2);
    for (stored, expected) in stored.iter().zip([&full, &bare]) {
        assert_eq!(&stored.result, expected);
        assert_eq!(stored.agent_id, agent_id);
        assert_eq!(stored.environment, env("pocketos-prod"));
        assert_eq!(stored.received_at, received_at);
    }
}

async fn results_for_asset_are_newest_first_and_limited(db: TestDb) {
    let store = &db.store;
    let agent_id = AgentId::new();
    let t = now();
    // Inserted out of order, across two batches.
    let db_results: Vec<RunResult> = [3, 1, 4, 0, 2].map(|i| result("db", t + Duration::minutes(i))).to_vec();
    let other: Vec<RunResult> = (0..2).map(|i| result("other", t + Duration::hours(i))).collect();
    store
        .insert_results(&rows(agent_id, &db_results[..2]))
        .await
        .expect("insert");
    store
        .insert_results(&rows(agent_id, &db_results[2..]))
        .await
        .expect("insert");
    store.insert_results(&rows(agent_id, &other)).await.expect("insert");

    let newest: Vec<DateTime<Utc>> = store
        .results_for_asset("db", 3)
        .await
        .expect("read")
        .into_iter()
        .map(|stored| stored.result.finished_at)
        .collect();
    assert_eq!(newest, [4, 3, 2].map(|i| t + Duration::minutes(i)));
    assert_eq!(store.results_for_asset("other", 10).await.expect("read").len(), 2);
    assert!(store.results_for_asset("missing", 10).await.expect("read").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Drills: tests, runs, leases

fn spec(asset: &str) -> TestSpec {
    TestSpec {
        environment: "prod".into(),
        asset: asset.into(),
        schedule: "0 */6 * * *".into(),
        timeout_seconds: 600,
        interval_seconds: 86_400,
        rpo_seconds: 86_400,
        rto_seconds: 1800,
    }
}

fn new_run(asset: &str, due_at: DateTime<Utc>, max_attempts: i64) -> NewRun {
    NewRun {
        environment: "prod".into(),
        asset: asset.into(),
        due_at,
        start_deadline: due_at + Duration::hours(1),
        timeout_seconds: 600,
        max_attempts,
        manual: false,
    }
}

/// A timeout the lease arithmetic cannot hold (10^13 s once wrote a lease no query could read)
/// is refused by every writer, and nothing is written.
async fn numbers_that_would_not_read_back_are_never_written(db: TestDb) {
    let t = now();
    let absurd = TestSpec {
        timeout_seconds: 10_000_000_000_000,
        ..spec("db")
    };
    assert!(matches!(
        db.store.sync_tests(&[spec("cache"), absurd], t).await,
        Err(StoreError::OutOfRange(_))
    ));
    assert!(
        db.store.tests().await.expect("tests").is_empty(),
        "the batch is refused whole"
    );
    db.store.sync_tests(&[spec("db")], t).await.expect("sync");
    assert!(matches!(
        db.store
            .set_test_override("prod", "db", None, Some(i64::MAX / 1_000), false)
            .await,
        Err(StoreError::OutOfRange(_))
    ));
    let run = NewRun {
        timeout_seconds: 1 << 62,
        ..new_run("db", t, 3)
    };
    assert!(matches!(
        db.store.materialise_runs("prod", "db", &[run], None, t).await,
        Err(StoreError::OutOfRange(_))
    ));
    assert!(db.store.runs(None, 10).await.expect("runs").is_empty());
    assert_eq!(
        db.store.tests().await.expect("tests")[0].effective_timeout_seconds(),
        600
    );
}

async fn runs_are_materialised_once_per_due_time(db: TestDb) {
    let t = now();
    db.store.sync_tests(&[spec("db")], t).await.expect("sync");
    let other = Store::connect(&db.url).await.expect("second replica");
    let due = t - Duration::minutes(1);
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..10 {
        let store = if i % 2 == 0 { db.store.clone() } else { other.clone() };
        racers.spawn(async move {
            store
                .materialise_runs(
                    "prod",
                    "db",
                    &[new_run("db", due, 3)],
                    Some(due + Duration::hours(6)),
                    t,
                )
                .await
                .expect("materialise")
        });
    }
    let mut inserted = 0;
    while let Some(count) = racers.join_next().await {
        inserted += count.expect("task");
    }
    assert_eq!(inserted, 1);
    assert_eq!(db.store.runs(Some("db"), 10).await.expect("runs").len(), 1);
    let test = db.store.tests().await.expect("tests").remove(0);
    assert_eq!(test.next_due_at, Some(due + Duration::hours(6)));
    // A new schedule from the inventory resets the next due time; overrides survive syncs.
    assert!(
        db.store
            .set_test_override("prod", "db", Some("0 3 * * *"), None, false)
            .await
            .expect("override")
    );
    db.store.sync_tests(&[spec("db")], t).await.expect("sync");
    let test = db.store.tests().await.expect("tests").remove(0);
    assert_eq!(test.effective_schedule(), "0 3 * * *");
    other.close().await;
}

async fn concurrent_leases_of_one_run_have_one_winner(db: TestDb) {
    let t = now();
    db.store.sync_tests(&[spec("db")], t).await.expect("sync");
    db.store
        .materialise_runs("prod", "db", &[new_run("db", t - Duration::seconds(5), 3)], None, t)
        .await
        .expect("materialise");
    let other = Store::connect(&db.url).await.expect("second replica");
    let assets = vec!["db".to_owned()];
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..10 {
        let store = if i % 2 == 0 { db.store.clone() } else { other.clone() };
        let assets = assets.clone();
        racers.spawn(async move {
            store
                .lease_runs(
                    &LeaseRequest {
                        agent: AgentId::new(),
                        instance: &format!("replica-{}", i % 2),
                        environment: "prod",
                        assets: &assets,
                        grace_millis: 60_000,
                    },
                    t,
                    1,
                )
                .await
                .expect("lease")
                .len()
        });
    }
    let mut leased = 0;
    while let Some(count) = racers.join_next().await {
        leased += count.expect("task");
    }
    assert_eq!(leased, 1, "exactly one agent gets the run");
    let run = db.store.runs(Some("db"), 1).await.expect("runs").remove(0);
    assert_eq!((run.state.as_str(), run.attempts), ("leased", 1));
    // An agent holding a lease gets no second one; another environment's agent gets nothing.
    db.store
        .materialise_runs("prod", "db", &[new_run("db", t - Duration::seconds(1), 3)], None, t)
        .await
        .expect("materialise");
    let holder = run.agent_id.expect("holder");
    assert!(
        db.store
            .lease_runs(
                &LeaseRequest {
                    agent: holder,
                    instance: "r",
                    environment: "prod",
                    assets: &assets,
                    grace_millis: 60_000
                },
                t,
                1
            )
            .await
            .expect("lease")
            .is_empty()
    );
    assert!(
        db.store
            .lease_runs(
                &LeaseRequest {
                    agent: AgentId::new(),
                    instance: "r",
                    environment: "staging",
                    assets: &assets,
                    grace_millis: 60_000
                },
                t,
                1
            )
            .await
            .expect("lease")
            .is_empty()
    );
    // Only the holder's result completes it (not another agent's, not from another
    // environment), and only once.
    for (agent, environment) in [(AgentId::new(), "prod"), (holder, "staging")] {
        assert!(
            !db.store
                .complete_run(run.run_id, uuid::Uuid::new_v4(), "passed", (agent, environment), t)
                .await
                .expect("complete"),
            "{agent} of {environment} completed a run it does not hold"
        );
    }
    assert!(
        db.store
            .complete_run(run.run_id, uuid::Uuid::new_v4(), "passed", (holder, "prod"), t)
            .await
            .expect("complete")
    );
    assert!(
        !db.store
            .complete_run(run.run_id, uuid::Uuid::new_v4(), "passed", (holder, "prod"), t)
            .await
            .expect("complete")
    );
    other.close().await;
}

async fn expired_leases_requeue_until_attempts_run_out_and_late_runs_are_missed(db: TestDb) {
    let t = now();
    db.store
        .sync_tests(&[spec("db"), spec("cache")], t)
        .await
        .expect("sync");
    db.store
        .materialise_runs("prod", "db", &[new_run("db", t, 2)], None, t)
        .await
        .expect("materialise");
    let assets = vec!["db".to_owned()];
    // Lease 1 expires (timeout 600 s + grace 60 s) → queued again.
    let first = db
        .store
        .lease_runs(
            &LeaseRequest {
                agent: AgentId::new(),
                instance: "r",
                environment: "prod",
                assets: &assets,
                grace_millis: 60_000,
            },
            t,
            1,
        )
        .await
        .expect("lease");
    assert_eq!(first.len(), 1);
    let later = t + Duration::seconds(700);
    let (expired, _) = db
        .store
        .expire_runs(later, later - Duration::minutes(2))
        .await
        .expect("expire");
    assert_eq!(expired, 1);
    let run = db.store.run(first[0].run_id).await.expect("run").expect("exists");
    assert_eq!(run.state, "queued");
    assert!(
        run.last_error.as_deref().unwrap_or("").contains("lease expired"),
        "{run:?}"
    );
    // Lease 2 (the last attempt) expires too → failed.
    let second = db
        .store
        .lease_runs(
            &LeaseRequest {
                agent: AgentId::new(),
                instance: "r",
                environment: "prod",
                assets: &assets,
                grace_millis: 60_000,
            },
            later,
            1,
        )
        .await
        .expect("lease");
    assert_eq!(second.len(), 1);
    let latest = later + Duration::seconds(700);
    db.store
        .expire_runs(latest, latest - Duration::minutes(2))
        .await
        .expect("expire");
    assert_eq!(
        db.store.run(first[0].run_id).await.expect("run").expect("exists").state,
        "failed"
    );
    // A run nobody starts before its deadline is missed.
    db.store
        .materialise_runs("prod", "cache", &[new_run("cache", t, 3)], None, t)
        .await
        .expect("materialise");
    let (_, missed) = db
        .store
        .expire_runs(t + Duration::minutes(61), t)
        .await
        .expect("expire");
    assert_eq!(missed, 1);
    assert_eq!(db.store.runs(Some("cache"), 1).await.expect("runs")[0].state, "missed");
}

// ---------------------------------------------------------------------------------------------
// Verdicts, flips and the outbox

fn verdict(asset: &str, recoverable: bool, at: DateTime<Utc>) -> VerdictRecord {
    VerdictRecord {
        environment: "prod".into(),
        asset: asset.into(),
        recoverable,
        reasons: if recoverable {
            Vec::new()
        } else {
            vec![Finding::new(FindingKind::BackupStale, asset, "92 days old").with_severity(Severity::Critical)]
        },
        last_passed_at: None,
        backup_age_seconds: None,
        restore_seconds: None,
        rpo_seconds: Some(86_400),
        rto_seconds: Some(1800),
        since: at,
        updated_at: at,
    }
}

fn message(channel: &str, event: &'static str, key: &str, not_before: DateTime<Utc>) -> NewMessage {
    NewMessage {
        channel: channel.into(),
        event,
        dedup_key: key.into(),
        payload: json!({"event": event}),
        not_before,
        silenced: false,
    }
}

async fn a_flip_is_recorded_once_with_its_messages_under_concurrency(db: TestDb) {
    let t = now();
    let other = Store::connect(&db.url).await.expect("second replica");
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..10 {
        let store = if i % 2 == 0 { db.store.clone() } else { other.clone() };
        racers.spawn(async move {
            store
                .record_verdict(&verdict("db", false, t), "key-db", |_, _, _| {
                    vec![message("jira", "trigger", "key-db", t)]
                })
                .await
                .expect("record")
                .is_some()
        });
    }
    let mut flips = 0;
    while let Some(flipped) = racers.join_next().await {
        flips += usize::from(flipped.expect("task"));
    }
    assert_eq!(flips, 1);
    assert_eq!(db.store.flips(None, Some("db"), 10).await.expect("flips").len(), 1);
    assert_eq!(db.store.outbox_depth().await.expect("depth"), 1);
    // The first verdict of a healthy asset is not a flip; the same verdict again is not either.
    assert!(
        db.store
            .record_verdict(&verdict("web", true, t), "key-web", |_, _, _| Vec::new())
            .await
            .expect("record")
            .is_none()
    );
    assert!(
        db.store
            .record_verdict(&verdict("db", false, t), "key-db", |_, _, _| Vec::new())
            .await
            .expect("record")
            .is_none()
    );
    // Flipping back hands the closure the channels where the ticket is open.
    let back = db
        .store
        .record_verdict(
            &verdict("db", true, t + Duration::minutes(5)),
            "key-db",
            |flip, previous, open| {
                assert!(flip.recoverable);
                assert!(previous.is_some_and(|previous| !previous.recoverable));
                assert_eq!(open, ["jira".to_owned()]);
                vec![message("jira", "resolve", "key-db", t)]
            },
        )
        .await
        .expect("record");
    assert!(back.is_some());
    let stored = db.store.verdict("prod", "db").await.expect("verdict").expect("exists");
    assert!(stored.recoverable);
    assert_eq!(stored.since, t + Duration::minutes(5));
    other.close().await;
}

async fn outbox_messages_go_to_one_worker_and_a_resolve_waits_for_its_trigger(db: TestDb) {
    let t = now();
    db.store
        .enqueue_messages(
            &[
                message("jira", "trigger", "k1", t),
                message("jira", "resolve", "k1", t),
                message("pager", "trigger", "k1", t),
            ],
            t,
        )
        .await
        .expect("enqueue");
    let other = Store::connect(&db.url).await.expect("second replica");
    let (a, b) = tokio::join!(
        db.store.claim_messages("a", t, t + Duration::minutes(2), 10),
        other.claim_messages("b", t, t + Duration::minutes(2), 10)
    );
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    let claimed: Vec<(String, String)> = a
        .iter()
        .chain(&b)
        .map(|m| (m.channel.clone(), m.event.clone()))
        .collect();
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    assert!(
        claimed.contains(&("jira".into(), "trigger".into())) && claimed.contains(&("pager".into(), "trigger".into()))
    );
    // Claimed rows are not claimed again while the claim lasts.
    assert!(
        db.store
            .claim_messages("c", t, t + Duration::minutes(2), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    // The jira trigger fails: retried later; the resolve still waits behind it.
    let (owner, jira) = if a.iter().any(|m| m.channel == "jira") {
        ("a", &a)
    } else {
        ("b", &b)
    };
    let trigger = jira.iter().find(|m| m.channel == "jira").expect("jira trigger");
    db.store
        .message_retry(trigger.id, owner, t + Duration::seconds(30), "503")
        .await
        .expect("retry");
    assert!(
        db.store
            .claim_messages("c", t + Duration::seconds(1), t + Duration::minutes(2), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = db
        .store
        .claim_messages("c", t + Duration::seconds(31), t + Duration::minutes(3), 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].event.as_str(), again[0].attempts), ("trigger", 2));
    assert!(
        db.store
            .message_delivered(again[0].id, "c", Some("OPS-1"), t)
            .await
            .expect("delivered")
    );
    let resolve = db
        .store
        .claim_messages("c", t + Duration::seconds(32), t + Duration::minutes(3), 10)
        .await
        .expect("claim");
    assert_eq!(resolve.len(), 1);
    assert_eq!(resolve[0].event, "resolve");
    // A stale owner cannot mark a message it no longer holds.
    assert!(
        !db.store
            .message_delivered(resolve[0].id, "a", None, t)
            .await
            .expect("delivered")
    );
    other.close().await;
}

async fn a_flip_back_before_the_trigger_was_sent_sends_nothing(db: TestDb) {
    let t = now();
    db.store
        .record_verdict(&verdict("db", false, t), "key-db", |_, _, _| {
            vec![message("jira", "trigger", "key-db", t + Duration::minutes(5))]
        })
        .await
        .expect("record");
    db.store
        .record_verdict(
            &verdict("db", true, t + Duration::minutes(1)),
            "key-db",
            |_, _, open| {
                open.iter()
                    .map(|channel| message(channel, "resolve", "key-db", t))
                    .collect()
            },
        )
        .await
        .expect("record");
    assert_eq!(
        db.store.outbox_depth().await.expect("depth"),
        0,
        "neither the trigger nor the resolve is sent"
    );
    assert!(
        db.store
            .claim_messages("w", t + Duration::hours(1), t + Duration::hours(2), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        db.store.flips(None, Some("db"), 10).await.expect("flips").len(),
        2,
        "both flips are kept"
    );
}
