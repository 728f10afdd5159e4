//! The command lines as users meet them: config errors before any port is bound, JSON outputs
//! of the command-line contract, exit codes, and the demo.

use lifeboat_tests::processes::{self, ChildProcess, CoordinatorProcess};

#[tokio::test]
async fn a_bad_config_is_reported_with_file_line_and_field_before_binding() {
    let dir = tempfile::tempdir().expect("dir");
    let port = processes::free_port();
    let config = dir.path().join("coordinator.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nserver_names = [\"127.0.0.1\"]\n[agents]\ncertificate_ttl = \"forever\"\n",
            dir.path().display()
        ),
    )
    .expect("write");
    let config_arg = config.display().to_string();
    let (code, _stdout, stderr) = processes::run("lifeboat-coordinator", &["serve", "--config", &config_arg])
        .await
        .expect("run");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{config_arg}:5:")), "{stderr}");
    assert!(stderr.contains("certificate_ttl"), "{stderr}");
    // Nothing was bound and nothing was created.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    assert!(!dir.path().join("lifeboat.db").exists());
    assert!(!dir.path().join("ca").exists());

    let (code, _stdout, stderr) = processes::run("lifeboat-coordinator", &["serve", "--config", "/nonexistent.toml"])
        .await
        .expect("run");
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent.toml"), "{stderr}");

    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        "[agent]\ncoordinator = \"https://x:1\"\nidentity_dir = \"/x\"\nwork_dir = \"/y\"\nheartbeat = 5\n",
    )
    .expect("write");
    let agent_arg = agent_config.display().to_string();
    let (code, _stdout, stderr) = processes::run("lifeboat-agent", &["run", "--config", &agent_arg])
        .await
        .expect("run");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{agent_arg}:5:")) && stderr.contains("heartbeat"),
        "{stderr}"
    );
}

#[tokio::test]
async fn token_create_and_agents_list_speak_the_json_contract() {
    let dir = tempfile::tempdir().expect("dir");
    let mut coordinator = CoordinatorProcess::start(dir.path(), None).await.expect("coordinator");
    let created = coordinator
        .admin_json(&["token", "create", "--environment", "pocketos-prod", "--ttl", "10m"])
        .await
        .expect("token create");
    for field in ["token", "ca_pin", "environment", "expires_at", "enroll_command"] {
        assert!(created[field].is_string(), "missing {field}: {created}");
    }
    assert!(created["ca_pin"].as_str().expect("pin").starts_with("sha256:"));
    assert_eq!(created["environment"], "pocketos-prod");
    let command = created["enroll_command"].as_str().expect("command");
    assert!(
        command.contains(&coordinator.url) && command.contains("--ca-pin sha256:"),
        "{command}"
    );

    // The token is stored hashed: its value is nowhere in the database file.
    let token = created["token"].as_str().expect("token");
    let db = std::fs::read(coordinator.data_dir.join("lifeboat.db")).expect("db");
    let wal = std::fs::read(coordinator.data_dir.join("lifeboat.db-wal")).unwrap_or_default();
    let contains = |haystack: &[u8]| haystack.windows(token.len()).any(|window| window == token.as_bytes());
    assert!(!contains(&db) && !contains(&wal), "the token is stored in clear");

    let bad = processes::run(
        "lifeboat-coordinator",
        &[
            "token",
            "create",
            "--environment",
            "Not Valid",
            "--config",
            &coordinator.config_path.display().to_string(),
        ],
    )
    .await
    .expect("run");
    assert_ne!(bad.0, 0);
    assert!(bad.2.contains("environment name"), "{}", bad.2);

    let agents = coordinator.admin_json(&["agents", "list"]).await.expect("agents list");
    assert_eq!(agents, serde_json::json!([]));
    coordinator.kill().await;
}

/// The README's main command tells its own story, in under two minutes, and cleans up.
#[tokio::test]
async fn demo_goes_not_recoverable_ticket_fixed_resolved_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("demo.log");
    let state = dir.path().join("state");
    let state_arg = state.display().to_string();
    let mut demo =
        ChildProcess::spawn("lifeboat-coordinator", &["demo", "--dir", &state_arg], &log, &[]).expect("demo");
    let finished = lifeboat_tests::eventually(std::time::Duration::from_secs(120), || {
        let running = demo.is_running();
        async move { !running }
    })
    .await;
    let output = demo.log_text();
    assert!(finished, "demo still running after 2 min:\n{output}");
    let story = [
        "rentals-db: NOT RECOVERABLE",
        "backup.stale",
        "blast_radius.shared",
        "credential.exposed",
        "TICKET OPENED",
        "volumeDelete — through Lifeboat's Railway gate",
        "REFUSED, nothing reached Railway",
        "volumeDelete of railway volume vol-7f3a refused by Lifeboat",
        "the fixes",
        "rentals-db: RECOVERABLE",
        "TICKET RESOLVED",
        "ALLOWED: the gate forwarded it; Railway deleted vol-7f3a",
        "Demo finished",
    ];
    let mut from = 0;
    for chapter in story {
        let at = output[from..]
            .find(chapter)
            .unwrap_or_else(|| panic!("{chapter:?} missing or out of order in:\n{output}"));
        from += at;
    }
    assert!(
        !output.contains("backup.shrunk"),
        "a dump and a plain SQL file are not compared by size:\n{output}"
    );
    // No process started by the demo is left: none has the demo's directory on its command line.
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&state_arg))
        .collect();
    assert!(leftovers.is_empty(), "left running: {leftovers:?}");
}

/// `lifeboat-agent scan PATH…` speaks its JSON contract: credentials by fingerprint and
/// preview with where they were found and what they can destroy; the value itself never.
#[tokio::test]
async fn scan_reports_credentials_by_fingerprint_and_exits_1_on_an_exposed_one() {
    let dir = tempfile::tempdir().expect("dir");
    let token = uuid::Uuid::new_v4().to_string();
    // ghp_ and 36 alphanumerics, like a classic GitHub token.
    let github: String = format!("ghp_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
        .chars()
        .take(40)
        .collect();
    std::fs::create_dir_all(dir.path().join("scripts")).expect("mkdir");
    std::fs::write(
        dir.path().join("scripts/domains.env"),
        format!("# domains\nRAILWAY_TOKEN={token}\nGH_TOKEN={github}\n"),
    )
    .expect("write");
    let path = dir.path().display().to_string();
    let (code, stdout, stderr) = lifeboat_tests::processes::run("lifeboat-agent", &["scan", &path, "--output", "json"])
        .await
        .expect("scan");
    assert_eq!(code, 1, "an exposed destructive token exits 1: {stdout}\n{stderr}");
    assert!(
        !stdout.contains(&token) && !stderr.contains(&token),
        "the token leaked: {stdout}"
    );
    assert!(!stdout.contains(&github), "the GitHub token leaked: {stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let credentials = report["credentials"].as_array().expect("credentials");
    let railway = credentials
        .iter()
        .find(|credential| credential["family"] == "railway")
        .unwrap_or_else(|| panic!("no Railway token in {report:#}"));
    assert!(railway["fingerprint"].as_str().is_some_and(|fp| fp.starts_with("fp:")));
    assert!(railway["preview"].as_str().is_some_and(|preview| preview.contains('…')));
    assert_eq!(railway["line"], 2);
    assert!(
        railway["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("scripts/domains.env"))
    );
    assert!(
        railway["capabilities"]
            .as_array()
            .is_some_and(|caps| caps.iter().any(|cap| cap["action"] == "destroy")),
        "{railway:#}"
    );
    assert!(
        credentials.iter().any(|credential| credential["family"] == "github"),
        "{report:#}"
    );
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|finding| finding["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"credential.exposed"), "{kinds:?}");
    assert!(kinds.contains(&"credential.destructive_scope"), "{kinds:?}");

    // A clean tree exits 0.
    let clean = tempfile::tempdir().expect("dir");
    std::fs::write(clean.path().join("README.md"), "nothing to see\n").expect("write");
    let clean_path = clean.path().display().to_string();
    let (code, stdout, _) =
        lifeboat_tests::processes::run("lifeboat-agent", &["scan", &clean_path, "--output", "json"])
            .await
            .expect("scan");
    assert_eq!(code, 0, "{stdout}");
}

/// The drill commands act on the store: `schedule` overrides a test centrally (refusing a
/// six-field cron), `run-now` queues a manual run, `posture` exits 0 only when every asset is
/// recoverable, `findings` lists the reasons worst first.
#[tokio::test]
async fn schedule_run_now_posture_and_findings_speak_their_contracts() {
    use lifeboat_coordinator::store::{TestSpec, VerdictRecord};
    use lifeboat_shared::findings::{Finding, FindingKind, Severity};

    let dir = tempfile::tempdir().expect("dir");
    let (config, store) = offline_coordinator(dir.path()).await;
    let config_arg = config.display().to_string();
    let now = chrono::Utc::now();
    store
        .sync_tests(
            &[TestSpec {
                environment: "prod".into(),
                asset: "rentals-db".into(),
                schedule: "0 3 * * *".into(),
                timeout_seconds: 3600,
                interval_seconds: 86_400,
                rpo_seconds: 86_400,
                rto_seconds: 1800,
            }],
            now,
        )
        .await
        .expect("tests");
    let run = |args: Vec<&str>| {
        let mut args = args;
        args.extend(["--config", config_arg.as_str()]);
        let owned: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        async move {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            lifeboat_tests::processes::run("lifeboat-coordinator", &refs)
                .await
                .expect("run")
        }
    };

    let (code, _, stderr) = run(vec!["schedule", "rentals-db", "--cron", "0 0 3 * * *"]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("5 fields"), "{stderr}");
    let (code, stdout, stderr) = run(vec![
        "schedule",
        "rentals-db",
        "--cron",
        "*/30 * * * *",
        "--timeout",
        "30m",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("*/30 * * * *") && stdout.contains("1800"), "{stdout}");
    let test = store.tests().await.expect("tests").remove(0);
    assert_eq!(test.effective_schedule(), "*/30 * * * *");
    let (code, _, stderr) = run(vec!["schedule", "rentals-db", "--clear"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(store.tests().await.expect("tests")[0].effective_schedule(), "0 3 * * *");
    let (code, _, stderr) = run(vec!["run-now", "unknown-asset"]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown-asset"), "{stderr}");
    let (code, stdout, stderr) = run(vec!["run-now", "rentals-db", "--output", "json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let queued: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(queued["asset"], "rentals-db");
    let runs = store.runs(Some("rentals-db"), 10).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert!(runs[0].manual && runs[0].state == "queued", "{runs:?}");

    // No verdict yet: nothing proves recovery, exit 1.
    let (code, stdout, _) = run(vec!["posture", "--output", "json"]).await;
    assert_eq!(code, 1, "{stdout}");
    let reason = Finding::new(FindingKind::BackupStale, "rentals-db", "92 days old").with_severity(Severity::Critical);
    let verdict = |recoverable: bool| VerdictRecord {
        environment: "prod".into(),
        asset: "rentals-db".into(),
        recoverable,
        reasons: if recoverable { Vec::new() } else { vec![reason.clone()] },
        last_passed_at: Some(now),
        backup_age_seconds: Some(3600),
        restore_seconds: Some(42.0),
        rpo_seconds: Some(86_400),
        rto_seconds: Some(1800),
        since: now,
        updated_at: now,
    };
    store
        .record_verdict(&verdict(false), "k", |_, _, _| Vec::new())
        .await
        .expect("verdict");
    let (code, stdout, _) = run(vec!["posture", "--output", "json"]).await;
    assert_eq!(code, 1);
    let posture: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(posture["recoverable"], false);
    assert_eq!(posture["assets"][0]["findings"][0]["kind"], "backup.stale");
    let (code, stdout, _) = run(vec!["findings", "--output", "json"]).await;
    assert_eq!(code, 0);
    let findings: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(findings[0]["kind"], "backup.stale");
    assert_eq!(findings[0]["asset"], "rentals-db");
    store
        .record_verdict(&verdict(true), "k", |_, _, _| Vec::new())
        .await
        .expect("verdict");
    let (code, stdout, _) = run(vec!["posture"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("prod/rentals-db: RECOVERABLE"), "{stdout}");
}

/// `evidence export` writes what an auditor needs and `evidence verify` exits 1 on an edited or
/// a removed record.
#[tokio::test]
async fn evidence_export_and_verify_catch_an_edited_and_a_removed_record() {
    use lifeboat_coordinator::store::ResultRow;
    use lifeboat_shared::ids::{AgentId, Environment, ResultId};
    use lifeboat_shared::protocol::{Outcome, RunResult};

    let dir = tempfile::tempdir().expect("dir");
    let (config, store) = offline_coordinator(dir.path()).await;
    let rows: Vec<ResultRow> = (0..4)
        .map(|i| {
            let mut result = RunResult::for_test(&format!("db-{i}"), Outcome::Passed);
            result.result_id = ResultId::new();
            ResultRow {
                agent_id: AgentId::new(),
                environment: Environment::parse("prod").expect("env"),
                result,
                received_at: chrono::Utc::now(),
            }
        })
        .collect();
    store.insert_results(&rows).await.expect("results");
    assert_eq!(store.append_evidence(&rows).await.expect("evidence"), 4);
    store.close().await;

    let out = dir.path().join("export");
    let (config_arg, out_arg) = (config.display().to_string(), out.display().to_string());
    let (code, _, stderr) = lifeboat_tests::processes::run(
        "lifeboat-coordinator",
        &[
            "evidence",
            "export",
            "--since",
            "90d",
            "--out",
            &out_arg,
            "--config",
            &config_arg,
        ],
    )
    .await
    .expect("export");
    assert_eq!(code, 0, "{stderr}");
    for file in ["evidence.jsonl", "manifest.json", "report.html"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let verify = |dir: String| async move {
        lifeboat_tests::processes::run("lifeboat-coordinator", &["evidence", "verify", &dir])
            .await
            .expect("verify")
    };
    assert_eq!(verify(out_arg.clone()).await.0, 0);

    let lines: Vec<String> = std::fs::read_to_string(out.join("evidence.jsonl"))
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect();
    let edited = dir.path().join("edited");
    std::fs::create_dir_all(&edited).expect("mkdir");
    std::fs::copy(out.join("manifest.json"), edited.join("manifest.json")).expect("copy");
    let mut changed = lines.clone();
    changed[1] = changed[1].replace("\"passed\"", "\"failed\"");
    assert_ne!(changed[1], lines[1], "the edit changed the record");
    std::fs::write(edited.join("evidence.jsonl"), changed.join("\n") + "\n").expect("write");
    let (code, stdout, _) = verify(edited.display().to_string()).await;
    assert_eq!(code, 1, "an edited record is caught: {stdout}");

    let removed = dir.path().join("removed");
    std::fs::create_dir_all(&removed).expect("mkdir");
    std::fs::copy(out.join("manifest.json"), removed.join("manifest.json")).expect("copy");
    let mut fewer = lines.clone();
    fewer.remove(2);
    std::fs::write(removed.join("evidence.jsonl"), fewer.join("\n") + "\n").expect("write");
    let (code, stdout, _) = verify(removed.display().to_string()).await;
    assert_eq!(code, 1, "a removed record is caught: {stdout}");
}

/// A coordinator config (not serving) in `dir` and its store, for the commands that act on it.
async fn offline_coordinator(dir: &std::path::Path) -> (std::path::PathBuf, lifeboat_coordinator::store::Store) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let config = dir.join("coordinator.toml");
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], lifeboat_tests::processes::free_port()).into();
    std::fs::write(
        &config,
        lifeboat_tests::cluster::coordinator_config_text(listen, &data, None, "1h"),
    )
    .expect("write");
    let store =
        lifeboat_coordinator::store::Store::connect(&format!("sqlite://{}", data.join("lifeboat.db").display()))
            .await
            .expect("store");
    (config, store)
}
