//! Crash tests with real processes: SIGKILL the coordinator or the agent while results are in
//! flight; every result must end up in the store exactly once. And a coordinator restart under
//! 200 connected agents: all come back, spread out by jitter.

use std::collections::BTreeSet;
use std::time::Duration;

use lifeboat_agent::session::SessionEvent;
use lifeboat_agent::spool::Spool;
use lifeboat_coordinator::store::Store;
use lifeboat_shared::ids::ResultId;
use lifeboat_shared::protocol::{Outcome, RunResult};
use lifeboat_tests::cluster::SimAgent;
use lifeboat_tests::eventually;
use lifeboat_tests::processes::{AgentProcess, CoordinatorProcess};

const RESULTS: usize = 3_000;
/// The backlog tests drain a whole spool at once: they lift the per-agent quota (600 results a
/// minute by default), which would otherwise pace the drain over minutes.
const UNTHROTTLED: &str = "[limits]\nresults_per_minute = 100000\n";

/// A temporary directory, kept for inspection when `LIFEBOAT_KEEP_TEST_DIR` is set.
fn test_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().expect("dir");
    if std::env::var_os("LIFEBOAT_KEEP_TEST_DIR").is_some() {
        eprintln!("keeping {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    dir
}

/// Writes `RESULTS` results into the agent's spool before it starts; returns their ids.
async fn fill_spool(agent: &AgentProcess) -> BTreeSet<ResultId> {
    let spool = Spool::open(&agent.work_dir.join("spool")).expect("spool");
    let mut ids = BTreeSet::new();
    for n in 0..RESULTS {
        let mut result = RunResult::for_test(&format!("asset-{}", n % 7), Outcome::Passed);
        result.restore_seconds = n as f64;
        ids.insert(result.result_id);
        spool.put(&result).await.expect("put");
    }
    ids
}

async fn stored_ids(coordinator: &CoordinatorProcess) -> Vec<ResultId> {
    let store = Store::connect(&coordinator.sqlite_url()).await.expect("store");
    let ids = store.result_ids().await.expect("ids");
    store.close().await;
    ids
}

async fn wait_until_spool_empty(agent: &AgentProcess) {
    let drained = eventually(Duration::from_secs(90), || async { agent.spooled() == 0 }).await;
    assert!(
        drained,
        "spool never drained ({} left):\n{}",
        agent.spooled(),
        agent.log_text()
    );
}

fn assert_exactly_once(expected: &BTreeSet<ResultId>, stored: &[ResultId]) {
    let unique: BTreeSet<ResultId> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "a result was stored twice");
    assert_eq!(&unique, expected, "stored results differ from those produced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_sigkill_with_unacknowledged_results_loses_and_doubles_nothing() {
    let dir = test_dir();
    let mut coordinator = CoordinatorProcess::start_with(dir.path(), None, UNTHROTTLED)
        .await
        .expect("coordinator");
    let mut agent = AgentProcess::enroll(&dir.path().join("agent"), &coordinator, "crash-prod")
        .await
        .expect("enroll");
    let expected = fill_spool(&agent).await;
    agent.start().expect("agent");

    // Kill the coordinator once some, but not all, results were acknowledged.
    let partly = eventually(Duration::from_secs(60), || async {
        let left = agent.spooled();
        left < RESULTS - 200 && left > 0
    })
    .await;
    assert!(partly, "acks never started:\n{}", agent.log_text());
    coordinator.kill().await;
    let left_at_kill = agent.spooled();
    assert!(
        left_at_kill > 0,
        "everything was acknowledged before the kill; the test proves nothing"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    coordinator.restart().await.expect("restart");
    wait_until_spool_empty(&agent).await;
    agent.kill().await;
    coordinator.kill().await;
    assert_exactly_once(&expected, &stored_ids(&coordinator).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sigkill_between_write_and_ack_loses_and_doubles_nothing() {
    let dir = test_dir();
    let mut coordinator = CoordinatorProcess::start_with(dir.path(), None, UNTHROTTLED)
        .await
        .expect("coordinator");
    let mut agent = AgentProcess::enroll(&dir.path().join("agent"), &coordinator, "crash-prod")
        .await
        .expect("enroll");
    let started = std::time::Instant::now();
    let expected = fill_spool(&agent).await;
    eprintln!("filled spool in {:?}", started.elapsed());
    agent.start().expect("agent");

    let partly = eventually(Duration::from_secs(60), || async {
        let left = agent.spooled();
        left < RESULTS - 200 && left > 0
    })
    .await;
    assert!(partly, "acks never started:\n{}", agent.log_text());
    agent.kill().await;
    let left_at_kill = agent.spooled();
    assert!(
        left_at_kill > 0,
        "everything was acknowledged before the kill; the test proves nothing"
    );
    // Some of the remaining results were committed by the coordinator but not yet deleted from
    // the spool when the agent died: they will be sent again and must not be stored twice.
    let committed_before_restart = stored_ids(&coordinator).await.len();
    assert!(
        committed_before_restart + left_at_kill >= RESULTS,
        "results vanished: {committed_before_restart} stored + {left_at_kill} spooled < {RESULTS}"
    );

    eprintln!("killed agent at {:?} with {left_at_kill} spooled", started.elapsed());
    agent.start().expect("agent restart");
    wait_until_spool_empty(&agent).await;
    eprintln!("drained at {:?}", started.elapsed());
    agent.kill().await;
    coordinator.kill().await;
    assert_exactly_once(&expected, &stored_ids(&coordinator).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_restart_under_200_agents_all_reconnect_spread_by_jitter() {
    let dir = test_dir();
    let mut coordinator = CoordinatorProcess::start(dir.path(), None).await.expect("coordinator");
    let (token, pin) = coordinator.token("fleet", 200).await.expect("token");
    let pin = lifeboat_shared::tls::CaPin::parse(&pin).expect("pin");

    let mut agents = Vec::new();
    for n in 0..200 {
        let request = lifeboat_agent::enroll::EnrollRequest {
            coordinator: coordinator.url.clone(),
            token: token.clone(),
            ca_pin: pin,
            name: format!("sim-{n}"),
            environment: None,
        };
        let identity = lifeboat_agent::enroll::enroll_in_memory(&request)
            .await
            .expect("enroll");
        agents.push(SimAgent::spawn(&coordinator.url, identity));
    }
    for agent in &mut agents {
        assert!(agent.connected(Duration::from_secs(30)).await, "initial connect");
    }

    // A graceful restart: SIGTERM must stop it cleanly (exit 0) with 200 live sessions.
    let status = coordinator.terminate().await.expect("exited");
    assert!(status.success(), "coordinator exit status after SIGTERM: {status}");
    let restarted_at = tokio::time::Instant::now();
    coordinator.restart().await.expect("restart");

    let mut reconnect_offsets = Vec::new();
    for agent in &mut agents {
        let connected = agent
            .wait_for_stamped(Duration::from_secs(60), |at, event| {
                matches!(event, SessionEvent::Connected { .. }).then_some(at)
            })
            .await
            .expect("every agent reconnects within 60 s");
        reconnect_offsets.push(connected.duration_since(restarted_at));
    }
    reconnect_offsets.sort();
    let first = reconnect_offsets[0];
    let last = reconnect_offsets[reconnect_offsets.len() - 1];
    // Full jitter: reconnects are spread over the backoff window, not a single instant.
    assert!(
        last - first >= Duration::from_millis(300),
        "reconnects were not spread: {first:?}..{last:?}"
    );
    let busiest_100ms = reconnect_offsets
        .iter()
        .map(|start| {
            reconnect_offsets
                .iter()
                .filter(|other| **other >= *start && **other < *start + Duration::from_millis(100))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        busiest_100ms < 120,
        "{busiest_100ms} of 200 agents reconnected within one 100 ms window"
    );
    eprintln!(
        "200 agents reconnected between {first:?} and {last:?} after restart; busiest 100 ms window: {busiest_100ms}"
    );

    let listed = coordinator.admin_json(&["agents", "list"]).await.expect("agents list");
    let connected = listed
        .as_array()
        .expect("array")
        .iter()
        .filter(|agent| agent["connected"] == serde_json::Value::Bool(true))
        .count();
    assert!(connected >= 190, "agents list shows {connected} connected");
    drop(agents);
    coordinator.kill().await;
}
