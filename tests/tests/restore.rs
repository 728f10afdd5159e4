//! The restore engine end to end: a real "production" PostgreSQL cluster loaded with the Chinook
//! database (tests/fixtures, MIT), real pg_dump outputs in every format, and `lifeboat-agent
//! check` as a process. Production runs with `log_statement = 'all'`: the tests assert that the
//! agent sent it nothing but reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_tests::agent_check::{agent_config, asset, check, finding_kinds};
use lifeboat_tests::postgres::PgCluster;
use lifeboat_tests::processes;
use lifeboat_tests::volume::OtherVolume;

const CHINOOK_SQL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/chinook-postgres/Chinook_PostgreSql.sql"
);

struct Production {
    cluster: PgCluster,
    /// The agent's config and work directory.
    dir: tempfile::TempDir,
    /// The backups: another volume than the cluster's data directory, declared as another host
    /// (as an NFS mount of a backup server would be), so they lie outside its blast radius.
    offsite: OtherVolume,
}

impl Production {
    /// A production cluster with the Chinook database, logging every statement with its
    /// application name.
    async fn start() -> Self {
        let cluster = PgCluster::start().await.expect("cluster");
        cluster
            .psql_file("postgres", Path::new(CHINOOK_SQL))
            .await
            .expect("load chinook");
        cluster
            .psql("postgres", "ALTER SYSTEM SET log_statement = 'all'")
            .await
            .expect("log_statement");
        cluster
            .psql("postgres", "ALTER SYSTEM SET log_line_prefix = 'app=%a '")
            .await
            .expect("prefix");
        cluster
            .psql("postgres", "SELECT pg_reload_conf()")
            .await
            .expect("reload");
        Self {
            cluster,
            dir: tempfile::tempdir().expect("dir"),
            offsite: OtherVolume::mount(2048).expect("mount another volume"),
        }
    }

    fn url(&self) -> String {
        self.cluster.url("chinook")
    }

    /// Runs pg_dump of `database` with `args` into `out`.
    async fn dump(&self, database: &str, args: &[&str], out: &Path) {
        std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
        let output = tokio::process::Command::new(self.cluster.bin_dir().join("pg_dump"))
            .args(args)
            .arg("-f")
            .arg(out)
            .arg(self.cluster.url(database))
            .output()
            .await
            .expect("pg_dump");
        assert!(
            output.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn backup_dir(&self, name: &str) -> PathBuf {
        self.offsite.dir(&format!("backups/{name}"))
    }

    /// Every statement the agent sent to production (from the server log).
    fn agent_statements(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.cluster.log_path()).unwrap_or_default();
        log.lines()
            .filter(|line| line.contains("app=lifeboat-agent") && line.contains("statement: "))
            .filter_map(|line| {
                line.split_once("statement: ")
                    .map(|(_, statement)| statement.to_owned())
            })
            .collect()
    }

    /// Asserts the agent sent production nothing but reads.
    fn assert_read_only(&self) {
        let statements = self.agent_statements();
        for statement in &statements {
            let lower = statement.trim_start().to_lowercase();
            assert!(
                lower.starts_with("select") || lower.starts_with("show") || lower.starts_with("with"),
                "the agent sent production a non-read statement: {statement}"
            );
        }
    }
}

fn postgres_asset(name: &str, url: &str, backup_dir: &Path, checks: &str) -> String {
    format!(
        r#"
[[asset]]
name = "{name}"
kind = "postgres"
url = "{url}"
rpo = "24h"
rto = "30m"
freshness = "invoice.invoice_date"

[[backup]]
name = "{name}-dumps"
asset = "{name}"
kind = "pg_dump_dir"
path = "{}"
location = {{ host = "backup-nas" }}

[[test]]
asset = "{name}"
schedule = "0 */6 * * *"
timeout = "10m"
{checks}
"#,
        backup_dir.display()
    )
}

const CHECKS: &str = r#"
  [[test.check]]
  name = "412 invoices"
  sql = "select count(*) = 412 from invoice"

  [[test.check]]
  name = "revenue"
  sql = "select sum(total) from invoice"
  min = 2328.5
  max = 2328.7

  [[test.check]]
  name = "row counts match production"
  row_counts = { tables = ["invoice", "invoice_line", "track", "customer"], tolerance = "1%" }

  [[test.check]]
  name = "schema"
  schema = true

  [[test.check]]
  name = "no corruption"
  integrity = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dump_format_restores_and_passes_its_checks() {
    let production = Production::start().await;
    let formats: [(&str, &[&str], &str); 5] = [
        ("custom", &["-Fc"], "chinook.dump"),
        ("directory", &["-Fd"], "chinook.dir"),
        ("tar", &["-Ft"], "chinook.tar"),
        ("plain", &["-Fp"], "chinook.sql"),
        ("plain-gz", &["-Fp", "-Z", "6"], "chinook.sql.gz"),
    ];
    let mut body = String::new();
    for (name, args, file) in formats {
        let dir = production.backup_dir(name);
        production.dump("chinook", args, &dir.join(file)).await;
        body.push_str(&postgres_asset(
            &format!("chinook-{name}"),
            &production.url(),
            &dir,
            CHECKS,
        ));
    }
    let config = agent_config(production.dir.path(), &body);
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 0, "check failed:\n{stderr}\n{report:#}");
    assert_eq!(report["recoverable"], true);
    for (name, _, _) in formats {
        let asset = asset(&report, &format!("chinook-{name}"));
        assert_eq!(asset["recoverable"], true, "{asset:#}");
        let run = &asset["runs"][0];
        assert_eq!(run["outcome"], "passed", "{run:#}");
        assert!(run["restore_seconds"].as_f64().expect("restore_seconds") > 0.0);
        assert!(run["rto_seconds"].as_f64().expect("rto") >= run["restore_seconds"].as_f64().expect("restore"));
        assert!(run["recovery_point_age_seconds"].as_i64().expect("age") < 3600);
        // Chinook's newest invoice is from 2025: the real data age is reported.
        assert!(run["data_age_seconds"].as_i64().expect("data age") > 0);
        let runbook = run["runbook"].as_array().expect("runbook");
        assert!(runbook.iter().any(|line| {
            let line = line.as_str().unwrap_or_default();
            line.contains("pg_restore") || line.contains("psql")
        }));
        assert!(!runbook.iter().any(|line| {
            line.as_str()
                .unwrap_or_default()
                .contains(production.cluster.password())
        }));
        assert!(
            run["checks"]
                .as_array()
                .expect("checks")
                .iter()
                .all(|c| c["passed"] == true),
            "{run:#}"
        );
    }
    production.assert_read_only();
    assert!(
        !production.agent_statements().is_empty(),
        "row_counts and schema must have read production"
    );
    // Every sandbox was removed.
    let left = lifeboat_tests::agent_check::sandboxes_left(production.dir.path());
    assert!(left.is_empty(), "sandboxes left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_backups_become_findings_not_crashes() {
    let production = Production::start().await;
    let mut body = String::new();

    // Truncated custom dump.
    let truncated = production.backup_dir("truncated");
    production
        .dump("chinook", &["-Fc"], &truncated.join("chinook.dump"))
        .await;
    let bytes = std::fs::read(truncated.join("chinook.dump")).expect("read");
    std::fs::write(truncated.join("chinook.dump"), &bytes[..bytes.len() / 2]).expect("truncate");
    body.push_str(&postgres_asset("truncated", &production.url(), &truncated, CHECKS));

    // One flipped byte in the middle of a custom dump.
    let flipped = production.backup_dir("flipped");
    production
        .dump("chinook", &["-Fc"], &flipped.join("chinook.dump"))
        .await;
    let mut bytes = std::fs::read(flipped.join("chinook.dump")).expect("read");
    let middle = bytes.len() * 2 / 3;
    bytes[middle] ^= 0xff;
    std::fs::write(flipped.join("chinook.dump"), &bytes).expect("flip");
    body.push_str(&postgres_asset("flipped", &production.url(), &flipped, CHECKS));

    // A plain dump whose SQL fails half-way.
    let plain = production.backup_dir("plain-broken");
    production.dump("chinook", &["-Fp"], &plain.join("chinook.sql")).await;
    let sql = std::fs::read_to_string(plain.join("chinook.sql")).expect("read");
    let cut = sql.len() / 2;
    let broken = format!("{}\nTHIS IS NOT SQL;\n{}", &sql[..cut], &sql[cut..]);
    std::fs::write(plain.join("chinook.sql"), broken).expect("write");
    body.push_str(&postgres_asset("plain-broken", &production.url(), &plain, CHECKS));

    // An empty backup directory.
    let empty = production.backup_dir("empty");
    body.push_str(&postgres_asset("empty", &production.url(), &empty, CHECKS));

    let config = agent_config(production.dir.path(), &body);
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 1, "not recoverable must exit 1:\n{stderr}\n{report:#}");
    assert_eq!(report["recoverable"], false);
    for name in ["truncated", "flipped", "plain-broken"] {
        let asset = asset(&report, name);
        assert_eq!(asset["recoverable"], false, "{asset:#}");
        let kinds = finding_kinds(asset);
        assert!(
            kinds.contains(&"backup.unrecoverable".to_owned()) || kinds.contains(&"restore.check_failed".to_owned()),
            "{name}: {asset:#}"
        );
        let message = asset["findings"][0]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty());
    }
    let empty = asset(&report, "empty");
    let kinds = finding_kinds(empty);
    assert_eq!(kinds.first().map(String::as_str), Some("backup.missing"), "{kinds:?}");
    // The test connects to production as a superuser, and the agent says so.
    assert!(kinds.contains(&"agent.self_scope".to_owned()), "{kinds:?}");
    assert!(
        empty["findings"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("No backup of empty")
    );
    production.assert_read_only();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_corrupt_older_good_names_the_good_one() {
    let production = Production::start().await;
    let dir = production.backup_dir("nightly");
    production
        .dump("chinook", &["-Fc"], &dir.join("chinook-older.dump"))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    production
        .dump("chinook", &["-Fc"], &dir.join("chinook-newest.dump"))
        .await;
    let bytes = std::fs::read(dir.join("chinook-newest.dump")).expect("read");
    std::fs::write(dir.join("chinook-newest.dump"), &bytes[..bytes.len() / 3]).expect("truncate");

    let config = agent_config(
        production.dir.path(),
        &postgres_asset("rentals-db", &production.url(), &dir, CHECKS),
    );
    let (code, report, stderr) = check(&config).await;
    let asset = asset(&report, "rentals-db");
    // The older backup restores and is within the RPO: still recoverable, with a high finding.
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(asset["recoverable"], true);
    let finding = asset["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "backup.unrecoverable"))
        .unwrap_or_else(|| panic!("no backup.unrecoverable: {asset:#}"));
    assert_eq!(finding["severity"], "high");
    let message = finding["message"].as_str().unwrap_or_default();
    assert!(message.contains("chinook-newest.dump"), "{message}");
    assert!(
        message.contains("chinook-older.dump"),
        "the good backup is named: {message}"
    );
    assert_eq!(asset["runs"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_rows_fail_a_check_and_schema_changes_are_drift() {
    let production = Production::start().await;
    // A backup taken from a copy that lost most invoice lines.
    production
        .cluster
        .psql("postgres", "CREATE DATABASE shrunk TEMPLATE chinook")
        .await
        .expect("copy");
    production
        .cluster
        .psql("shrunk", "DELETE FROM invoice_line WHERE invoice_line_id > 100")
        .await
        .expect("delete");
    let shrunk = production.backup_dir("shrunk");
    production.dump("shrunk", &["-Fc"], &shrunk.join("shrunk.dump")).await;
    // A faithful backup, after which production's schema changes.
    let faithful = production.backup_dir("faithful");
    production
        .dump("chinook", &["-Fc"], &faithful.join("chinook.dump"))
        .await;
    production
        .cluster
        .psql("chinook", "ALTER TABLE invoice ADD COLUMN deposit numeric(10,2)")
        .await
        .expect("alter");

    let mut body = postgres_asset("shrunk", &production.url(), &shrunk, CHECKS);
    body.push_str(&postgres_asset("faithful", &production.url(), &faithful, CHECKS));
    let config = agent_config(production.dir.path(), &body);
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 1, "{stderr}\n{report:#}");

    let shrunk = asset(&report, "shrunk");
    assert_eq!(shrunk["recoverable"], false);
    let failed = shrunk["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "restore.check_failed"))
        .unwrap_or_else(|| panic!("{shrunk:#}"));
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("row counts match production") && message.contains("invoice_line"),
        "{message}"
    );

    let faithful = asset(&report, "faithful");
    assert_eq!(faithful["recoverable"], true, "{faithful:#}");
    let drift = faithful["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "drift.detected"))
        .unwrap_or_else(|| panic!("{faithful:#}"));
    assert!(
        drift["message"].as_str().unwrap_or_default().contains("deposit"),
        "{drift:#}"
    );
    production.assert_read_only();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_against_the_sandbox_answers_http() {
    let production = Production::start().await;
    let dir = production.backup_dir("app");
    production.dump("chinook", &["-Fc"], &dir.join("chinook.dump")).await;
    // A small application written for this test: serves /health with the invoice count it reads
    // from SANDBOX_DATABASE_URL through psql.
    let app_dir = production.dir.path().join("app");
    std::fs::create_dir_all(&app_dir).expect("mkdir app");
    let app = app_dir.join("app.py");
    std::fs::write(
        &app,
        format!(
            r#"import http.server, os, subprocess, sys
PSQL = "{psql}"
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        count = subprocess.run([PSQL, "-X", "-At", "-d", os.environ["SANDBOX_DATABASE_URL"], "-c", "select count(*) from invoice"], capture_output=True, text=True).stdout.strip()
        status = 200 if self.path == "/health" and count == "412" else 503
        self.send_response(status); self.end_headers(); self.wfile.write(("invoices=" + count).encode())
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#,
            psql = production.cluster.bin_dir().join("psql").display()
        ),
    )
    .expect("app");
    // The application's own files are all it sees of this machine besides /usr.
    lifeboat_tests::agent_check::grant_sandbox_read(&app_dir);
    let checks = format!(
        r#"
  [[test.check]]
  name = "app serves invoices"
  service = "python3 {} {{port}}"
  http = "http://127.0.0.1:{{port}}/health"
  expect_status = 200
  expect_body = "invoices=412"
  paths = ["{}"]
"#,
        app.display(),
        app_dir.display()
    );
    let config = agent_config(
        production.dir.path(),
        &postgres_asset("app-db", &production.url(), &dir, &checks),
    );
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let check = &asset(&report, "app-db")["runs"][0]["checks"][0];
    assert_eq!(check["passed"], true, "{check:#}");
}

#[tokio::test]
async fn check_exit_codes_follow_the_contract() {
    let dir = tempfile::tempdir().expect("dir");
    // Exit 2: the config is wrong (a test of an asset nobody declared), nothing runs.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[agent]\n\n[[test]]\nasset = \"ghost\"\nschedule = \"@daily\"\n").expect("write");
    let (code, _, stderr) = check(&bad).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.toml:4:") && stderr.contains("ghost"), "{stderr}");
    // Exit 1 with a JSON report: an asset with no backups is not recoverable.
    let empty = dir.path().join("none");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let config = agent_config(
        dir.path(),
        &postgres_asset("db", "postgres://127.0.0.1:1/x", &empty, ""),
    );
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(report["recoverable"], false);
    let kinds = finding_kinds(asset(&report, "db"));
    assert_eq!(kinds.first().map(String::as_str), Some("backup.missing"), "{kinds:?}");
    // Nothing answers on port 1, and the (empty) backup directory is on the same host.
    assert!(kinds.contains(&"asset.missing".to_owned()), "{kinds:?}");
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
                .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
                .filter(|cmdline| cmdline.contains(needle))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_restore_leaves_an_orphan_the_next_start_removes() {
    let production = Production::start().await;
    // Enough data that the restore takes a few seconds.
    let pgbench = production.cluster.bin_dir().join("pgbench");
    production
        .cluster
        .psql("postgres", "CREATE DATABASE bench")
        .await
        .expect("db");
    let output = tokio::process::Command::new(&pgbench)
        .args(["-i", "-s", "10", "-q"])
        .arg(production.cluster.url("bench"))
        .output()
        .await
        .expect("pgbench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let dir = production.backup_dir("bench");
    production.dump("bench", &["-Fc"], &dir.join("bench.dump")).await;
    let body = format!(
        r#"
[[asset]]
name = "bench"
kind = "postgres"
url = "{}"

[[backup]]
name = "bench-dumps"
asset = "bench"
kind = "pg_dump_dir"
path = "{}"
location = {{ host = "backup-nas" }}

[[test]]
asset = "bench"
schedule = "0 * * * *"

  [[test.check]]
  name = "accounts"
  sql = "select count(*) = 1000000 from pgbench_accounts"
"#,
        production.cluster.url("bench"),
        dir.display()
    );
    let config = agent_config(production.dir.path(), &body);
    let sandboxes = production.dir.path().join("agent-work/sandboxes");
    let log = production.dir.path().join("killed-agent.log");
    let config_arg = config.display().to_string();
    let agent = processes::ChildProcess::spawn("lifeboat-agent", &["check", "--config", &config_arg], &log, &[])
        .expect("start check");
    let sandbox_root = sandboxes.display().to_string();
    let restoring = lifeboat_tests::eventually(Duration::from_secs(60), || {
        let running = processes_mentioning(&sandbox_root);
        async move { running.iter().any(|cmdline| cmdline.contains("postgres")) }
    })
    .await;
    assert!(
        restoring,
        "no sandbox server appeared:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.kill().await;
    // The orphan: the sandbox directory outlives the killed agent; its jail does not (it dies
    // with its parent, taking the server with it).
    let orphans = lifeboat_tests::agent_check::sandboxes_left(production.dir.path());
    assert!(!orphans.is_empty(), "the kill left no orphan; the test proves nothing");
    let jail_died = lifeboat_tests::eventually(Duration::from_secs(10), || {
        let running = processes_mentioning(&sandbox_root);
        async move { running.is_empty() }
    })
    .await;
    assert!(
        jail_died,
        "processes outlived the killed agent: {:?}",
        processes_mentioning(&sandbox_root)
    );

    // The next start sweeps it, then runs the test to completion.
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let left = lifeboat_tests::agent_check::sandboxes_left(production.dir.path());
    assert!(left.is_empty(), "sandboxes left: {left:?}");
    let still_running = processes_mentioning(&sandbox_root);
    assert!(still_running.is_empty(), "processes left: {still_running:?}");
}

const CHINOOK_SQLITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/chinook-sqlite/Chinook_Sqlite.sqlite"
);

#[tokio::test]
async fn sqlite_copies_restore_and_production_is_opened_read_only() {
    let dir = tempfile::tempdir().expect("dir");
    let production = dir.path().join("prod/chinook.sqlite");
    std::fs::create_dir_all(production.parent().expect("parent")).expect("mkdir");
    std::fs::copy(CHINOOK_SQLITE, &production).expect("copy");
    let before = std::fs::read(&production).expect("read");
    let offsite = OtherVolume::mount(64).expect("mount another volume");
    let backups = offsite.dir("sqlite-backups");
    std::fs::copy(CHINOOK_SQLITE, backups.join("chinook-good.sqlite")).expect("copy");
    let broken = dir.path().join("sqlite-broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    let bytes = std::fs::read(CHINOOK_SQLITE).expect("read");
    std::fs::write(broken.join("chinook.sqlite"), &bytes[..bytes.len() / 2]).expect("truncate");

    let sqlite_asset = |name: &str, backup_dir: &Path| {
        format!(
            r#"
[[asset]]
name = "{name}"
kind = "sqlite"
path = "{}"

[[backup]]
name = "{name}-copies"
asset = "{name}"
kind = "sqlite_dir"
path = "{}"
location = {{ host = "backup-nas" }}

[[test]]
asset = "{name}"
schedule = "0 * * * *"

  [[test.check]]
  name = "412 invoices"
  sql = "select count(*) = 412 from Invoice"

  [[test.check]]
  name = "revenue"
  sql = "select round(sum(Total), 2) from Invoice"
  min = 2328.5
  max = 2328.7

  [[test.check]]
  name = "row counts"
  row_counts = {{ tables = ["Invoice", "Track"] }}

  [[test.check]]
  name = "schema"
  schema = true

  [[test.check]]
  name = "integrity"
  integrity = true
"#,
            production.display(),
            backup_dir.display()
        )
    };
    let mut body = sqlite_asset("chinook-sqlite", &backups);
    body.push_str(&sqlite_asset("chinook-broken", &broken));
    let config = agent_config(dir.path(), &body);
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let good = asset(&report, "chinook-sqlite");
    assert_eq!(good["recoverable"], true, "{good:#}");
    assert!(
        good["runs"][0]["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .all(|c| c["passed"] == true)
    );
    let bad = asset(&report, "chinook-broken");
    assert_eq!(bad["recoverable"], false, "{bad:#}");
    assert!(
        finding_kinds(bad).contains(&"backup.unrecoverable".to_owned()),
        "{bad:#}"
    );
    // Production was opened read-only: not a byte changed, no journal or WAL left beside it.
    assert_eq!(std::fs::read(&production).expect("read"), before);
    let siblings: Vec<_> = std::fs::read_dir(production.parent().expect("parent"))
        .expect("dir")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert_eq!(siblings.len(), 1, "{siblings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_from_a_newer_postgresql_major_is_a_finding_not_a_crash() {
    let production = Production::start().await;
    let dir = production.backup_dir("newer");
    let dump = dir.join("from-the-future.dump");
    production.dump("chinook", &["-Fc"], &dump).await;
    // Rewrite the header as PostgreSQL 17's pg_dump writes it: archive version 1.16 and a
    // server version 17.x (same length, so every offset stays valid).
    let mut bytes = std::fs::read(&dump).expect("read");
    assert_eq!(&bytes[..5], b"PGDMP");
    bytes[6] = 16;
    let header_end = bytes.len().min(256);
    let position = bytes[..header_end]
        .windows(3)
        .position(|window| window == b"15.")
        .expect("server version in header");
    bytes[position..position + 2].copy_from_slice(b"17");
    std::fs::write(&dump, &bytes).expect("write");

    let config = agent_config(
        production.dir.path(),
        &postgres_asset("future", &production.url(), &dir, CHECKS),
    );
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let asset = asset(&report, "future");
    let finding = &asset["findings"][0];
    assert_eq!(finding["kind"], "backup.unrecoverable", "{asset:#}");
    let message = finding["message"].as_str().unwrap_or_default();
    assert!(message.contains("newer") && message.contains("15"), "{message}");
}

const SAKILA_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/sakila-postgres/postgres-sakila-schema.sql"
);
const SAKILA_DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/sakila-postgres/postgres-sakila-insert-data-using-copy.sql"
);

/// A generated rental business: customers and bookings, the newest booking made just now.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sakila_and_a_generated_rental_business_restore_with_business_checks() {
    let production = Production::start().await;
    let cluster = &production.cluster;
    cluster.psql("postgres", "CREATE ROLE postgres").await.expect("role");
    cluster.psql("postgres", "CREATE DATABASE sakila").await.expect("db");
    cluster
        .psql_file("sakila", Path::new(SAKILA_SCHEMA))
        .await
        .expect("sakila schema");
    cluster
        .psql_file("sakila", Path::new(SAKILA_DATA))
        .await
        .expect("sakila data");
    cluster.psql("postgres", "CREATE DATABASE rentals").await.expect("db");
    cluster
        .psql("rentals", lifeboat_tests::rentals::SCHEMA_AND_DATA)
        .await
        .expect("rentals");

    let sakila_dir = production.backup_dir("sakila");
    production
        .dump("sakila", &["-Fc"], &sakila_dir.join("sakila.dump"))
        .await;
    let rentals_dir = production.backup_dir("rentals");
    production
        .dump("rentals", &["-Fd"], &rentals_dir.join("rentals.dir"))
        .await;

    let body = format!(
        r#"
[[asset]]
name = "sakila"
kind = "postgres"
url = "{sakila_url}"
rpo = "24h"
rto = "30m"

[[backup]]
name = "sakila-nightly"
asset = "sakila"
kind = "pg_dump_dir"
path = "{sakila_dir}"
location = {{ host = "backup-nas" }}

[[test]]
asset = "sakila"
schedule = "0 */6 * * *"

  [[test.check]]
  name = "every rental is there"
  sql = "select count(*) = 16044 from rental"

  [[test.check]]
  name = "every payment is there"
  sql = "select count(*) from payment"
  min = 16049
  max = 16049

  [[test.check]]
  name = "row counts match production"
  row_counts = {{ tables = ["rental", "payment", "customer", "film"] }}

[[asset]]
name = "rentals-db"
kind = "postgres"
url = "{rentals_url}"
rpo = "24h"
rto = "30m"
freshness = "bookings.created_at"

[[backup]]
name = "rentals-nightly"
asset = "rentals-db"
kind = "pg_dump_dir"
path = "{rentals_dir}"
location = {{ host = "backup-nas" }}

[[test]]
asset = "rentals-db"
schedule = "0 */6 * * *"

  [[test.check]]
  name = "recent bookings exist"
  sql = "select count(*) > 0 from bookings where created_at > now() - interval '30 days'"

  [[test.check]]
  name = "row counts match production"
  row_counts = {{ tables = ["bookings", "customers"], tolerance = "5%" }}

  [[test.check]]
  name = "a booking can be made"
  transaction = "insert into bookings (customer_id, starts_on, created_at) values (1, current_date, now())"
"#,
        sakila_url = cluster.url("sakila"),
        sakila_dir = sakila_dir.display(),
        rentals_url = cluster.url("rentals"),
        rentals_dir = rentals_dir.display(),
    );
    let config = agent_config(production.dir.path(), &body);
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    for name in ["sakila", "rentals-db"] {
        let asset = asset(&report, name);
        assert_eq!(asset["recoverable"], true, "{asset:#}");
        assert!(
            asset["runs"][0]["checks"]
                .as_array()
                .expect("checks")
                .iter()
                .all(|c| c["passed"] == true)
        );
    }
    // The newest booking was made at load time: the real data age is minutes, not hours.
    let data_age = asset(&report, "rentals-db")["runs"][0]["data_age_seconds"]
        .as_i64()
        .expect("data age");
    assert!((0..3600).contains(&data_age), "data age {data_age}");
    // The transaction check wrote to the sandbox only: production still has 50,000 bookings.
    assert_eq!(
        cluster
            .psql("rentals", "select count(*) from bookings")
            .await
            .expect("count"),
        "50000"
    );
    production.assert_read_only();
}
