//! `lifeboat-agent doctor` on a configured, enrolled agent: every check passes and says what it
//! saw, without restoring anything; then each thing a drill needs is broken in turn and doctor
//! names it with the fix, exiting 1: a backup the sandbox user cannot read, a missing tool, a
//! revoked agent, a clock ten minutes ahead.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use lifeboat_tests::processes::{self, AgentProcess, CoordinatorProcess};
use serde_json::Value;

/// A coordinator, an enrolled agent with a SQLite asset, its backups and a test.
struct Setup {
    _dir: tempfile::TempDir,
    coordinator: CoordinatorProcess,
    agent: AgentProcess,
    backups: std::path::PathBuf,
}

async fn setup(extra_backup: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    // The sandbox user passes through to the work directory and the backups.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let coordinator = CoordinatorProcess::start(dir.path(), None).await.expect("coordinator");
    let agent = AgentProcess::enroll(dir.path(), &coordinator, "doctor-prod")
        .await
        .expect("enroll");
    std::fs::create_dir_all(&agent.work_dir).expect("work dir");
    let production = dir.path().join("app.sqlite");
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).expect("backups");
    let created = std::process::Command::new("sqlite3")
        .arg(&production)
        .arg("create table t(x); insert into t values (1), (2);")
        .status()
        .expect("sqlite3");
    assert!(created.success());
    std::fs::copy(&production, backups.join("app-1.sqlite")).expect("backup");
    agent
        .append_config(&format!(
            r#"
[[asset]]
name = "app"
kind = "sqlite"
path = "{}"

[[backup]]
name = "app-copies"
asset = "app"
kind = "sqlite_dir"
path = "{}"
{extra_backup}
[[test]]
asset = "app"
schedule = "0 0 1 1 *"
"#,
            production.display(),
            backups.display()
        ))
        .expect("config");
    lifeboat_tests::agent_check::grant_backups_to_sandbox(&agent.config_path);
    Setup {
        _dir: dir,
        coordinator,
        agent,
        backups,
    }
}

async fn doctor(config: &Path, env: &[(&str, &str)]) -> (i32, Value, String) {
    let config = config.display().to_string();
    let (code, stdout, stderr) = processes::run_with_env(
        "lifeboat-agent",
        &["doctor", "--config", &config, "--output", "json"],
        env,
    )
    .await
    .expect("run doctor");
    (code, serde_json::from_str(&stdout).unwrap_or(Value::Null), stderr)
}

fn checks<'a>(report: &'a Value, status: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|check| check["status"] == status)
        .collect()
}

fn find<'a>(report: &'a Value, group: &str, subject_part: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|check| check["group"] == group && check["subject"].as_str().is_some_and(|s| s.contains(subject_part)))
        .unwrap_or_else(|| panic!("no {group} check about {subject_part}: {report:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_agent_is_ready_and_doctor_leaves_no_trace() {
    let setup = setup("").await;
    let work_before: Vec<_> = std::fs::read_dir(&setup.agent.work_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let (code, report, stderr) = doctor(&setup.agent.config_path, &[]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["ready"], true);
    assert!(checks(&report, "fail").is_empty(), "{report:#}");
    assert!(
        find(&report, "tools", "sqlite3")["detail"]
            .as_str()
            .unwrap()
            .contains("sqlite_dir")
    );
    assert!(
        find(&report, "jail", "bubblewrap")["detail"]
            .as_str()
            .unwrap()
            .contains("bubblewrap")
    );
    let jailed = find(&report, "jail", "jailed command")["detail"].as_str().unwrap();
    assert!(jailed.contains("lifeboat-sandbox"), "{jailed}");
    assert!(
        find(&report, "backups", "app-copies (sqlite_dir")["detail"]
            .as_str()
            .unwrap()
            .contains("1 recovery point")
    );
    assert_eq!(find(&report, "backups", "read by lifeboat-sandbox")["status"], "ok");
    assert!(
        find(&report, "assets", "app (sqlite)")["detail"]
            .as_str()
            .unwrap()
            .contains("opens for reading")
    );
    assert!(
        find(&report, "coordinator", &setup.coordinator.url)["detail"]
            .as_str()
            .unwrap()
            .contains("is known")
    );
    assert_eq!(find(&report, "coordinator", "clock")["status"], "ok");
    // Nothing restored, nothing left behind: no sandbox, no scratch directory, no fingerprint key.
    let work_after: Vec<_> = std::fs::read_dir(&setup.agent.work_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(work_before, work_after);

    // Text: one line per check, then the summary.
    let config = setup.agent.config_path.display().to_string();
    let (code, text, _) = processes::run("lifeboat-agent", &["doctor", "--config", &config])
        .await
        .unwrap();
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), report["checks"].as_array().unwrap().len() + 1, "{text}");
    assert!(lines.iter().any(|line| line.starts_with("ok    jail ")), "{text}");
    assert!(lines.last().unwrap().starts_with("ready for drills:"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_the_sandbox_user_cannot_read_is_named_with_the_fix() {
    let setup = setup("").await;
    std::fs::set_permissions(
        setup.backups.join("app-1.sqlite"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (code, report, _) = doctor(&setup.agent.config_path, &[]).await;
    assert_eq!(code, 1, "{report:#}");
    let unreadable = find(&report, "backups", "read by lifeboat-sandbox");
    assert_eq!(unreadable["status"], "fail");
    let detail = unreadable["detail"].as_str().unwrap();
    assert!(
        detail.contains("app-1.sqlite") && detail.contains("setfacl"),
        "{detail}"
    );

    // An access control list grants what the mode bits do not: the jail's own look decides.
    let granted = std::process::Command::new("setfacl")
        .args(["-m", "u:lifeboat-sandbox:r"])
        .arg(setup.backups.join("app-1.sqlite"))
        .status();
    if granted.is_ok_and(|status| status.success()) {
        let (code, report, _) = doctor(&setup.agent.config_path, &[]).await;
        assert_eq!(code, 0, "{report:#}");
        let readable = find(&report, "backups", "read by lifeboat-sandbox")["detail"]
            .as_str()
            .unwrap();
        assert!(readable.contains("access control lists"), "{readable}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_tool_names_its_package() {
    let setup = setup(
        r#"
[[backup]]
name = "app-restic"
asset = "app"
kind = "restic"
path = "/nonexistent/restic-repository"
password_env = "RESTIC_PASSWORD"
"#,
    )
    .await;
    // A PATH with bubblewrap and the basics but no restic.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["bwrap", "sqlite3", "tar", "useradd", "psql"] {
        if let Some(found) = lifeboat_agent::capabilities::find_in_path(tool) {
            std::os::unix::fs::symlink(found, bin.path().join(tool)).unwrap();
        }
    }
    let path = bin.path().display().to_string();
    let (code, report, _) = doctor(&setup.agent.config_path, &[("PATH", &path)]).await;
    assert_eq!(code, 1, "{report:#}");
    let restic = find(&report, "tools", "restic");
    assert_eq!(restic["status"], "fail");
    assert!(
        restic["detail"].as_str().unwrap().contains("apt-get install restic"),
        "{restic}"
    );
    let source = find(&report, "backups", "app-restic");
    assert_eq!(source["status"], "fail", "{source}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_agent_is_refused() {
    let setup = setup("").await;
    let agents = setup.coordinator.admin_json(&["agents", "list"]).await.unwrap();
    let agent_id = agents[0]["id"]
        .as_str()
        .or_else(|| agents[0]["agent"]["id"].as_str())
        .unwrap_or_else(|| panic!("agent id in {agents:#}"))
        .to_owned();
    let config = setup.coordinator.config_path.display().to_string();
    let (code, _, stderr) = processes::run(
        "lifeboat-coordinator",
        &["agents", "revoke", "--config", &config, &agent_id],
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let (code, report, _) = doctor(&setup.agent.config_path, &[]).await;
    assert_eq!(code, 1, "{report:#}");
    let coordinator = find(&report, "coordinator", &setup.coordinator.url);
    assert_eq!(coordinator["status"], "fail");
    assert!(
        coordinator["detail"].as_str().unwrap().contains("refuses this agent"),
        "{coordinator}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_ten_minutes_ahead_fails() {
    let setup = setup("").await;
    let config = setup.agent.config_path.display().to_string();
    let output = tokio::process::Command::new("faketime")
        .args(["-f", "+10m"])
        .arg(processes::binary("lifeboat-agent"))
        .args(["doctor", "--output", "json", "--config", &config])
        .output()
        .await
        .expect("faketime");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let clock = find(&report, "coordinator", "clock");
    assert_eq!(clock["status"], "fail", "{clock}");
    let detail = clock["detail"].as_str().unwrap();
    let offset: f64 = detail
        .split(' ')
        .next()
        .and_then(|seconds| seconds.parse().ok())
        .expect("offset first");
    assert!(
        (590.0..=610.0).contains(&offset) && detail.contains("tolerates"),
        "{detail}"
    );
}
