//! "Would you know it happened?" A running agent compares each posture scan with the previous
//! one and reports through its session: half the dumps deleted → `backup.vanished`; the
//! production database dropped → `asset.missing`, naming the newest safe recovery point and the
//! runbook of its last passing restore test.

use std::path::Path;
use std::time::Duration;

use lifeboat_coordinator::store::Store;
use lifeboat_shared::findings::FindingKind;
use lifeboat_shared::protocol::{ResultKind, RunResult};
use lifeboat_tests::postgres::PgCluster;
use lifeboat_tests::processes::{self, AgentProcess, CoordinatorProcess};
use lifeboat_tests::volume::OtherVolume;

async fn dump_days_ago(cluster: &PgCluster, database: &str, out: &Path, days: u32) {
    let output = tokio::process::Command::new("faketime")
        .arg("-f")
        .arg(format!("-{days}d"))
        .arg(cluster.bin_dir().join("pg_dump"))
        .args(["-Fc", "-f"])
        .arg(out)
        .arg(cluster.url(database))
        .output()
        .await
        .expect("run pg_dump under faketime");
    assert!(
        output.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits for a posture result of `asset` that satisfies `wanted`.
async fn posture_result(store: &Store, asset: &str, wanted: impl Fn(&RunResult) -> bool) -> Option<RunResult> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while tokio::time::Instant::now() < deadline {
        if let Ok(results) = store.results_for_asset(asset, 50).await
            && let Some(found) = results
                .into_iter()
                .map(|stored| stored.result)
                .find(|result| result.kind == ResultKind::Posture && wanted(result))
        {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

fn has(result: &RunResult, kind: FindingKind) -> bool {
    result.findings.iter().any(|finding| finding.kind == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_backups_and_a_dropped_database_are_reported_between_scans() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = PgCluster::start().await.expect("cluster");
    cluster.create_database("rentals").await.expect("db");
    cluster
        .psql("rentals", lifeboat_tests::rentals::SCHEMA_AND_DATA)
        .await
        .expect("data");
    cluster
        .psql(
            "postgres",
            "CREATE ROLE lifeboat_ro LOGIN PASSWORD 'lifeboat-ro'; GRANT pg_read_all_data, pg_read_all_settings TO lifeboat_ro;",
        )
        .await
        .expect("role");
    let url = format!(
        "postgres://lifeboat_ro:lifeboat-ro@127.0.0.1:{}/rentals",
        cluster.port()
    );
    let offsite = OtherVolume::mount(256).expect("another volume");
    let dumps = offsite.dir("rentals");
    for day in 1..=6 {
        dump_days_ago(&cluster, "rentals", &dumps.join(format!("rentals-day{day}.dump")), day).await;
    }

    let coordinator = CoordinatorProcess::start(dir.path(), None).await.expect("coordinator");
    let mut agent = AgentProcess::enroll(&dir.path().join("agent"), &coordinator, "pocketos-prod")
        .await
        .expect("enroll");
    agent
        .append_config(&format!(
            r#"
[[asset]]
name = "rentals-db"
kind = "postgres"
url = "{url}"
rpo = "48h"

[[backup]]
name = "rentals-nightly"
asset = "rentals-db"
kind = "pg_dump_dir"
path = "{dumps}"
retention = "30d"
location = {{ provider = "hetzner", host = "backup-nas" }}

[[test]]
asset = "rentals-db"
schedule = "0 3 * * *"
timeout = "10m"

  [[test.check]]
  name = "bookings exist"
  sql = "select count(*) > 1000 from bookings"

[scan]
interval = "2s"
"#,
            dumps = dumps.display()
        ))
        .expect("config");

    // A restore test first (the operator's `check`), so there is a tested runbook to hand over.
    let config = agent.config_path.display().to_string();
    let (code, stdout, stderr) = processes::run("lifeboat-agent", &["check", "--config", &config, "--output", "json"])
        .await
        .expect("check");
    assert_eq!(code, 0, "recoverable to begin with: {stdout}\n{stderr}");

    agent.start().expect("start the agent");
    let store = Store::connect(&coordinator.sqlite_url()).await.expect("store");
    let quiet = posture_result(&store, "rentals-db", |_| true).await;
    let quiet = quiet.unwrap_or_else(|| panic!("no posture result arrived:\n{}", agent.log_text()));
    assert!(!has(&quiet, FindingKind::BackupVanished), "{:?}", quiet.findings);
    assert!(!has(&quiet, FindingKind::AssetMissing), "{:?}", quiet.findings);

    // Someone deletes half the dumps (the three newest).
    for day in 1..=3 {
        std::fs::remove_file(dumps.join(format!("rentals-day{day}.dump"))).expect("delete a dump");
    }
    let vanished = posture_result(&store, "rentals-db", |result| has(result, FindingKind::BackupVanished))
        .await
        .unwrap_or_else(|| panic!("backup.vanished never arrived:\n{}", agent.log_text()));
    let finding = vanished
        .findings
        .iter()
        .find(|finding| finding.kind == FindingKind::BackupVanished)
        .expect("finding");
    assert_eq!(finding.subject, "rentals-nightly");
    assert_eq!(finding.evidence["vanished_count"], 3, "{finding:?}");
    assert!(
        finding.message.starts_with("3 recovery points of rentals-nightly"),
        "{}",
        finding.message
    );

    // Then the production database is dropped.
    cluster
        .psql("postgres", "DROP DATABASE rentals WITH (FORCE)")
        .await
        .expect("drop");
    let missing = posture_result(&store, "rentals-db", |result| has(result, FindingKind::AssetMissing))
        .await
        .unwrap_or_else(|| panic!("asset.missing never arrived:\n{}", agent.log_text()));
    let finding = missing
        .findings
        .iter()
        .find(|finding| finding.kind == FindingKind::AssetMissing)
        .expect("finding");
    assert!(finding.message.contains("does not exist"), "{}", finding.message);
    assert!(
        finding.message.contains("Newest safe recovery point"),
        "{}",
        finding.message
    );
    // The last passing test restored the newest dump of the time: day 1, now deleted; the newest
    // safe recovery point that still exists is day 4, and the runbook is the tested one.
    assert_eq!(
        finding.evidence["newest_safe_recovery_point"]["recovery_point"],
        "rentals-day4.dump"
    );
    let runbook = finding.evidence["runbook"].as_array().expect("runbook");
    assert!(
        runbook
            .iter()
            .any(|step| step.as_str().is_some_and(|step| step.contains("pg_restore"))),
        "{runbook:?}"
    );
    agent.kill().await;
}
