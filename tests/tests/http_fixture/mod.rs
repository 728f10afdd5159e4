//! A seeded store behind the real HTTP router on 127.0.0.1:0, shared by `http_surfaces` and
//! `status_page_browser` (included with `mod http_fixture;`).
//!
//! The organisation: `prod` has `rentals-db` (not recoverable: a stale backup and an exposed
//! credential from a posture scan, each with its remediation; it flipped from recoverable),
//! `<script>alert(1)</script>` (a hostile name, not recoverable: its restore timed out) and
//! `uploads` (recoverable); `staging` has `app-db` (recoverable). Every asset has a test and
//! restore results with restore times; two agents, one connected.
//!
//! The status page needs a login unless the server is started public ([`Server::sqlite_public`]).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use lifeboat_coordinator::http::{self, HttpState};
use lifeboat_coordinator::store::{NewJoinToken, NewRun, ResultRow, Store, TestSpec, TokenClaim, VerdictRecord};
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_shared::ids::{AgentId, Environment, ResultId};
use lifeboat_shared::protocol::{Outcome, ResultKind, RunResult};
use lifeboat_tests::postgres::PgCluster;
use serde_json::json;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const HOSTILE: &str = "<script>alert(1)</script>";
pub const STALE_MESSAGE: &str = "The newest recoverable backup of rentals-db is 92 days old; its RPO is 24 h.";
pub const STALE_FIX: &str = "Fix the nightly backup job & keep a copy off the production volume.";
pub const EXPOSED_MESSAGE: &str =
    "A Railway account token sits in plain text in /srv/app/scripts/domains.env (line 3).";
pub const EXPOSED_FIX: &str = "Rotate the token and move it to the secret store.";
pub const TIMED_OUT_MESSAGE: &str = "The restore test of <script>alert(1)</script> did not finish within 1 h.";

/// A running HTTP server over a seeded store.
pub struct Server {
    pub base: String,
    pub address: SocketAddr,
    pub store: Store,
    /// A valid operator token.
    pub token: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: Option<TempDir>,
    _cluster: Option<PgCluster>,
}

impl Server {
    /// A seeded SQLite store, served; the status page needs a login.
    pub async fn sqlite() -> Server {
        Self::sqlite_with(false).await
    }

    /// A seeded SQLite store, served with `public_status = true`.
    pub async fn sqlite_public() -> Server {
        Self::sqlite_with(true).await
    }

    async fn sqlite_with(public_status: bool) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("coordinator.db").display());
        let store = Store::connect(&url).await.expect("open sqlite store");
        Self::start(store, Some(dir), None, public_status).await
    }

    /// A seeded store on a throw-away PostgreSQL cluster, served.
    pub async fn postgres() -> Server {
        let cluster = PgCluster::start().await.expect("start postgres");
        cluster.create_database("lifeboat").await.expect("create database");
        let store = Store::connect(&cluster.url("lifeboat"))
            .await
            .expect("open postgres store");
        Self::start(store, None, Some(cluster), false).await
    }

    async fn start(store: Store, dir: Option<TempDir>, cluster: Option<PgCluster>, public_status: bool) -> Server {
        seed(&store).await;
        let token = store
            .create_operator_token("ci", Some(Utc::now() + Duration::hours(1)))
            .await
            .expect("create operator token");
        let router = http::router(HttpState {
            store: store.clone(),
            connected_agents: Arc::new(|| 1),
            public_url: None,
            public_status,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(http::serve(
            listener,
            router,
            http::HttpLimits::default(),
            shutdown.clone(),
        ));
        Server {
            base: format!("http://{address}"),
            address,
            store,
            token,
            shutdown,
            task: Some(task),
            _dir: dir,
            _cluster: cluster,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs in through the form with the server's operator token; returns the `Cookie` header
    /// value of the session.
    pub async fn login(&self) -> String {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let response = client
            .post(self.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            // Operator tokens are base64url: nothing to escape.
            .body(format!("token={}&next=%2F", self.token))
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER, "login refused");
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .expect("a session cookie");
        cookie.split(';').next().expect("name=value").to_owned()
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("serve");
        }
        self.store.close().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Now, at the store's precision.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now is in range")
}

fn restore(asset: &str, finished_at: DateTime<Utc>, seconds: f64, outcome: Outcome) -> RunResult {
    RunResult {
        result_id: ResultId::new(),
        kind: ResultKind::Restore,
        run_id: None,
        asset: asset.to_owned(),
        backup: "nightly".to_owned(),
        recovery_point: format!("{asset}-{}.dump", finished_at.format("%Y%m%d%H%M")),
        outcome,
        started_at: finished_at - Duration::seconds(seconds as i64),
        finished_at,
        restore_seconds: seconds * 0.8,
        rto_seconds: seconds,
        recovery_point_age_seconds: 3_600,
        findings: Vec::new(),
        detail: json!({"recoverable": outcome == Outcome::Passed, "runs": [{
            "outcome": outcome.as_str(),
            "runbook": [format!("pg_restore --dbname=\"${{SANDBOX_URL}}\" /mnt/backups/{asset}.dump")],
        }]}),
    }
}

async fn enroll(store: &Store, environment: &str, name: &str) -> AgentId {
    let hash = format!("token-{name}-{}", uuid::Uuid::new_v4());
    store
        .insert_join_token(&NewJoinToken {
            token_hash: hash.clone(),
            environment: Environment::parse(environment).expect("environment"),
            expires_at: now() + Duration::hours(1),
            uses_allowed: 1,
            created_at: now(),
        })
        .await
        .expect("insert token");
    store
        .claim_join_token(&TokenClaim {
            token_hash: hash,
            key_fingerprint: format!("key-{name}"),
            agent_name: name.to_owned(),
            now: now(),
        })
        .await
        .expect("claim")
        .agent_id
}

fn verdict(
    environment: &str,
    asset: &str,
    recoverable: bool,
    reasons: Vec<Finding>,
    at: DateTime<Utc>,
) -> VerdictRecord {
    VerdictRecord {
        environment: environment.to_owned(),
        asset: asset.to_owned(),
        recoverable,
        reasons,
        last_passed_at: Some(at - Duration::hours(2)),
        backup_age_seconds: Some(if recoverable { 7_200 } else { 92 * 86_400 }),
        restore_seconds: Some(if recoverable { 240.0 } else { 2_820.0 }),
        rpo_seconds: Some(86_400),
        rto_seconds: Some(1_800),
        since: at,
        updated_at: now(),
    }
}

/// Seeds the organisation described in the module docs.
pub async fn seed(store: &Store) {
    let t = now();
    let agent = enroll(store, "prod", "prod-1").await;
    enroll(store, "staging", "staging-1").await;
    store
        .mark_connected(agent, "prod-1.internal", "0.1.0", &json!({}), "replica-a", t)
        .await
        .expect("connect agent");

    let assets = [
        ("prod", "rentals-db"),
        ("prod", HOSTILE),
        ("prod", "uploads"),
        ("staging", "app-db"),
    ];
    let specs: Vec<TestSpec> = assets
        .iter()
        .map(|(environment, asset)| TestSpec {
            environment: (*environment).to_owned(),
            asset: (*asset).to_owned(),
            schedule: "0 */6 * * *".to_owned(),
            timeout_seconds: 3_600,
            interval_seconds: 86_400,
            rpo_seconds: 86_400,
            rto_seconds: 1_800,
        })
        .collect();
    store.sync_tests(&specs, t).await.expect("sync tests");
    store
        .materialise_runs(
            "prod",
            "rentals-db",
            &[NewRun {
                environment: "prod".to_owned(),
                asset: "rentals-db".to_owned(),
                due_at: t - Duration::hours(1),
                start_deadline: t + Duration::hours(1),
                timeout_seconds: 3_600,
                max_attempts: 3,
                manual: false,
            }],
            Some(t + Duration::hours(5)),
            t,
        )
        .await
        .expect("materialise runs");

    // Restore history: rentals-db got slower until it broke the RTO, the hostile one timed out.
    let mut results = Vec::new();
    for i in 0..12_i64 {
        let at = t - Duration::hours(6 * (12 - i));
        results.push(restore("rentals-db", at, 600.0 + 200.0 * i as f64, Outcome::Passed));
        results.push(restore("uploads", at, 120.0 + (i % 3) as f64 * 10.0, Outcome::Passed));
        results.push(restore("app-db", at, 200.0, Outcome::Passed));
        let hostile_outcome = if i == 11 { Outcome::TimedOut } else { Outcome::Passed };
        results.push(restore(HOSTILE, at, 300.0, hostile_outcome));
    }
    let exposed = Finding::new(FindingKind::CredentialExposed, "railway-token", EXPOSED_MESSAGE)
        .with_evidence(json!({"path": "/srv/app/scripts/domains.env", "line": 3}))
        .with_remediation(EXPOSED_FIX);
    let mut posture = restore("rentals-db", t - Duration::minutes(5), 0.0, Outcome::Passed);
    posture.kind = ResultKind::Posture;
    posture.findings = vec![exposed];
    results.push(posture);
    let rows: Vec<ResultRow> = results
        .into_iter()
        .map(|result| ResultRow {
            agent_id: agent,
            environment: Environment::parse("prod").expect("environment"),
            result,
            received_at: t,
        })
        .collect();
    store.insert_results(&rows).await.expect("insert results");

    // Verdicts: rentals-db was recoverable, then flipped; the others are as they are.
    let stale = Finding::new(FindingKind::BackupStale, "rentals-db", STALE_MESSAGE)
        .with_evidence(json!({"age_seconds": 92 * 86_400}))
        .with_remediation(STALE_FIX);
    let timed_out = Finding::new(FindingKind::RestoreTimedOut, HOSTILE, TIMED_OUT_MESSAGE)
        .with_severity(Severity::Critical)
        .with_remediation("Give the restore more time <b>or</b> a faster disk.");
    let records = [
        verdict("prod", "rentals-db", true, Vec::new(), t - Duration::days(3)),
        verdict("prod", "rentals-db", false, vec![stale], t - Duration::hours(1)),
        verdict("prod", HOSTILE, false, vec![timed_out], t - Duration::minutes(30)),
        verdict("prod", "uploads", true, Vec::new(), t - Duration::days(2)),
        verdict("staging", "app-db", true, Vec::new(), t - Duration::days(2)),
    ];
    for record in &records {
        store
            .record_verdict(
                record,
                &format!("{}/{}", record.environment, record.asset),
                |_, _, _| Vec::new(),
            )
            .await
            .expect("record verdict");
    }
}
