//! Secrets never leave the environment. Canary secrets are planted in files the
//! agent scans, in its environment and in its declared credentials; a real agent process runs
//! posture scans and a restore test whose check fails with an error quoting the canaries — its
//! environment, files holding tokens and a database URL, and the agent's own private key — and
//! reports to a real coordinator process that escalates to local Jira and webhook servers. Then
//! no canary may appear in what the coordinator stored (the SQLite file and its WAL), its JSON
//! API, its status page, its evidence export, the tickets and webhook bodies, either process's
//! log (the agent's at debug level), or the agent's spool and posture state — while the
//! credentials themselves were found and reported by fingerprint and preview, and the failing
//! check reached every one of those places, scrubbed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_agent::credentials::{FingerprintKey, Secret};
use lifeboat_coordinator::store::Store;
use lifeboat_shared::protocol::{ResultKind, RunResult};
use lifeboat_tests::processes::{self, AgentProcess, CoordinatorProcess};
use lifeboat_tests::vendors::jira::{JiraOptions, JiraServer};
use lifeboat_tests::vendors::webhook::{WebhookOptions, WebhookSink};

const ENVIRONMENT: &str = "canary-env";
const ASSET: &str = "uploads";

/// Every file under `dir`, as bytes, with its path.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// Generated per run: they match real formats but belong to no one.
struct Canaries {
    railway: String,
    aws_id: String,
    aws_secret: String,
    github: String,
    db_password: String,
    /// In the agent's environment, where the scan finds it (a Railway token).
    env_railway: String,
    /// In the agent's environment under a name no rule knows: only its shape gives it away.
    env_only: String,
    declared_only: String,
}

impl Canaries {
    fn generate() -> Self {
        let hex = |n: usize| -> String {
            let mut text = String::new();
            while text.len() < n {
                text.push_str(&uuid::Uuid::new_v4().simple().to_string());
            }
            text.truncate(n);
            text
        };
        // Mixed case, like real tokens.
        let random = |n: usize| -> String {
            hex(n)
                .chars()
                .enumerate()
                .map(|(i, c)| if i % 3 == 0 { c.to_ascii_uppercase() } else { c })
                .collect()
        };
        Self {
            railway: uuid::Uuid::new_v4().to_string(),
            aws_id: format!("AKIA{}", hex(16).to_ascii_uppercase()),
            aws_secret: random(40),
            github: format!("ghp_{}", random(36)),
            db_password: format!("pw{}", random(22)),
            env_railway: uuid::Uuid::new_v4().to_string(),
            env_only: format!("bsk-{}", random(28)),
            declared_only: format!("ghp_{}", random(36)),
        }
    }

    fn all(&self) -> [&str; 8] {
        [
            &self.railway,
            &self.aws_id,
            &self.aws_secret,
            &self.github,
            &self.db_password,
            &self.env_railway,
            &self.env_only,
            &self.declared_only,
        ]
    }

    /// Writes the canaries of files into an app tree the agent scans.
    fn plant(&self, app: &Path) {
        std::fs::create_dir_all(app.join("config")).expect("mkdir");
        let files = [
            (
                ".env",
                format!("RAILWAY_TOKEN={}\nGITHUB_TOKEN={}\n", self.railway, self.github),
            ),
            (
                "config/aws.ini",
                format!(
                    "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                    self.aws_id, self.aws_secret
                ),
            ),
            (
                "config/database.yml",
                format!(
                    "production:\n  url: postgres://rentals:{}@db.internal:5432/rentals\n",
                    self.db_password
                ),
            ),
            (".gitignore", ".env\n".to_owned()),
        ];
        for (name, text) in files {
            std::fs::write(app.join(name), text).expect("write");
        }
    }
}

/// A check command that fails with one stderr line quoting whatever it can reach of the agent's
/// environment canaries, the planted files and the agent's private key, as a hostile backup's
/// error would. In the restore jail the environment and the key are out of its reach (the first
/// wall); the planted files, which the check lists in its `paths`, are not, so they test the
/// second wall: the scrubber.
fn leaking_command(app: &Path, identity_dir: &Path) -> String {
    let joined = |path: PathBuf| format!("$( (tr '\\n' ' ' < '{}') 2>/dev/null)", path.display());
    format!(
        "echo \"leak: $RAILWAY_API_TOKEN $BILLING_SERVICE_KEY {} {} {} {}\" >&2; exit 3",
        joined(identity_dir.join("key.pem")),
        joined(app.join(".env")),
        joined(app.join("config/aws.ini")),
        joined(app.join("config/database.yml")),
    )
}

/// The base64 lines of the agent's private key: canaries too.
fn key_lines(identity_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(identity_dir.join("key.pem"))
        .expect("key.pem")
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() >= 16)
        .map(str::to_owned)
        .collect()
}

fn coordinator_channels(jira: &JiraServer, sink: &WebhookSink) -> String {
    format!(
        r#"
[schedule]
jitter = "0s"

[alerts]
evaluate_every = "1s"
retry_max_delay = "2s"

[[channel]]
name = "ops-jira"
kind = "jira"
url = "{jira}"
email = "lifeboat@pocketos.example"
api_token = "jira-token"
project = "OPS"
timeout = "2s"

[[channel]]
name = "hook"
kind = "webhook"
url = "{hook}/lifeboat"
secret = "hook-secret"
timeout = "2s"

[[route]]
channels = ["ops-jira", "hook"]
"#,
        jira = jira.base_url(),
        hook = sink.base_url()
    )
}

fn agent_sections(dir: &Path, app: &Path, command: &str) -> String {
    let files = dir.join("files-asset");
    let backups = dir.join("files-backups");
    std::fs::create_dir_all(&files).expect("mkdir");
    std::fs::create_dir_all(backups.join("snapshot-1")).expect("mkdir");
    std::fs::write(backups.join("snapshot-1/photo.txt"), "a photo\n").expect("write");
    format!(
        r#"
[[asset]]
name = "{ASSET}"
kind = "files"
path = "{files}"
location = {{ provider = "railway", account = "pocketos" }}

[[backup]]
name = "uploads-snapshots"
asset = "{ASSET}"
kind = "files_dir"
path = "{backups}"
location = {{ provider = "hetzner", account = "pocketos-backups" }}

[[test]]
asset = "{ASSET}"
schedule = "0 0 1 1 *"
timeout = "5m"

  [[test.check]]
  name = "leak"
  command = {command}
  paths = ["{app}"]

[[credential]]
name = "ci-token"
kind = "generic"
purpose = "read repositories"
value = "${{LIFEBOAT_CANARY_DECLARED}}"

[scan]
paths = ["{app}"]
interval = "1s"

[telemetry]
log_format = "json"
log_filter = "debug"
"#,
        files = files.display(),
        backups = backups.display(),
        app = app.display(),
        command = serde_json::to_string(command).expect("quote the command"),
    )
}

/// Polls `read` every 250 ms for up to `seconds` until it returns something.
async fn wait_for<T, F, Fut>(seconds: u64, what: &str, mut read: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..seconds * 4 {
        if let Some(value) = read().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn latest_result(store: &Store, kind: ResultKind) -> Option<RunResult> {
    let results = store.results_for_asset(ASSET, 20).await.ok()?;
    results
        .into_iter()
        .map(|stored| stored.result)
        .find(|result| result.kind == kind)
}

/// The address of the coordinator's HTTP server, from its log.
fn http_base(coordinator: &CoordinatorProcess) -> String {
    let log = std::fs::read_to_string(coordinator.data_dir.join("coordinator.log")).expect("coordinator log");
    let line = log
        .lines()
        .find(|line| line.contains("serving the API, status page and metrics"))
        .unwrap_or_else(|| panic!("no HTTP address in the log:\n{log}"));
    let port: String = line
        .split("127.0.0.1:")
        .nth(1)
        .expect("an address on 127.0.0.1")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    format!("http://127.0.0.1:{port}")
}

/// The bodies of the coordinator's HTTP surfaces: the JSON API (with an operator token) and the
/// status page.
async fn http_surfaces(coordinator: &CoordinatorProcess, store: &Store) -> Vec<(PathBuf, Vec<u8>)> {
    let base = http_base(coordinator);
    let token = store
        .create_operator_token("canary-test", None)
        .await
        .expect("operator token");
    let client = reqwest::Client::new();
    let mut bodies = Vec::new();
    for path in [
        "/api/v1/findings".to_owned(),
        "/api/v1/verdicts".to_owned(),
        "/api/v1/runs".to_owned(),
        "/api/v1/flips".to_owned(),
        "/api/v1/assets".to_owned(),
        "/".to_owned(),
        format!("/assets/{ENVIRONMENT}/{ASSET}"),
    ] {
        let response = client
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        let body = response.bytes().await.expect("body").to_vec();
        bodies.push((PathBuf::from(format!("http {path}")), body));
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_appear_in_no_message_and_no_log() {
    let dir = tempfile::tempdir().expect("dir");
    let canaries = Canaries::generate();
    let app = dir.path().join("srv-app");
    canaries.plant(&app);
    // The check lists the app's folder in its `paths`: the sandbox user may read it.
    lifeboat_tests::agent_check::grant_sandbox_read(&app);

    let jira = JiraServer::start(JiraOptions::new("lifeboat@pocketos.example", "jira-token", "OPS")).await;
    let sink = WebhookSink::start(WebhookOptions::new(b"hook-secret")).await;
    let coordinator = CoordinatorProcess::start_with(dir.path(), None, &coordinator_channels(&jira, &sink))
        .await
        .expect("coordinator");
    let mut agent = AgentProcess::enroll(&dir.path().join("agent"), &coordinator, ENVIRONMENT)
        .await
        .expect("enroll");
    let command = leaking_command(&app, &agent.identity_dir);
    agent
        .append_config(&agent_sections(dir.path(), &app, &command))
        .expect("config");
    agent
        .start_with_env(&[
            ("RAILWAY_API_TOKEN", canaries.env_railway.as_str()),
            ("BILLING_SERVICE_KEY", canaries.env_only.as_str()),
            ("LIFEBOAT_CANARY_DECLARED", canaries.declared_only.as_str()),
            (
                "RUST_LOG",
                "debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info",
            ),
        ])
        .expect("start");

    let store = Store::connect(&coordinator.sqlite_url()).await.expect("store");
    let posture = wait_for(60, "a posture result", || latest_result(&store, ResultKind::Posture)).await;
    wait_for(30, "the test from the inventory", || async {
        store.tests().await.ok().filter(|tests| !tests.is_empty())
    })
    .await;
    let config = coordinator.config_path.display().to_string();
    let (code, _, stderr) = processes::run("lifeboat-coordinator", &["run-now", ASSET, "--config", &config])
        .await
        .expect("run-now");
    assert_eq!(code, 0, "{stderr}");
    let restore = wait_for(120, "the restore result", || latest_result(&store, ResultKind::Restore)).await;
    wait_for(60, "a Jira issue and a webhook delivery", || async {
        (!jira.issues().is_empty() && !sink.deliveries().is_empty()).then_some(())
    })
    .await;
    // Let a few more scans go through the whole path.
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.kill().await;

    // Not vacuous: the planted credentials were found and reported by fingerprint and preview…
    let credentials = posture.detail["credentials"]
        .as_array()
        .expect("credentials in the result");
    let kinds: Vec<&str> = credentials.iter().filter_map(|c| c["kind"].as_str()).collect();
    assert!(credentials.len() >= 4, "found only {kinds:?}");
    assert!(
        credentials
            .iter()
            .all(|c| c["fingerprint"].as_str().is_some_and(|f| f.starts_with("fp:")))
    );
    assert!(
        posture
            .findings
            .iter()
            .any(|finding| finding.kind.code() == "credential.exposed"),
        "{:?}",
        posture.findings
    );
    // …and the failing check quoted them, and reached the coordinator scrubbed: each canary as
    // its fingerprint, the key as a PEM marker.
    let check_failed = restore
        .findings
        .iter()
        .find(|finding| finding.kind.code() == "restore.check_failed")
        .unwrap_or_else(|| {
            panic!(
                "no failed check: {:?} {:#} {:#?}",
                restore.outcome, restore.detail, restore.findings
            )
        });
    let key = FingerprintKey::load_or_create(&agent.work_dir.join("fingerprint.key")).expect("fingerprint key");
    // The environment and the key never reached the jailed check at all.
    for unreachable in [&canaries.env_railway, &canaries.env_only] {
        let fingerprint = key.fingerprint(&Secret::new(unreachable.as_str()));
        assert!(
            !check_failed.message.contains(&fingerprint),
            "the jailed check saw the agent's environment: {}",
            check_failed.message
        );
    }
    assert!(
        !check_failed.message.contains("PEM PRIVATE KEY"),
        "{}",
        check_failed.message
    );
    for quoted in [&canaries.github, &canaries.aws_id] {
        let fingerprint = key.fingerprint(&Secret::new(quoted.as_str()));
        assert!(
            check_failed.message.contains(&fingerprint),
            "{fingerprint} not in {}",
            check_failed.message
        );
    }
    let verdict = store
        .verdict(ENVIRONMENT, ASSET)
        .await
        .expect("verdict")
        .expect("a verdict");
    assert!(!verdict.recoverable);
    assert!(
        verdict
            .reasons
            .iter()
            .any(|reason| reason.message.contains("check \"leak\" failed")),
        "{:?}",
        verdict.reasons
    );

    let mut places: Vec<(PathBuf, Vec<u8>)> = files_under(&coordinator.data_dir);
    places.extend(files_under(&agent.work_dir));
    places.push((dir.path().join("agent/agent.log"), agent.log_text().into_bytes()));
    places.extend(http_surfaces(&coordinator, &store).await);
    let export = dir.path().join("evidence-export");
    lifeboat_coordinator::evidence::export(&store, chrono::Utc::now() - chrono::Duration::days(1), &export)
        .await
        .expect("evidence export");
    places.extend(files_under(&export));
    for (index, request) in jira.requests().into_iter().chain(sink.requests()).enumerate() {
        places.push((
            PathBuf::from(format!("vendor request {index} {}", request.path)),
            request.body,
        ));
    }
    for name in ["lifeboat.db", "coordinator.log", "evidence.jsonl"] {
        assert!(
            places.iter().any(|(path, _)| path.to_string_lossy().ends_with(name)),
            "{name} is among the places checked"
        );
    }
    assert!(
        places
            .iter()
            .any(|(path, bytes)| path.to_string_lossy().starts_with("vendor request")
                && contains(bytes, "check \\\"leak\\\" failed")),
        "the failed check reached a ticket"
    );
    let key_lines = key_lines(&agent.identity_dir);
    assert!(!key_lines.is_empty());
    for (path, bytes) in &places {
        for canary in canaries.all().into_iter().chain(key_lines.iter().map(String::as_str)) {
            assert!(
                !contains(bytes, canary),
                "a canary secret leaked into {}",
                path.display()
            );
        }
    }
}
