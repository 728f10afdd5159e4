//! A world for the guard's tests and benchmark: agents enrolled in a store, their inventories
//! (assets on volumes, backups on the same volume and elsewhere), restore tests, posture scans
//! and verdicts, written through the store's own API; the test venv's Python (the MCP SDK and
//! graphql-core) and the local Railway upstream that checks requests against Railway's schema.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use lifeboat_coordinator::store::{NewJoinToken, ResultRow, Store, TokenClaim, VerdictRecord};
use lifeboat_shared::findings::{Finding, FindingKind};
use lifeboat_shared::ids::{AgentId, Environment, ResultId};
use lifeboat_shared::protocol::{AssetDecl, BackupDecl, Inventory, Location, Outcome, ResultKind, RunResult};
use serde_json::json;

use crate::processes::ChildProcess;

/// The incident's environment, asset and volume.
pub const ENV: &str = "pocketos-prod";
pub const ASSET: &str = "rentals-db";
pub const VOLUME: &str = "vol-7f3a";

/// The incident: fresh dumps only on the volume, the offsite dump 92 days old, one token that
/// can destroy both.
pub async fn seed_incident(store: &Store) -> AgentId {
    let agent = enroll(store, ENV, "pocketos-prod-1").await;
    let mut inventory = Inventory::default();
    declare(&mut inventory, ASSET, VOLUME);
    declare(&mut inventory, "analytics-db", "vol-9c1d");
    store
        .save_inventory(agent, &serde_json::to_value(&inventory).expect("json"), Utc::now())
        .await
        .expect("inventory");
    let now = Utc::now();
    let stale = Finding::new(
        FindingKind::BackupStale,
        ASSET,
        "The newest recoverable backup of rentals-db outside its blast radius is 92 days old; its RPO is 24 h.",
    );
    let shared = Finding::new(
        FindingKind::BlastRadiusShared,
        ASSET,
        "One credential can destroy rentals-db and every backup of it newer than 92 days: Railway account token.",
    );
    store_results(
        store,
        agent,
        ENV,
        vec![
            restore(
                ASSET,
                "rentals-db-volume",
                Outcome::Passed,
                now - Duration::hours(3),
                Duration::hours(1),
            ),
            restore(
                ASSET,
                "rentals-db-offsite",
                Outcome::Failed,
                now - Duration::hours(1),
                Duration::days(92),
            ),
            posture(ASSET, VOLUME, vec![shared.clone()], now - Duration::minutes(5)),
        ],
    )
    .await;
    set_verdict(store, ENV, ASSET, false, vec![stale, shared]).await;
    agent
}

/// The fixes: a fresh dump offsite, restored and checked; the token gone.
pub async fn apply_fixes(store: &Store, agent: AgentId) {
    let now = Utc::now();
    store_results(
        store,
        agent,
        ENV,
        vec![
            restore(
                ASSET,
                "rentals-db-offsite",
                Outcome::Passed,
                now - Duration::minutes(2),
                Duration::hours(1),
            ),
            posture(ASSET, VOLUME, Vec::new(), now - Duration::minutes(1)),
        ],
    )
    .await;
    set_verdict(store, ENV, ASSET, true, Vec::new()).await;
}

/// Enrolls an agent of `environment` called `name` (through a single-use join token).
pub async fn enroll(store: &Store, environment: &str, name: &str) -> AgentId {
    let hash = format!("guard-{name}-{}", uuid::Uuid::new_v4());
    let now = Utc::now();
    store
        .insert_join_token(&NewJoinToken {
            token_hash: hash.clone(),
            environment: Environment::parse(environment).expect("environment"),
            expires_at: now + Duration::hours(1),
            uses_allowed: 1,
            created_at: now,
        })
        .await
        .expect("insert token");
    store
        .claim_join_token(&TokenClaim {
            token_hash: hash,
            key_fingerprint: format!("key-{name}-{}", uuid::Uuid::new_v4()),
            agent_name: name.to_owned(),
            now,
        })
        .await
        .expect("claim")
        .agent_id
}

/// An asset on `volume` (Railway) with a backup source on the same volume (`<asset>-volume`)
/// and one on another provider (`<asset>-offsite`).
pub fn declare(inventory: &mut Inventory, asset: &str, volume: &str) {
    let railway = |volume: Option<&str>| Location {
        provider: Some("railway".into()),
        account: Some("pocketos".into()),
        volume: volume.map(str::to_owned),
        ..Location::default()
    };
    inventory.assets.push(AssetDecl {
        name: asset.to_owned(),
        kind: "postgres".into(),
        rpo_seconds: 86_400,
        rto_seconds: 1800,
        location: railway(Some(volume)),
        test_interval_seconds: 0,
    });
    inventory.backups.push(BackupDecl {
        name: format!("{asset}-volume"),
        asset: asset.to_owned(),
        kind: "pg_dump_dir".into(),
        location: railway(Some(volume)),
    });
    inventory.backups.push(BackupDecl {
        name: format!("{asset}-offsite"),
        asset: asset.to_owned(),
        kind: "pg_dump_dir".into(),
        location: Location {
            provider: Some("hetzner".into()),
            account: Some("pocketos-backups".into()),
            host: Some("backup-nas".into()),
            ..Location::default()
        },
    });
}

/// A restore result of `asset` from `backup`, finished at `finished_at`, of a point that was
/// `age` old then.
pub fn restore(asset: &str, backup: &str, outcome: Outcome, finished_at: DateTime<Utc>, age: Duration) -> RunResult {
    RunResult {
        result_id: ResultId::new(),
        kind: ResultKind::Restore,
        run_id: None,
        asset: asset.to_owned(),
        backup: backup.to_owned(),
        recovery_point: format!("{backup}/{}.dump", (finished_at - age).format("%Y-%m-%d")),
        outcome,
        started_at: finished_at - Duration::seconds(60),
        finished_at,
        restore_seconds: 40.0,
        rto_seconds: 55.0,
        recovery_point_age_seconds: age.num_seconds(),
        findings: Vec::new(),
        detail: serde_json::Value::Null,
    }
}

/// A posture result of `asset` whose detail says the `<asset>-volume` source shares its volume.
pub fn posture(asset: &str, volume: &str, findings: Vec<Finding>, at: DateTime<Utc>) -> RunResult {
    let mut result = restore(asset, "", Outcome::Passed, at, Duration::zero());
    result.kind = ResultKind::Posture;
    result.recovery_point = String::new();
    result.findings = findings;
    result.detail = json!({"posture": {
    "place": {"effective": {"provider": "railway", "account": "pocketos", "volume": volume}},
    "sources": [
        {"backup": format!("{asset}-volume"),
         "place": {"effective": {"provider": "railway", "account": "pocketos", "volume": volume}},
         "safety": {"shares": "volume", "safe": false}},
        {"backup": format!("{asset}-offsite"),
         "place": {"effective": {"provider": "hetzner", "account": "pocketos-backups", "host": "backup-nas"}},
         "safety": {"safe": true}},
    ]}});
    result
}

/// Stores `results` as `agent`'s.
pub async fn store_results(store: &Store, agent: AgentId, environment: &str, results: Vec<RunResult>) {
    let rows: Vec<ResultRow> = results
        .into_iter()
        .map(|result| ResultRow {
            agent_id: agent,
            environment: Environment::parse(environment).expect("environment"),
            received_at: Utc::now(),
            result,
        })
        .collect();
    store.insert_results(&rows).await.expect("insert results");
}

/// Records the verdict of `asset`.
pub async fn set_verdict(store: &Store, environment: &str, asset: &str, recoverable: bool, reasons: Vec<Finding>) {
    let now = Utc::now();
    let verdict = VerdictRecord {
        environment: environment.to_owned(),
        asset: asset.to_owned(),
        recoverable,
        reasons,
        last_passed_at: None,
        backup_age_seconds: None,
        restore_seconds: None,
        rpo_seconds: Some(86_400),
        rto_seconds: Some(1800),
        since: now,
        updated_at: now,
    };
    store
        .record_verdict(&verdict, &format!("lifeboat-{environment}-{asset}"), |_, _, _| {
            Vec::new()
        })
        .await
        .expect("record verdict");
}

/// The test venv's Python, with the MCP SDK and graphql-core (`scripts/test` creates it):
/// `LIFEBOAT_TEST_PYTHON`, or `target/test-venv/bin/python3` of this workspace.
pub fn python() -> PathBuf {
    let path = std::env::var_os("LIFEBOAT_TEST_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python3"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (it creates the venv with the MCP SDK and graphql-core)",
        path.display()
    );
    path
}

/// A file of this crate (`python/…`, `fixtures/…`).
pub fn crate_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The local Railway upstream (`python/railway_upstream.py`), checking every request against
/// Railway's published schema and the real `token`; its requests are logged in `log`.
pub struct RailwayUpstream {
    pub url: String,
    pub log: PathBuf,
    _process: ChildProcess,
}

impl RailwayUpstream {
    pub async fn start(dir: &Path, token: &str) -> RailwayUpstream {
        let log = dir.join("upstream-requests.jsonl");
        let port_file = dir.join("upstream.port");
        let script = crate_file("python/railway_upstream.py");
        let schema = crate_file("fixtures/railway/schema.json");
        let process = ChildProcess::spawn_program(
            &python(),
            &[
                script.to_str().expect("path"),
                schema.to_str().expect("path"),
                log.to_str().expect("path"),
                port_file.to_str().expect("path"),
            ],
            &dir.join("upstream.log"),
            &[("RAILWAY_UPSTREAM_TOKEN", token)],
        )
        .expect("start the Railway upstream");
        let ready = crate::eventually(std::time::Duration::from_secs(30), || {
            let port_file = port_file.clone();
            async move { port_file.exists() }
        })
        .await;
        assert!(ready, "the upstream did not start: {}", process.log_text());
        let port = std::fs::read_to_string(&port_file).expect("port file");
        RailwayUpstream {
            url: format!("http://127.0.0.1:{}/graphql/v2", port.trim()),
            log,
            _process: process,
        }
    }

    /// Every request the upstream received, in order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("log line"))
            .collect()
    }
}
