//! Restores of physical and restic backups end to end: real `pg_basebackup` outputs (plain and
//! tar) of a real production cluster, real restic repositories (restic's own test data,
//! tests/fixtures/restic, BSD-2-Clause), and `lifeboat-agent check` as a process.

use std::path::{Path, PathBuf};

use lifeboat_tests::agent_check::{agent_config, asset, check, finding_kinds, sandboxes_left};
use lifeboat_tests::postgres::PgCluster;
use lifeboat_tests::volume::OtherVolume;

const RESTIC_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/restic");
/// The password of restic's test repositories.
const RESTIC_PASSWORD: &str = "geheim";

/// A work directory the `postgres` user can traverse when the tests run as root.
fn work_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lb-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o711))
        .tempdir()
        .expect("tempdir")
}

/// Runs `pg_basebackup` of `cluster` with `format_args` into `out`.
async fn base_backup(cluster: &PgCluster, format_args: &[&str], out: &Path) {
    let output = tokio::process::Command::new(cluster.bin_dir().join("pg_basebackup"))
        .arg("-d")
        .arg(cluster.url("postgres"))
        .arg("-D")
        .arg(out)
        .args(format_args)
        .args(["-X", "stream", "--checkpoint=fast"])
        .output()
        .await
        .expect("pg_basebackup");
    assert!(
        output.status.success(),
        "pg_basebackup: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn basebackup_asset(name: &str, url: &str, source: &Path) -> String {
    format!(
        r#"
[[asset]]
name = "{name}"
kind = "postgres"
url = "{url}"
rpo = "24h"
rto = "30m"

[[backup]]
name = "{name}-base"
asset = "{name}"
kind = "pg_basebackup_dir"
path = "{}"
location = {{ host = "backup-nas" }}

[[test]]
asset = "{name}"
schedule = "0 */6 * * *"
timeout = "10m"

  [[test.check]]
  name = "all orders are there"
  sql = "select count(*) = 500 from orders"
"#,
        source.display()
    )
}

/// A production cluster with database `shop`, table `orders` of 500 rows.
async fn production() -> PgCluster {
    let cluster = PgCluster::start().await.expect("cluster");
    cluster.create_database("shop").await.expect("create shop");
    cluster
        .psql(
            "shop",
            "CREATE TABLE orders (id int primary key, total numeric); \
             INSERT INTO orders SELECT i, i * 1.5 FROM generate_series(1, 500) i",
        )
        .await
        .expect("load shop");
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_tar_base_backups_restore_and_pass_their_checks() {
    let cluster = production().await;
    let dir = work_dir();
    let offsite = OtherVolume::mount(512).expect("mount another volume");
    let mut body = String::new();
    for (name, args) in [("plain", ["-Fp"]), ("tar", ["-Ft"])] {
        let source = offsite.dir(&format!("backups-{name}"));
        std::fs::create_dir_all(&source).expect("mkdir");
        base_backup(&cluster, &args, &source.join("base-1")).await;
        body.push_str(&basebackup_asset(
            &format!("shop-{name}"),
            &cluster.url("shop"),
            &source,
        ));
    }
    let config = agent_config(dir.path(), &body);
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 0, "check failed:\n{stderr}\n{report:#}");
    for name in ["plain", "tar"] {
        let asset = asset(&report, &format!("shop-{name}"));
        assert_eq!(asset["recoverable"], true, "{asset:#}");
        let run = &asset["runs"][0];
        assert_eq!(run["outcome"], "passed", "{run:#}");
        assert_eq!(run["checks"][0]["passed"], true, "{run:#}");
        let runbook: Vec<&str> = run["runbook"]
            .as_array()
            .expect("runbook")
            .iter()
            .filter_map(|line| line.as_str())
            .collect();
        assert!(
            runbook.iter().any(|line| line.contains("pg_verifybackup")),
            "{runbook:#?}"
        );
        assert!(
            !runbook.iter().any(|line| line.contains(cluster.password())),
            "{runbook:#?}"
        );
    }
    assert!(
        sandboxes_left(dir.path()).is_empty(),
        "sandboxes left behind: {:?}",
        sandboxes_left(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_backup_missing_a_file_is_unrecoverable_in_pg_verifybackups_words() {
    let cluster = production().await;
    let relation = cluster
        .psql("shop", "SELECT pg_relation_filepath('orders')")
        .await
        .expect("filepath");
    let relation = relation.trim().to_owned();
    assert!(relation.starts_with("base/"), "{relation}");
    let dir = work_dir();
    let offsite = OtherVolume::mount(512).expect("mount another volume");
    let mut body = String::new();
    for (name, args) in [("plain", ["-Fp"]), ("tar", ["-Ft"])] {
        let source = offsite.dir(&format!("backups-{name}"));
        std::fs::create_dir_all(&source).expect("mkdir");
        let backup = source.join("base-1");
        base_backup(&cluster, &args, &backup).await;
        if name == "plain" {
            std::fs::remove_file(backup.join(&relation)).expect("delete the table's file");
        } else {
            remove_from_tar(&backup.join("base.tar"), &relation).await;
        }
        body.push_str(&basebackup_asset(
            &format!("shop-{name}"),
            &cluster.url("shop"),
            &source,
        ));
    }
    let config = agent_config(dir.path(), &body);
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 1, "not recoverable must exit 1:\n{stderr}\n{report:#}");
    for name in ["plain", "tar"] {
        let asset = asset(&report, &format!("shop-{name}"));
        assert_eq!(asset["recoverable"], false, "{asset:#}");
        assert_eq!(finding_kinds(asset)[0], "backup.unrecoverable", "{asset:#}");
        let message = asset["findings"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&relation) && message.contains("present in the manifest but not on disk"),
            "{name}: {message}"
        );
    }
    assert!(sandboxes_left(dir.path()).is_empty());
}

/// Deletes `member` from the tar archive `archive`.
async fn remove_from_tar(archive: &Path, member: &str) {
    let output = tokio::process::Command::new("tar")
        .arg("--delete")
        .arg("-f")
        .arg(archive)
        .arg(member)
        .output()
        .await
        .expect("tar --delete");
    assert!(
        output.status.success(),
        "tar --delete: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Extracts the fixture repository `fixture` into `dir/name` (restic may write locks); returns
/// its path.
fn restic_repo(dir: &Path, fixture: &str, name: &str) -> PathBuf {
    let into = dir.join(name);
    std::fs::create_dir_all(&into).expect("mkdir");
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(Path::new(RESTIC_FIXTURES).join(format!("{fixture}.tar.gz")))
        .arg("-C")
        .arg(&into)
        .status()
        .expect("tar");
    assert!(status.success());
    into.join("repo")
}

fn restic_asset(name: &str, repo: &Path, password_file: &Path) -> String {
    format!(
        r#"
[[asset]]
name = "{name}"
kind = "files"
rpo = "200000h"
rto = "30m"

[[backup]]
name = "{name}-restic"
asset = "{name}"
kind = "restic"
path = "{}"
password_file = "{}"

[[test]]
asset = "{name}"
schedule = "0 */6 * * *"
timeout = "10m"

  [[test.check]]
  name = "files were restored"
  command = 'test -n "$(ls -A "$SANDBOX_PATH")"'

  [[test.check]]
  name = "repository integrity"
  integrity = true
"#,
        repo.display(),
        password_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restic_snapshots_restore_and_damage_or_a_wrong_password_become_findings() {
    let dir = work_dir();
    let password = dir.path().join("restic-password");
    std::fs::write(&password, format!("{RESTIC_PASSWORD}\n")).expect("password");
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-geheim\n").expect("password");

    let intact = restic_repo(dir.path(), "small-repo", "intact");
    let missing_blob = restic_repo(dir.path(), "repo-index-missing-blob", "missing-blob");
    let locked_out = restic_repo(dir.path(), "small-repo", "locked-out");
    let body = [
        restic_asset("intact", &intact, &password),
        restic_asset("missing-blob", &missing_blob, &password),
        restic_asset("wrong-password", &locked_out, &wrong),
    ]
    .concat();
    let config = agent_config(dir.path(), &body);
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 1, "not recoverable must exit 1:\n{stderr}\n{report:#}");

    let intact = asset(&report, "intact");
    assert_eq!(intact["recoverable"], true, "{intact:#}");
    let run = &intact["runs"][0];
    assert_eq!(run["outcome"], "passed", "{run:#}");
    let integrity = &run["checks"][1];
    assert_eq!(integrity["passed"], true, "{integrity:#}");
    assert!(
        integrity["message"]
            .as_str()
            .unwrap_or_default()
            .contains("restic check"),
        "{integrity:#}"
    );
    let runbook = run["runbook"].to_string();
    assert!(runbook.contains("${RESTIC_PASSWORD}"), "{runbook}");
    assert!(!runbook.contains(RESTIC_PASSWORD), "{runbook}");

    let damaged = asset(&report, "missing-blob");
    assert_eq!(damaged["recoverable"], false, "{damaged:#}");
    assert_eq!(finding_kinds(damaged)[0], "backup.unrecoverable", "{damaged:#}");
    let message = damaged["findings"][0]["message"].as_str().unwrap_or_default();
    // restic names the blob the index points to but the repository lacks.
    assert!(message.contains("f2ca1bb6"), "{message}");

    let refused = asset(&report, "wrong-password");
    assert_eq!(finding_kinds(refused), ["backup.missing"], "{refused:#}");
    let message = refused["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("wrong password"), "{message}");
    assert!(sandboxes_left(dir.path()).is_empty());
}

/// A pack file is gone: restic retries reading it for about 45 s before it gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restic_snapshot_whose_pack_is_missing_is_unrecoverable() {
    let dir = work_dir();
    let password = dir.path().join("restic-password");
    std::fs::write(&password, format!("{RESTIC_PASSWORD}\n")).expect("password");
    let repo = restic_repo(dir.path(), "repo-data-missing", "data-missing");
    let config = agent_config(dir.path(), &restic_asset("data-missing", &repo, &password));
    let (code, report, stderr) = check(&config).await;
    assert_eq!(code, 1, "not recoverable must exit 1:\n{stderr}\n{report:#}");
    let damaged = asset(&report, "data-missing");
    assert_eq!(finding_kinds(damaged)[0], "backup.unrecoverable", "{damaged:#}");
    let message = damaged["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no such file or directory") && message.contains("/data/"),
        "{message}"
    );
    assert!(sandboxes_left(dir.path()).is_empty());
}
