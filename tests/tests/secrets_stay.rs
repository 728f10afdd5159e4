//! DESIGN.md §5.2: secrets never leave the environment. Canary secrets are planted in files the
//! agent scans, in its environment and in its declared credentials; a real agent process runs
//! posture scans and reports to a real coordinator process; then no canary may appear in what
//! the coordinator stored (the SQLite file and its WAL), in either process's log (at debug
//! level), in the agent's spool or its posture state — while the credentials themselves were
//! found and reported by fingerprint and preview.

use std::path::Path;
use std::time::Duration;

use lifeboat_coordinator::store::Store;
use lifeboat_shared::protocol::ResultKind;
use lifeboat_tests::processes::{AgentProcess, CoordinatorProcess};

/// Every file under `dir`, as bytes, with its path.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_appear_in_no_message_and_no_log() {
    let dir = tempfile::tempdir().expect("dir");
    // Generated per run: they match real formats but belong to no one.
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
    let upper = |n: usize| -> String { hex(n).to_ascii_uppercase() };
    let railway = uuid::Uuid::new_v4().to_string();
    let aws_id = format!("AKIA{}", upper(16));
    let aws_secret = random(40);
    let github = format!("ghp_{}", random(36));
    let db_password = format!("pw{}", random(22));
    let env_railway = uuid::Uuid::new_v4().to_string();
    let declared_only = format!("ghp_{}", random(36));
    let canaries = [
        railway.as_str(),
        aws_id.as_str(),
        aws_secret.as_str(),
        github.as_str(),
        db_password.as_str(),
        env_railway.as_str(),
        declared_only.as_str(),
    ];

    let app = dir.path().join("srv-app");
    std::fs::create_dir_all(app.join("config")).expect("mkdir");
    std::fs::write(
        app.join(".env"),
        format!("RAILWAY_TOKEN={railway}\nGITHUB_TOKEN={github}\n"),
    )
    .expect("write");
    std::fs::write(
        app.join("config/aws.ini"),
        format!("[default]\naws_access_key_id = {aws_id}\naws_secret_access_key = {aws_secret}\n"),
    )
    .expect("write");
    std::fs::write(
        app.join("config/database.yml"),
        format!("production:\n  url: postgres://rentals:{db_password}@db.internal:5432/rentals\n"),
    )
    .expect("write");
    std::fs::write(app.join(".gitignore"), ".env\n").expect("write");

    let coordinator = CoordinatorProcess::start(dir.path(), None).await.expect("coordinator");
    let mut agent = AgentProcess::enroll(&dir.path().join("agent"), &coordinator, "canary-env")
        .await
        .expect("enroll");
    let files = dir.path().join("files-asset");
    std::fs::create_dir_all(&files).expect("mkdir");
    agent
        .append_config(&format!(
            r#"
[[asset]]
name = "uploads"
kind = "files"
path = "{files}"
location = {{ provider = "railway", account = "pocketos" }}

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
            app = app.display()
        ))
        .expect("config");
    agent
        .start_with_env(&[
            ("RAILWAY_API_TOKEN", env_railway.as_str()),
            ("LIFEBOAT_CANARY_DECLARED", declared_only.as_str()),
        ])
        .expect("start");

    let store = Store::connect(&coordinator.sqlite_url()).await.expect("store");
    let mut reported = None;
    for _ in 0..240 {
        if let Ok(results) = store.results_for_asset("uploads", 10).await
            && let Some(result) = results
                .into_iter()
                .find(|stored| stored.result.kind == ResultKind::Posture)
        {
            reported = Some(result.result);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reported = reported.unwrap_or_else(|| panic!("no posture result:\n{}", agent.log_text()));
    // Let a few more scans go through the whole path.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The asset is declared without a test: the coordinator says nothing proves it recovers.
    let verdict = store
        .verdict("canary-env", "uploads")
        .await
        .expect("verdict")
        .expect("a verdict");
    assert!(!verdict.recoverable);
    assert!(
        verdict
            .reasons
            .iter()
            .any(|reason| reason.message.contains("no restore test")),
        "{:?}",
        verdict.reasons
    );
    agent.kill().await;

    // Not vacuous: the planted credentials were found and reported by fingerprint and preview.
    let credentials = reported.detail["credentials"]
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
        reported
            .findings
            .iter()
            .any(|finding| finding.kind.code() == "credential.exposed"),
        "{:?}",
        reported.findings
    );

    let mut places: Vec<(std::path::PathBuf, Vec<u8>)> = files_under(&coordinator.data_dir);
    places.extend(files_under(&agent.work_dir));
    places.push((dir.path().join("agent/agent.log"), agent.log_text().into_bytes()));
    assert!(
        places
            .iter()
            .any(|(path, _)| path.to_string_lossy().ends_with("lifeboat.db")),
        "the store file is among the places checked"
    );
    for (path, bytes) in &places {
        for canary in canaries {
            assert!(
                !contains(bytes, canary),
                "a canary secret leaked into {}",
                path.display()
            );
        }
    }
}
