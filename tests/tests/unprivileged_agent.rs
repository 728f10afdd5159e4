//! The agent as the shipped systemd unit runs it: an unprivileged user holding only the
//! capabilities the unit grants (`CAP_SETUID CAP_SETGID CAP_CHOWN CAP_KILL CAP_DAC_OVERRIDE`,
//! ambient). Its restores still run in the jail as `lifeboat-sandbox`; without the capabilities
//! it says what it needs instead of judging the backup.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use lifeboat_tests::agent_check::{asset, finding_kinds, grant_sandbox_read};
use lifeboat_tests::postgres::PgCluster;
use lifeboat_tests::processes::binary;

/// The unprivileged user the tests run the agent as.
const AGENT_USER: &str = "lifeboat-agent-test";
/// The capabilities of the shipped unit, as `setpriv` names them.
const UNIT_CAPABILITIES: &str = "+setuid,+setgid,+chown,+kill,+dac_override";

/// Creates a system user if it does not exist (as an installer would).
fn ensure_user(name: &str) {
    let exists = Command::new("id")
        .arg(name)
        .output()
        .is_ok_and(|output| output.status.success());
    if !exists {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .status()
            .expect("useradd");
        assert!(status.success(), "useradd {name}");
    }
}

/// Runs `lifeboat-agent check` as [`AGENT_USER`], with `capabilities` ambient (or none).
fn check_as_agent_user(config: &Path, capabilities: Option<&str>) -> (i32, serde_json::Value, String) {
    let mut command = Command::new("setpriv");
    command.args(["--reuid", AGENT_USER, "--regid", AGENT_USER, "--init-groups"]);
    if let Some(capabilities) = capabilities {
        command
            .arg(format!("--inh-caps={capabilities}"))
            .arg(format!("--ambient-caps={capabilities}"));
    }
    let output = command
        .arg("--")
        .arg(binary("lifeboat-agent"))
        .args(["check", "--config"])
        .arg(config)
        .args(["--output", "json"])
        .env_remove("RUNTIME_DIRECTORY")
        .output()
        .expect("setpriv");
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (
        output.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprivileged_agent_with_the_units_capabilities_restores_in_the_jail() {
    ensure_user("lifeboat-sandbox");
    ensure_user(AGENT_USER);
    let cluster = PgCluster::start().await.expect("cluster");
    cluster.create_database("shop").await.expect("db");
    cluster
        .psql(
            "shop",
            "CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 50)",
        )
        .await
        .expect("data");

    // The agent's own directory, owned by its user, as StateDirectory= makes it.
    let dir = tempfile::Builder::new().prefix("lb-unpriv-").tempdir().expect("dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).expect("mkdir");
    let dump = tokio::process::Command::new(cluster.bin_dir().join("pg_dump"))
        .args(["-Fc", "-f"])
        .arg(backups.join("shop.dump"))
        .arg(cluster.url("shop"))
        .output()
        .await
        .expect("pg_dump");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    grant_sandbox_read(&backups);
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let chown = Command::new("chown")
        .arg(format!("{AGENT_USER}:{AGENT_USER}"))
        .arg(&work)
        .status()
        .expect("chown");
    assert!(chown.success());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[agent]
coordinator = "https://127.0.0.1:1"
identity_dir = "{work}/identity"
work_dir = "{work}"

[[asset]]
name = "shop"
kind = "postgres"
url = "{url}"

[[backup]]
name = "shop-dumps"
asset = "shop"
kind = "pg_dump_dir"
path = "{backups}"
location = {{ host = "backup-nas" }}

[[test]]
asset = "shop"
schedule = "0 * * * *"

  [[test.check]]
  name = "orders"
  sql = "select count(*) = 50 from orders"

  [[test.check]]
  name = "the jail holds no capability"
  command = 'test "$(grep CapEff /proc/self/status | cut -f2)" = 0000000000000000'
"#,
            work = work.display(),
            url = cluster.url("shop"),
            backups = backups.display()
        ),
    )
    .expect("config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let (code, report, stderr) = check_as_agent_user(&config, Some(UNIT_CAPABILITIES));
    let shop = asset(&report, "shop");
    let run = &shop["runs"][0];
    assert_eq!(run["outcome"], "passed", "{stderr}\n{report:#}");
    assert!(
        run["checks"]
            .as_array()
            .is_some_and(|checks| checks.iter().all(|check| check["passed"] == true)),
        "{run:#}"
    );
    assert!(code == 0 || code == 1, "{stderr}");

    // Without the capabilities the agent cannot start the jail: it says so, and does not blame
    // the backup.
    let (code, report, stderr) = check_as_agent_user(&config, None);
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let shop = asset(&report, "shop");
    let kinds = finding_kinds(shop);
    assert!(kinds.contains(&"agent.misconfigured".to_owned()), "{shop:#}");
    assert!(!kinds.contains(&"backup.unrecoverable".to_owned()), "{shop:#}");
    let message = shop["findings"]
        .as_array()
        .and_then(|findings| findings.iter().find(|finding| finding["kind"] == "agent.misconfigured"))
        .map(|finding| finding["message"].to_string())
        .unwrap_or_default();
    assert!(message.contains("CAP_SETUID"), "{message}");
}
