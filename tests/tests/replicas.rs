//! Several coordinators, one PostgreSQL: real coordinator processes, a real
//! PostgreSQL, simulated agents with the real session loop, and local Jira and PagerDuty servers
//! that validate every request against the vendors' OpenAPI documents and fail 30% of them.
//! Each flip is delivered once; a replica killed mid-run loses no run and no flip; SQLite
//! refuses a second replica.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use lifeboat_agent::identity::Identity;
use lifeboat_agent::reconnect::ReconnectPolicy;
use lifeboat_agent::session::SessionEvent;
use lifeboat_coordinator::store::Store;
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_shared::ids::{ResultId, RunId};
use lifeboat_shared::protocol::{AssetDecl, Inventory, Outcome, ResultKind, RunResult, TestDecl};
use lifeboat_tests::cluster::SimAgent;
use lifeboat_tests::postgres::PgCluster;
use lifeboat_tests::processes::{self, CoordinatorProcess};
use lifeboat_tests::vendors::FaultOptions;
use lifeboat_tests::vendors::jira::{JiraOptions, JiraServer};
use lifeboat_tests::vendors::pagerduty::{PagerDutyOptions, PagerDutyServer};
use lifeboat_tests::vendors::webhook::{WebhookOptions, WebhookSink};

const ENVIRONMENT: &str = "pocketos-prod";

async fn enroll(coordinator: &CoordinatorProcess, name: &str) -> Identity {
    coordinator.enroll_in_memory(ENVIRONMENT, name).await.expect("enroll")
}

fn inventory(assets: &[String], timeout_seconds: u64) -> Inventory {
    Inventory {
        assets: assets
            .iter()
            .map(|name| AssetDecl {
                name: name.clone(),
                kind: "postgres".into(),
                rpo_seconds: 86_400,
                rto_seconds: 1800,
                location: Default::default(),
                test_interval_seconds: 86_400,
            })
            .collect(),
        backups: Vec::new(),
        tests: assets
            .iter()
            .map(|name| TestDecl {
                asset: name.clone(),
                schedule: "0 3 * * *".into(),
                pick: "latest".into(),
                timeout_seconds,
                checks: vec!["rows".into()],
            })
            .collect(),
    }
}

fn result(asset: &str, outcome: Outcome, run_id: Option<RunId>) -> RunResult {
    let mut result = RunResult::for_test(asset, outcome);
    result.result_id = ResultId::new();
    result.kind = ResultKind::Restore;
    result.run_id = run_id;
    result.recovery_point = "rentals.dump".into();
    result.rto_seconds = 30.0;
    if outcome != Outcome::Passed {
        result.findings.push(
            Finding::new(
                FindingKind::BackupStale,
                asset,
                format!("The newest recoverable backup of {asset} is 92 days old."),
            )
            .with_severity(Severity::Critical)
            .with_remediation("Make the backup job run daily, off the production volume."),
        );
    }
    result
}

async fn until(timeout: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

fn delivered(sink: &WebhookSink, event: &str) -> bool {
    sink.deliveries().iter().any(|delivery| delivery.body["event"] == event)
}

async fn flips_of(store: &Store, asset: &str) -> usize {
    store
        .flips(Some(ENVIRONMENT), Some(asset), 100)
        .await
        .map(|flips| flips.len())
        .unwrap_or(0)
}

fn extra_config(channels: &str) -> String {
    format!(
        r#"
[schedule]
jitter = "0s"
lease_grace = "2s"

[alerts]
evaluate_every = "1s"
retry_max_delay = "3s"

{channels}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_open_and_resolve_one_ticket_per_flip_while_the_vendors_fail() {
    let cluster = PgCluster::start().await.expect("postgres");
    cluster.create_database("lifeboat").await.expect("db");
    let url = cluster.url("lifeboat");
    let jira = JiraServer::start(
        JiraOptions::new("lifeboat@pocketos.example", "jira-token", "OPS").with_faults(FaultOptions::all(7, 0.3)),
    )
    .await;
    let pagerduty = PagerDutyServer::start(
        PagerDutyOptions::new("routing-key-0123456789abcdef").with_faults(FaultOptions::all(11, 0.3)),
    )
    .await;
    let channels = format!(
        r#"[[channel]]
name = "ops-jira"
kind = "jira"
url = "{jira}"
email = "lifeboat@pocketos.example"
api_token = "jira-token"
project = "OPS"
timeout = "1s"

[[channel]]
name = "oncall"
kind = "pagerduty"
url = "{pagerduty}"
routing_key = "routing-key-0123456789abcdef"
timeout = "1s"

[[route]]
channels = ["ops-jira", "oncall"]
"#,
        jira = jira.base_url(),
        pagerduty = pagerduty.base_url()
    );
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("a")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("b")).expect("mkdir");
    let a = CoordinatorProcess::start_with(&dir.path().join("a"), Some(&url), &extra_config(&channels))
        .await
        .expect("a");
    let b = CoordinatorProcess::start_with(&dir.path().join("b"), Some(&url), &extra_config(&channels))
        .await
        .expect("b");
    let store = Store::connect(&url).await.expect("store");

    // Ten assets, their agents spread over both replicas.
    let assets: Vec<String> = (0..10).map(|i| format!("db-{i}")).collect();
    let mut agents = Vec::new();
    for (i, chunk) in assets.chunks(5).enumerate() {
        let coordinator = if i == 0 { &a } else { &b };
        let identity = enroll(coordinator, &format!("agent-{i}")).await;
        let mut agent = SimAgent::spawn_with(
            &coordinator.url,
            identity,
            ReconnectPolicy::default(),
            inventory(chunk, 600),
        );
        assert!(agent.connected(Duration::from_secs(20)).await);
        agents.push((agent, chunk.to_vec()));
    }

    // Every asset fails its drill: one flip each, one ticket each.
    for (agent, chunk) in &agents {
        for asset in chunk {
            agent
                .spool
                .put(&result(asset, Outcome::Failed, None))
                .await
                .expect("spool");
        }
    }
    until(Duration::from_secs(60), "ten flips to not recoverable", async || {
        let mut all = true;
        for asset in &assets {
            all &= flips_of(&store, asset).await == 1;
        }
        all
    })
    .await;
    // Every asset passes again: one flip back each, one resolve each.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (agent, chunk) in &agents {
        for asset in chunk {
            agent
                .spool
                .put(&result(asset, Outcome::Passed, None))
                .await
                .expect("spool");
        }
    }
    until(
        Duration::from_secs(120),
        "every ticket resolved in Jira and PagerDuty",
        async || {
            let jira_done = jira
                .issues()
                .iter()
                .filter(|issue| issue.status.category_key() == "done")
                .count();
            let pd_done = pagerduty
                .incidents()
                .values()
                .filter(|incident| !incident.open && incident.resolves > 0)
                .count();
            jira_done == 10 && pd_done == 10
        },
    )
    .await;

    let violations: Vec<String> = jira.violations().into_iter().chain(pagerduty.violations()).collect();
    assert!(
        violations.is_empty(),
        "requests outside the vendors' contracts: {violations:#?}"
    );
    assert!(
        jira.injected_faults().len() + pagerduty.injected_faults().len() >= 10,
        "the vendors did fail: {} + {}",
        jira.injected_faults().len(),
        pagerduty.injected_faults().len()
    );
    let issues = jira.issues();
    assert_eq!(
        issues.len(),
        10,
        "exactly one Jira issue per flip: {:?}",
        issues.iter().map(|i| &i.labels).collect::<Vec<_>>()
    );
    let mut per_label: BTreeMap<String, usize> = BTreeMap::new();
    for issue in &issues {
        for label in issue.labels.iter().filter(|label| label.starts_with("lifeboat-")) {
            *per_label.entry(label.clone()).or_default() += 1;
        }
    }
    assert!(per_label.values().all(|count| *count == 1), "{per_label:?}");
    let incidents = pagerduty.incidents();
    assert_eq!(incidents.len(), 10);
    assert!(
        incidents.values().all(|incident| incident.opened == 1),
        "{incidents:#?}"
    );
    for asset in &assets {
        assert_eq!(flips_of(&store, asset).await, 2, "{asset}: one flip each way");
    }
    for (agent, _) in agents {
        agent.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_run_loses_no_run_and_no_flip() {
    let cluster = PgCluster::start().await.expect("postgres");
    cluster.create_database("lifeboat").await.expect("db");
    let url = cluster.url("lifeboat");
    let sink = WebhookSink::start(WebhookOptions::new(b"hook-secret")).await;
    let channels = format!(
        r#"[[channel]]
name = "hook"
kind = "webhook"
url = "{}/lifeboat"
secret = "hook-secret"
timeout = "2s"

[[route]]
channels = ["hook"]
"#,
        sink.base_url()
    );
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("a")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("b")).expect("mkdir");
    let mut a = CoordinatorProcess::start_with(&dir.path().join("a"), Some(&url), &extra_config(&channels))
        .await
        .expect("a");
    let b = CoordinatorProcess::start_with(&dir.path().join("b"), Some(&url), &extra_config(&channels))
        .await
        .expect("b");
    let store = Store::connect(&url).await.expect("store");
    let asset = vec!["rentals-db".to_owned()];

    // Agent X on replica A gets the run.
    let x = enroll(&a, "agent-x").await;
    let mut agent_x = SimAgent::spawn_with(&a.url, x, ReconnectPolicy::default(), inventory(&asset, 3));
    assert!(agent_x.connected(Duration::from_secs(20)).await);
    let config = a.config_path.display().to_string();
    until(
        Duration::from_secs(20),
        "the test to be scheduled from the inventory",
        async || store.tests().await.map(|tests| !tests.is_empty()).unwrap_or(false),
    )
    .await;
    let (code, _, stderr) = processes::run("lifeboat-coordinator", &["run-now", "rentals-db", "--config", &config])
        .await
        .expect("run-now");
    assert_eq!(code, 0, "{stderr}");
    let leased = agent_x
        .wait_for(Duration::from_secs(20), |event| match event {
            SessionEvent::Assignment(assignment) => Some(assignment.run_id.clone()),
            _ => None,
        })
        .await
        .expect("an assignment for agent X");
    let run_id = RunId::parse(&leased).expect("run id");

    // Mid-run, replica A is killed, and agent X with it (its host is gone).
    a.kill().await;
    agent_x.stop();
    drop(agent_x);

    // Agent Y on replica B: the lease expires (timeout 3 s + grace 2 s) and B re-leases the run.
    let y = enroll(&b, "agent-y").await;
    let mut agent_y = SimAgent::spawn_with(&b.url, y, ReconnectPolicy::default(), inventory(&asset, 3));
    let again = agent_y
        .wait_for(Duration::from_secs(40), |event| match event {
            SessionEvent::Assignment(assignment) => Some(assignment.run_id.clone()),
            _ => None,
        })
        .await
        .expect("the run re-leased to agent Y");
    assert_eq!(again, leased, "the same run, re-leased");
    agent_y
        .spool
        .put(&result("rentals-db", Outcome::Failed, Some(run_id)))
        .await
        .expect("spool");
    until(Duration::from_secs(30), "the flip and its ticket", async || {
        delivered(&sink, "trigger")
    })
    .await;
    // The agent resends after a reconnect: still one result, one run, one flip.
    agent_y
        .spool
        .put(&result("rentals-db", Outcome::Passed, None))
        .await
        .expect("spool");
    until(Duration::from_secs(30), "the flip back and its resolve", async || {
        delivered(&sink, "resolve")
    })
    .await;

    let run = store.run(run_id).await.expect("run").expect("exists");
    assert_eq!(run.state, "done", "{run:?}");
    assert_eq!(run.attempts, 2, "leased to X, then to Y: {run:?}");
    let results = store.results_for_asset("rentals-db", 100).await.expect("results");
    let for_run = results
        .iter()
        .filter(|stored| stored.result.run_id == Some(run_id))
        .count();
    assert_eq!(for_run, 1, "the run's result is stored once");
    assert_eq!(flips_of(&store, "rentals-db").await, 2);
    let events: Vec<String> = sink
        .deliveries()
        .iter()
        .map(|delivery| delivery.body["event"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(events, ["trigger", "resolve"], "one message per flip");
    agent_y.stop();
    let _ = Utc::now();
}

#[tokio::test]
async fn sqlite_refuses_a_second_replica_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("dir");
    let first = CoordinatorProcess::start(dir.path(), None)
        .await
        .expect("first replica");
    // The same store, another port.
    let text = std::fs::read_to_string(&first.config_path).expect("config");
    let port = processes::free_port();
    let second = dir.path().join("second.toml");
    std::fs::write(
        &second,
        text.replace(&format!("127.0.0.1:{}", first.port), &format!("127.0.0.1:{port}")),
    )
    .expect("write");
    let path = second.display().to_string();
    let (code, _, stderr) = tokio::time::timeout(
        Duration::from_secs(30),
        processes::run("lifeboat-coordinator", &["serve", "--config", &path]),
    )
    .await
    .expect("the second replica exits at once")
    .expect("run");
    assert_ne!(code, 0);
    assert!(stderr.contains("another coordinator is already serving"), "{stderr}");
    assert!(stderr.contains("PostgreSQL"), "says what to do instead: {stderr}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "nothing bound"
    );
    let _ = Path::new("");
}
