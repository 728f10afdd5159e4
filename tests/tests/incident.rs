//! The incident Lifeboat exists for, end to end, with real parts: a production PostgreSQL whose
//! data directory and fresh dumps share one device (which the agent finds out by itself), in a
//! Railway account; an older good dump, 92 days old by its own header (made under faketime), on
//! another volume off Railway; an account-scope Railway token declared to "manage custom domains"
//! and lying in plain text in an unrelated file. `check` says NOT RECOVERABLE with every reason.
//! Then the fixes — a fresh dump on the off-Railway volume, the token removed from the file —
//! and `check` says RECOVERABLE.

use std::path::Path;

use lifeboat_tests::agent_check::{self, asset, finding_kinds};
use lifeboat_tests::postgres::PgCluster;
use lifeboat_tests::volume::OtherVolume;
use serde_json::Value;

/// A Railway account token as Railway issues them (a UUID); generated, so it is no one's.
fn railway_token() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn pg_dump(cluster: &PgCluster, database: &str, out: &Path, days_ago: Option<u32>) {
    let pg_dump = cluster.bin_dir().join("pg_dump");
    let mut command = match days_ago {
        Some(days) => {
            let mut command = tokio::process::Command::new("faketime");
            command.arg("-f").arg(format!("-{days}d")).arg(&pg_dump);
            command
        }
        None => tokio::process::Command::new(&pg_dump),
    };
    let output = command
        .args(["-Fc", "-f"])
        .arg(out)
        .arg(cluster.url(database))
        .output()
        .await
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn finding<'a>(asset: &'a Value, kind: &str) -> &'a Value {
    asset["findings"]
        .as_array()
        .and_then(|findings| findings.iter().find(|finding| finding["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} finding in {asset:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_is_found_before_it_happens_and_the_fix_is_recognised() {
    let cluster = PgCluster::start().await.expect("cluster");
    cluster.create_database("rentals").await.expect("db");
    cluster
        .psql("rentals", lifeboat_tests::rentals::SCHEMA_AND_DATA)
        .await
        .expect("rentals data");
    // Lifeboat's own role reads and sees settings (the data directory), nothing more.
    cluster
        .psql(
            "postgres",
            "CREATE ROLE lifeboat_ro LOGIN PASSWORD 'lifeboat-ro'; \
             GRANT pg_read_all_data, pg_read_all_settings TO lifeboat_ro;",
        )
        .await
        .expect("lifeboat role");
    let url = format!(
        "postgres://lifeboat_ro:lifeboat-ro@127.0.0.1:{}/rentals",
        cluster.port()
    );

    // The fresh "backups": next to the data directory, on the same device. Nothing declares
    // that; the agent must find it.
    let work = tempfile::tempdir().expect("dir");
    let fresh = work.path().join("railway-volume-backups");
    std::fs::create_dir_all(&fresh).expect("mkdir");
    pg_dump(&cluster, "rentals", &fresh.join("rentals-latest.dump"), None).await;
    assert_eq!(
        std::fs::metadata(&fresh)
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .expect("stat"),
        std::fs::metadata(cluster.data_dir())
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .expect("stat"),
        "the test needs the fresh dumps on the data directory's device"
    );
    // The good old dump: 92 days old by its header, on another volume, off Railway.
    let offsite = OtherVolume::mount(256).expect("mount another volume");
    let offsite_dir = offsite.dir("rentals");
    pg_dump(&cluster, "rentals", &offsite_dir.join("rentals-august.dump"), Some(92)).await;

    // The token: declared for custom domains, and lying in an unrelated file (line 3).
    let token = railway_token();
    let app = work.path().join("srv-app");
    std::fs::create_dir_all(app.join("scripts")).expect("mkdir");
    let domains_env = app.join("scripts/domains.env");
    std::fs::write(
        &domains_env,
        format!("# custom domains for the storefront\nDOMAIN=rentals.example.com\nRAILWAY_TOKEN={token}\n"),
    )
    .expect("write token file");
    std::fs::write(app.join("README.md"), "The rentals app.\n").expect("write");

    let body = format!(
        r#"
[[asset]]
name = "rentals-db"
kind = "postgres"
url = "{url}"
location = {{ provider = "railway", account = "pocketos", region = "us-west1" }}
rpo = "24h"
rto = "30m"

[[backup]]
name = "rentals-volume-dumps"
asset = "rentals-db"
kind = "pg_dump_dir"
path = "{fresh}"
location = {{ provider = "railway", account = "pocketos" }}

[[backup]]
name = "rentals-offsite"
asset = "rentals-db"
kind = "pg_dump_dir"
path = "{offsite}"
location = {{ provider = "hetzner", account = "pocketos-backups", host = "backup-nas" }}

[[test]]
asset = "rentals-db"
schedule = "0 */6 * * *"
timeout = "10m"

  [[test.check]]
  name = "bookings exist"
  sql = "select count(*) > 1000 from bookings"

[[credential]]
name = "railway-domains-token"
kind = "railway"
token_type = "account"
account = "pocketos"
purpose = "manage custom domains"
value = "${{RAILWAY_TOKEN}}"

[scan]
paths = ["{app}"]
"#,
        fresh = fresh.display(),
        offsite = offsite_dir.display(),
        app = app.display(),
    );
    let config = agent_check::agent_config(work.path(), &body);
    let env = [("RAILWAY_TOKEN", token.as_str())];

    // Before: not recoverable, with every reason.
    let (code, report, stderr) = agent_check::check_with_env(&config, &env).await;
    assert_eq!(code, 1, "not recoverable: {report:#}\n{stderr}");
    let rentals = asset(&report, "rentals-db");
    assert_eq!(rentals["recoverable"], false);
    let kinds = finding_kinds(rentals);
    for kind in [
        "backup.co_located",
        "backup.stale",
        "credential.exposed",
        "credential.destructive_scope",
        "credential.purpose_mismatch",
        "blast_radius.shared",
    ] {
        assert!(
            kinds.contains(&kind.to_owned()),
            "{kind} missing from {kinds:?}\n{rentals:#}"
        );
    }
    // Worst first.
    let severities: Vec<&str> = rentals["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|finding| finding["severity"].as_str().unwrap_or(""))
        .collect();
    let rank = |severity: &str| {
        ["info", "medium", "high", "critical"]
            .iter()
            .position(|s| *s == severity)
    };
    assert!(
        severities.windows(2).all(|pair| rank(pair[0]) >= rank(pair[1])),
        "{severities:?}"
    );

    // The co-location was detected, not declared: the same device for data directory and dumps.
    let co_located = rentals["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|finding| finding["kind"] == "backup.co_located" && finding["subject"] == "rentals-volume-dumps")
        .expect("co-located fresh dumps");
    assert_eq!(co_located["evidence"]["shares"], "volume", "{co_located:#}");
    let asset_device = &co_located["evidence"]["asset_location"]["detected"]["device"];
    assert!(asset_device.is_string(), "{co_located:#}");
    assert_eq!(
        asset_device,
        &co_located["evidence"]["backup_location"]["detected"]["device"]
    );

    let stale = finding(rentals, "backup.stale");
    let message = stale["message"].as_str().expect("message");
    assert!(message.contains("92 days"), "{message}");
    assert!(message.contains("blast radius"), "{message}");

    let exposed = finding(rentals, "credential.exposed");
    assert_eq!(
        exposed["evidence"]["path"],
        domains_env.display().to_string(),
        "{exposed:#}"
    );
    assert_eq!(exposed["evidence"]["line"], 3);
    let shared = finding(rentals, "blast_radius.shared");
    let message = shared["message"].as_str().expect("message");
    assert!(message.contains("92 days"), "{message}");
    assert!(
        message.contains(&domains_env.display().to_string()),
        "says where it was found: {message}"
    );
    let mismatch = finding(rentals, "credential.purpose_mismatch");
    assert!(
        mismatch["message"]
            .as_str()
            .expect("message")
            .contains("manage custom domains")
    );

    // The runs: the fresh dump restored fine (it is just in the wrong place); the offsite one too.
    let runs = rentals["runs"].as_array().expect("runs");
    assert!(
        runs.iter()
            .any(|run| run["backup"] == "rentals-volume-dumps" && run["outcome"] == "passed")
    );
    assert!(
        runs.iter()
            .any(|run| run["backup"] == "rentals-offsite" && run["outcome"] == "passed")
    );

    // What an operator reads (shown with --nocapture).
    let config_arg = config.display().to_string();
    let (_, human, _) = lifeboat_tests::processes::run_with_env(
        "lifeboat-agent",
        &["check", "--config", &config_arg, "--output", "text"],
        &env,
    )
    .await
    .expect("check as text");
    eprintln!("{human}");
    assert!(human.contains("rentals-db: NOT RECOVERABLE"), "{human}");
    assert!(!human.contains(&token), "the token leaked into the text report");

    // The secret never appears in the output.
    let text = report.to_string();
    assert!(!text.contains(&token), "the token leaked into the report");
    assert!(!stderr.contains(&token), "the token leaked into the log");

    // The fixes: a fresh dump off Railway, and the token out of the file.
    pg_dump(&cluster, "rentals", &offsite_dir.join("rentals-today.dump"), None).await;
    std::fs::write(
        &domains_env,
        "# custom domains for the storefront\nDOMAIN=rentals.example.com\n",
    )
    .expect("remove the token");

    let (code, report, stderr) = agent_check::check_with_env(&config, &env).await;
    let rentals = asset(&report, "rentals-db");
    assert_eq!(code, 0, "recoverable after the fixes: {rentals:#}\n{stderr}");
    assert_eq!(rentals["recoverable"], true);
    let kinds = finding_kinds(rentals);
    for gone in ["backup.stale", "blast_radius.shared", "credential.exposed"] {
        assert!(!kinds.contains(&gone.to_owned()), "{gone} still reported: {rentals:#}");
    }
    // What is still true is still said, just not as a reason the data is lost.
    assert!(kinds.contains(&"credential.purpose_mismatch".to_owned()), "{kinds:?}");
    assert!(
        rentals["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .all(|finding| finding["severity"] != "critical"),
        "{rentals:#}"
    );
}
