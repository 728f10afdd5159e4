//! A bad or hostile agent harms only itself: a real in-process coordinator with real mTLS
//! sessions, and the scheduler driven with its own clock on both engines.
//!
//! - Numbers no test needs (a timeout of 2^62 s or 10^13 s) are refused with the inventory; the
//!   other environments are still scheduled and `runs` still parse. Before the fix, every tick
//!   failed and a lease row was written that nothing could read back.
//! - A result with a finding message over 16 KiB is rejected on its own: the session stays up,
//!   the agent moves the result to its dead-letter folder and goes on. Before the fix, the
//!   session ended and the agent resent the result on every reconnect, offline for good.
//! - A result naming another environment's run, or a run leased to another agent, is rejected
//!   and does not complete that run. Before the fix, it marked the run done.
//! - A stored test from an older coordinator with an absurd timeout fails alone: the scheduler
//!   still materialises and leases everyone else's runs.
//! - Results beyond an agent's quota are refused for a while, kept by the agent and stored
//!   later: paced, not lost.
//! - An agent that predates the rejection messages reads them as nothing and keeps working.

use std::time::Duration;

use chrono::Utc;
use lifeboat_agent::reconnect::ReconnectPolicy;
use lifeboat_agent::session::SessionEvent;
use lifeboat_coordinator::config::ScheduleConfig;
use lifeboat_coordinator::reports;
use lifeboat_coordinator::scheduler::Scheduler;
use lifeboat_coordinator::sessions::SessionRegistry;
use lifeboat_coordinator::store::{NewJoinToken, Store, TokenClaim};
use lifeboat_proto::v1 as pb;
use lifeboat_shared::durations::HumanDuration;
use lifeboat_shared::findings::{Finding, FindingKind};
use lifeboat_shared::ids::{AgentId, Environment, ResultId, RunId};
use lifeboat_shared::protocol::{AssetDecl, Inventory, Location, Outcome, RunResult, TestDecl};
use lifeboat_tests::both_engines;
use lifeboat_tests::cluster::{CoordinatorOptions, SimAgent, TestCoordinator};
use lifeboat_tests::store_db::TestDb;

const WAIT: Duration = Duration::from_secs(30);

fn inventory(asset: &str, timeout_seconds: u64) -> Inventory {
    Inventory {
        assets: vec![AssetDecl {
            name: asset.to_owned(),
            kind: "postgres".into(),
            rpo_seconds: 86_400,
            rto_seconds: 1_800,
            location: Location::default(),
            test_interval_seconds: 0,
        }],
        backups: Vec::new(),
        tests: vec![TestDecl {
            asset: asset.to_owned(),
            schedule: "0 3 * * *".into(),
            pick: "latest".into(),
            timeout_seconds,
            checks: Vec::new(),
        }],
    }
}

async fn coordinator() -> TestCoordinator {
    TestCoordinator::start_with(CoordinatorOptions {
        extra_config: "[schedule]\njitter = \"0s\"\n".into(),
        ..CoordinatorOptions::default()
    })
    .await
}

async fn agent_with(coordinator: &TestCoordinator, environment: &str, name: &str, inventory: Inventory) -> SimAgent {
    let identity = coordinator.enroll(environment, name).await;
    let mut agent = SimAgent::spawn_with(&coordinator.url, identity, ReconnectPolicy::default(), inventory);
    assert!(agent.connected(WAIT).await, "{name} did not connect");
    agent
}

/// Waits until the scheduler knows the test of `environment`/`asset` (it syncs every 3 s).
async fn test_known(coordinator: &TestCoordinator, environment: &str, asset: &str) -> bool {
    lifeboat_tests::eventually(WAIT, || async {
        coordinator
            .store
            .tests()
            .await
            .expect("tests")
            .iter()
            .any(|test| test.environment == environment && test.asset == asset)
    })
    .await
}

/// The next assignment an agent receives.
async fn assignment(agent: &mut SimAgent) -> Option<RunId> {
    agent
        .wait_for(WAIT, |event| match event {
            SessionEvent::Assignment(assignment) => RunId::parse(&assignment.run_id).ok(),
            _ => None,
        })
        .await
}

/// Waits for the coordinator's answer about `result_id`: `Ok(())` acknowledged, `Err(reason)`
/// rejected for good. Fails the test on a disconnection meanwhile.
async fn answer(agent: &mut SimAgent, result_id: ResultId) -> Result<(), String> {
    agent
        .wait_for(WAIT, |event| match event {
            SessionEvent::ResultAcknowledged(acked) if *acked == result_id => Some(Ok(())),
            SessionEvent::ResultRejected {
                result_id: rejected,
                reason,
                permanent: true,
            } if *rejected == result_id => Some(Err(reason.clone())),
            SessionEvent::Disconnected { reason } => panic!("the session ended: {reason}"),
            _ => None,
        })
        .await
        .expect("an answer about the result")
}

fn result_for(asset: &str, run_id: Option<RunId>) -> RunResult {
    let mut result = RunResult::for_test(asset, Outcome::Passed);
    result.run_id = run_id;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_numbers_are_refused_and_everyone_else_is_still_scheduled() {
    let coordinator = coordinator().await;
    let mut hostile = agent_with(
        &coordinator,
        "hostile",
        "huge-timeout",
        inventory("a", 10_000_000_000_000),
    )
    .await;
    let mut overflowing = agent_with(&coordinator, "hostile2", "overflow", inventory("b", 1 << 62)).await;
    for agent in [&mut hostile, &mut overflowing] {
        let reason = agent
            .wait_for(WAIT, |event| match event {
                SessionEvent::InventoryRejected(reason) => Some(reason.clone()),
                SessionEvent::Disconnected { reason } => panic!("the session ended: {reason}"),
                _ => None,
            })
            .await
            .expect("the inventory is refused, the session kept");
        assert!(reason.contains("test.timeout_seconds"), "{reason}");
    }
    let mut good = agent_with(&coordinator, "good", "good", inventory("db", 600)).await;
    assert!(test_known(&coordinator, "good", "db").await);
    for (environment, asset) in [("hostile", "a"), ("hostile2", "b")] {
        // Nothing of theirs is scheduled, so nothing of theirs can be run.
        assert!(
            reports::run_now(
                &coordinator.store,
                &coordinator.config,
                asset,
                Some(environment),
                Utc::now()
            )
            .await
            .is_err()
        );
    }
    reports::run_now(&coordinator.store, &coordinator.config, "db", Some("good"), Utc::now())
        .await
        .expect("run now");
    let run_id = assignment(&mut good).await.expect("the good environment is scheduled");
    let runs = coordinator.store.runs(None, 100).await.expect("runs parse");
    assert!(runs.iter().any(|run| run.run_id == run_id && run.state == "leased"));
    assert!(runs.iter().all(|run| run.timeout_seconds <= 7 * 86_400), "{runs:?}");
    coordinator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_finding_is_dead_lettered_and_the_agent_goes_on() {
    let coordinator = coordinator().await;
    let mut agent = agent_with(&coordinator, "prod", "long-errors", Inventory::default()).await;

    let mut oversized = result_for("rentals-db", None);
    oversized.outcome = Outcome::Failed;
    let long_error = format!("pg_restore: error: {}", "could not execute query; ".repeat(1_000));
    oversized
        .findings
        .push(Finding::new(FindingKind::BackupUnrecoverable, "rentals-db", long_error));
    let next = result_for("rentals-db", None);
    agent.spool.put(&oversized).await.expect("spool");
    agent.spool.put(&next).await.expect("spool");

    let reason = answer(&mut agent, oversized.result_id)
        .await
        .expect_err("the oversized result is rejected");
    assert!(reason.contains("finding.message"), "{reason}");
    answer(&mut agent, next.result_id)
        .await
        .expect("the next result is stored");

    // The rejected result waits in the dead-letter folder with its reason, out of the spool.
    let dead = agent.spool.dir().join("dead");
    let kept: RunResult = serde_json::from_slice(
        &std::fs::read(dead.join(format!("{}.json", oversized.result_id))).expect("dead letter"),
    )
    .expect("a result");
    assert_eq!(kept.result_id, oversized.result_id);
    let why = std::fs::read_to_string(dead.join(format!("{}.reason", oversized.result_id))).expect("reason");
    assert!(why.contains("finding.message"), "{why}");
    assert!(agent.spool.is_empty());

    // The session never ended and the agent keeps working.
    let later = result_for("rentals-db", None);
    agent.spool.put(&later).await.expect("spool");
    answer(&mut agent, later.result_id).await.expect("stored");
    let stored = coordinator.store.result_ids().await.expect("ids");
    assert!(stored.contains(&next.result_id) && stored.contains(&later.result_id));
    assert!(!stored.contains(&oversized.result_id));
    coordinator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_for_runs_an_agent_does_not_hold_are_rejected_and_complete_nothing() {
    let coordinator = coordinator().await;
    let mut holder = agent_with(&coordinator, "prod", "holder", inventory("db", 600)).await;
    let mut neighbour = agent_with(&coordinator, "prod", "neighbour", Inventory::default()).await;
    let mut stranger = agent_with(&coordinator, "other", "stranger", Inventory::default()).await;
    assert!(test_known(&coordinator, "prod", "db").await);
    reports::run_now(&coordinator.store, &coordinator.config, "db", Some("prod"), Utc::now())
        .await
        .expect("run now");
    let run_id = assignment(&mut holder).await.expect("leased to the holder");

    for (agent, expected) in [
        (&mut stranger, "does not belong to environment other"),
        (&mut neighbour, "leased to another agent"),
    ] {
        let stolen = result_for("db", Some(run_id));
        agent.spool.put(&stolen).await.expect("spool");
        let reason = answer(agent, stolen.result_id).await.expect_err("rejected");
        assert!(reason.contains(expected), "{reason}");
        assert!(
            agent
                .spool
                .dir()
                .join("dead")
                .join(format!("{}.json", stolen.result_id))
                .exists()
        );
    }
    let run = coordinator.store.run(run_id).await.expect("run").expect("exists");
    assert_eq!(run.state, "leased", "{run:?}");

    // The holder's own result completes it.
    let own = result_for("db", Some(run_id));
    holder.spool.put(&own).await.expect("spool");
    answer(&mut holder, own.result_id).await.expect("accepted");
    let done = lifeboat_tests::eventually(WAIT, || async {
        coordinator.store.run(run_id).await.expect("run").expect("exists").state == "done"
    })
    .await;
    assert!(done, "the holder's result did not complete the run");
    coordinator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_beyond_the_quota_wait_in_the_spool_and_arrive_later() {
    let coordinator = TestCoordinator::start_with(CoordinatorOptions {
        extra_config: "[limits]\nresults_per_minute = 6\n".into(),
        ..CoordinatorOptions::default()
    })
    .await;
    let mut agent = agent_with(&coordinator, "prod", "chatty", Inventory::default()).await;
    let results: Vec<RunResult> = (0..8).map(|_| result_for("db", None)).collect();
    for result in &results {
        agent.spool.put(result).await.expect("spool");
    }
    let mut refused = std::collections::BTreeSet::new();
    let mut acknowledged = std::collections::BTreeSet::new();
    while acknowledged.len() < results.len() {
        let event = agent
            .wait_for(Duration::from_secs(90), |event| match event {
                SessionEvent::ResultAcknowledged(id) => Some(Ok(*id)),
                SessionEvent::ResultRejected {
                    result_id, permanent, ..
                } => Some(Err((*result_id, *permanent))),
                SessionEvent::Disconnected { reason } => panic!("the session ended: {reason}"),
                _ => None,
            })
            .await
            .expect("every result is answered");
        match event {
            Ok(id) => {
                acknowledged.insert(id);
            }
            Err((id, permanent)) => {
                assert!(!permanent, "a quota refusal is not for good");
                refused.insert(id);
            }
        }
    }
    assert!(refused.len() >= 2, "8 results against a quota of 6: {refused:?}");
    assert!(refused.is_subset(&acknowledged), "every refused result arrived later");
    assert!(agent.spool.is_empty());
    assert!(!agent.spool.dir().join("dead").exists(), "nothing was dead-lettered");
    let stored = coordinator.store.result_ids().await.expect("ids");
    assert!(results.iter().all(|result| stored.contains(&result.result_id)));
    coordinator.stop().await;
}

/// Enrolls an agent straight in the store.
async fn enrolled(store: &Store, environment: &str) -> AgentId {
    let hash = format!("token-{}", uuid::Uuid::new_v4());
    let now = Utc::now();
    store
        .insert_join_token(&NewJoinToken {
            token_hash: hash.clone(),
            environment: Environment::parse(environment).expect("environment"),
            expires_at: now + chrono::Duration::hours(1),
            uses_allowed: 1,
            created_at: now,
        })
        .await
        .expect("token");
    store
        .claim_join_token(&TokenClaim {
            token_hash: hash,
            key_fingerprint: format!("key-{environment}"),
            agent_name: environment.to_owned(),
            now,
        })
        .await
        .expect("claim")
        .agent_id
}

/// An inventory as an older coordinator stored it, without the protocol's bounds.
fn unchecked_inventory(asset: &str, timeout_seconds: u64) -> serde_json::Value {
    let mut inventory = inventory(asset, timeout_seconds);
    inventory.tests[0].schedule = "* * * * *".into();
    serde_json::to_value(inventory).expect("json")
}

/// Writes a test row the way an older coordinator could: a timeout of 10^13 s.
async fn write_old_test_row(db: &TestDb, environment: &str, asset: &str, now: chrono::DateTime<Utc>) {
    let sql = format!(
        "INSERT INTO tests (environment, asset, schedule, timeout_seconds, interval_seconds, rpo_seconds, \
         rto_seconds, updated_at) VALUES ('{environment}', '{asset}', '* * * * *', 10000000000000, 86400, 86400, \
         1800, {})",
        now.timestamp_millis()
    );
    let sql = sqlx::AssertSqlSafe(sql);
    if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.expect("connect");
        sqlx::query(sql).execute(&pool).await.expect("insert");
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
        sqlx::query(sql).execute(&pool).await.expect("insert");
        pool.close().await;
    }
}

async fn one_agents_bad_test_does_not_stop_the_scheduler(db: TestDb) {
    let t0 = Utc::now();
    write_old_test_row(&db, "old", "legacy", t0).await;
    let hostile = enrolled(&db.store, "hostile").await;
    let good = enrolled(&db.store, "good").await;
    for (agent, asset, timeout) in [(hostile, "a", 10_000_000_000_000), (good, "db", 600)] {
        db.store
            .save_inventory(agent, &unchecked_inventory(asset, timeout), t0)
            .await
            .expect("inventory");
    }
    let sessions = SessionRegistry::new("replica".into());
    let (hostile_tx, _hostile_rx) = tokio::sync::mpsc::channel(16);
    let (good_tx, mut good_rx) = tokio::sync::mpsc::channel(16);
    let _hostile_session = sessions.register(hostile, hostile_tx, t0 + chrono::Duration::hours(1));
    let _good_session = sessions.register(good, good_tx, t0 + chrono::Duration::hours(1));
    let config = ScheduleConfig {
        jitter: HumanDuration::from_secs(0),
        start_deadline: HumanDuration::from_secs(3_600),
        max_attempts: 3,
        lease_grace: HumanDuration::from_secs(60),
    };
    let mut scheduler = Scheduler::new(db.store.clone(), sessions, config);

    scheduler.tick(t0).await.expect("first tick");
    let due = t0 + chrono::Duration::minutes(2);
    let report = scheduler.tick(due).await.expect("a bad test does not fail the tick");
    assert_eq!(report.failed, 1, "the old row fails alone: {report:?}");
    assert_eq!(report.materialised, 1, "{report:?}");
    assert_eq!(report.leased.len(), 1, "{report:?}");
    assert_eq!(report.leased[0].environment, "good");
    let sent = good_rx
        .try_recv()
        .expect("the good agent got its assignment")
        .expect("a message");
    assert!(matches!(sent.body, Some(pb::coordinator_message::Body::Assignment(_))));
    // The hostile agent's absurd test never reached the tests table, the old one made no run,
    // and every run reads back.
    let tests = db.store.tests().await.expect("tests");
    assert!(tests.iter().all(|test| test.environment != "hostile"), "{tests:?}");
    let runs = db.store.runs(None, 100).await.expect("runs parse");
    assert!(runs.iter().all(|run| run.environment == "good"), "{runs:?}");
}

both_engines! {
    one_agents_bad_test_does_not_stop_the_scheduler,
}

/// The coordinator's messages as an agent built before `ResultRejected` and
/// `InventoryRejected` knows them (tags 1 to 5).
#[derive(Clone, PartialEq, prost::Message)]
struct OldCoordinatorMessage {
    #[prost(oneof = "OldBody", tags = "1, 4")]
    body: Option<OldBody>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum OldBody {
    #[prost(message, tag = "1")]
    Welcome(pb::Welcome),
    #[prost(message, tag = "4")]
    ResultAck(pb::ResultAck),
}

/// An older agent reads a rejection as an empty message, which it ignores: it keeps its
/// session and sends the result again later, as it always did.
#[test]
fn an_agent_that_predates_rejections_reads_them_as_nothing() {
    use prost::Message as _;
    let rejection = pb::CoordinatorMessage {
        body: Some(pb::coordinator_message::Body::ResultRejected(pb::ResultRejected {
            result_id: ResultId::new().to_string(),
            reason: "invalid field finding.message: longer than 16384 bytes".into(),
            permanent: true,
            retry_after_seconds: 0,
        })),
    };
    let old = OldCoordinatorMessage::decode(rejection.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(old.body, None);
    let inventory = pb::CoordinatorMessage {
        body: Some(pb::coordinator_message::Body::InventoryRejected(
            pb::InventoryRejected {
                reason: "too many tests".into(),
            },
        )),
    };
    let old = OldCoordinatorMessage::decode(inventory.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(old.body, None);
    let ack = pb::CoordinatorMessage {
        body: Some(pb::coordinator_message::Body::ResultAck(pb::ResultAck {
            result_id: "x".into(),
        })),
    };
    let old = OldCoordinatorMessage::decode(ack.encode_to_vec().as_slice()).expect("decodes");
    assert!(matches!(old.body, Some(OldBody::ResultAck(_))));
}
