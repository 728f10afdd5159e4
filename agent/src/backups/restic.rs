//! `restic` sources: each snapshot of a restic repository is a recovery point, listed with the
//! real `restic snapshots --json`.
//!
//! The password reaches restic through `RESTIC_PASSWORD` in the child's environment only (never
//! its command line, which other users can read); password and repository variables inherited
//! from the agent are removed so that only the configured ones count. `--no-lock` keeps the
//! listing read-only: discovery never writes to a backup repository.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::source_dir::{self, Detail};
use super::tools::{self, RESTIC};
use super::{BackupError, BackupFormat, RecoveryPoint, TimestampSource};

/// Listing snapshots reads the index of a possibly remote repository.
const SNAPSHOTS_TIMEOUT: Duration = Duration::from_secs(300);
/// restic 0.17+ exits with 12 on a wrong password.
const EXIT_WRONG_PASSWORD: i32 = 12;
/// Location prefixes of remote repositories (no local path to check first).
const REMOTE_PREFIXES: &[&str] = &["s3:", "sftp:", "rest:", "b2:", "azure:", "gs:", "swift:", "rclone:"];

/// Finds the snapshots of a restic repository.
pub(super) async fn discover(
    repository: &Path,
    password: Option<&str>,
    jail: &crate::jail::Jail,
) -> Result<Vec<RecoveryPoint>, BackupError> {
    let is_remote = repository
        .to_str()
        .is_some_and(|location| REMOTE_PREFIXES.iter().any(|prefix| location.starts_with(prefix)));
    if !is_remote {
        let metadata = tokio::fs::metadata(repository)
            .await
            .map_err(|source| BackupError::SourceUnreadable {
                path: repository.to_path_buf(),
                source,
            })?;
        if !metadata.is_dir() {
            return Err(BackupError::SourceUnreadable {
                path: repository.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
    }
    let Some(password) = password else {
        return Err(BackupError::ResticPassword {
            repository: repository.to_path_buf(),
            message: "no password is configured for the repository (set password_env or password_file)".to_owned(),
        });
    };

    // A remote repository is reached over the network: its jail keeps the host's network.
    let jail = if is_remote {
        jail.clone().with_network()
    } else {
        jail.clone().readable(repository, repository)
    };
    let command = jail
        .allow(&["restic"])
        .command(RESTIC.name)
        .arg("--repo")
        .arg(repository)
        .args(["snapshots", "--json", "--no-lock", "--no-cache"])
        .env("RESTIC_PASSWORD", password);
    let output = tools::run(RESTIC, command, repository, SNAPSHOTS_TIMEOUT).await?;
    if !output.status.success() {
        let message = output.complaint();
        // "wrong password or no key found", "an empty password is not a password"…
        let wrong_password = output.status.code() == Some(EXIT_WRONG_PASSWORD) || message.contains("password");
        return Err(if wrong_password {
            BackupError::ResticPassword {
                repository: repository.to_path_buf(),
                message,
            }
        } else {
            BackupError::Restic {
                repository: repository.to_path_buf(),
                message,
            }
        });
    }
    let snapshots: Vec<Value> = serde_json::from_str(output.stdout.trim()).map_err(|err| BackupError::Restic {
        repository: repository.to_path_buf(),
        message: format!("cannot parse the output of restic snapshots --json: {err}"),
    })?;
    let local_repository = (!is_remote).then_some(repository);
    Ok(snapshots
        .iter()
        .map(|snapshot| to_point(snapshot, repository, local_repository))
        .collect())
}

/// Turns one entry of `restic snapshots --json` into a point; a snapshot with an unreadable time
/// is kept, dated by its file in a local repository (the epoch for a remote one).
fn to_point(snapshot: &Value, repository: &Path, local_repository: Option<&Path>) -> RecoveryPoint {
    let text = |key: &str| snapshot.get(key).and_then(Value::as_str).map(str::to_owned);
    let id = text("id").unwrap_or_default();
    let short_id = text("short_id").unwrap_or_else(|| id.chars().take(8).collect());
    let mut detail = Detail::default();
    detail.set("snapshot_id", id.clone());
    for key in ["hostname", "username", "tree", "parent", "program_version"] {
        detail.set_some(key, text(key));
    }
    for key in ["paths", "tags", "excludes"] {
        if let Some(value) = snapshot.get(key) {
            detail.set(key, value.clone());
        }
    }
    let summary = snapshot.get("summary");
    let size_bytes = summary
        .and_then(|summary| summary.get("total_bytes_processed"))
        .and_then(Value::as_u64);
    if let Some(summary) = summary {
        detail.set("summary", summary.clone());
    } else {
        detail.set(
            "size_note",
            "this restic version records no snapshot size (restic 0.17+ does)",
        );
    }
    let time = text("time");
    let parsed = time
        .as_deref()
        .and_then(|time| DateTime::parse_from_rfc3339(time).ok())
        .map(|at| at.with_timezone(&Utc));
    let (created_at, timestamp_source) = match parsed {
        Some(at) => (at, TimestampSource::ResticSnapshot),
        None => {
            detail.error(format!("unreadable snapshot time {:?}", time.unwrap_or_default()));
            detail.mtime_because("the snapshot's own time is unreadable");
            let file_time = local_repository
                .and_then(|repository| std::fs::metadata(repository.join("snapshots").join(&id)).ok())
                .map(|metadata| source_dir::mtime(&metadata));
            (file_time.unwrap_or(DateTime::UNIX_EPOCH), TimestampSource::FileMtime)
        }
    };
    RecoveryPoint {
        id: short_id,
        path: PathBuf::from(repository),
        format: BackupFormat::ResticSnapshot,
        created_at,
        timestamp_source,
        size_bytes: size_bytes.unwrap_or(0),
        checksum: None,
        server_major: None,
        detail: detail.into_value(),
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use serde_json::json;

    use super::super::{BackupKind, SourceSpec, discover as discover_source};
    use super::*;

    const PASSWORD: &str = "correct horse battery staple";

    fn restic(repository: &Path, args: &[&str]) {
        let output = Command::new("restic")
            .arg("--repo")
            .arg(repository)
            .args(args)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env_remove("RESTIC_PASSWORD_FILE")
            .env_remove("RESTIC_REPOSITORY")
            .output()
            .expect("restic is not installed: apt-get install restic");
        assert!(
            output.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[tokio::test]
    async fn lists_the_snapshots_of_a_real_repository() {
        let root = tempfile::tempdir().unwrap();
        let repository = root.path().join("repo");
        let data = root.path().join("uploads");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("a.txt"), "first").unwrap();
        restic(&repository, &["init"]);
        let before = Utc::now() - chrono::Duration::seconds(1);
        restic(
            &repository,
            &["backup", "--host", "web-1", "--tag", "nightly", data.to_str().unwrap()],
        );
        std::fs::write(data.join("b.txt"), "second").unwrap();
        restic(&repository, &["backup", "--host", "web-2", data.to_str().unwrap()]);
        super::super::grant_sandbox_read(&repository);

        let spec = SourceSpec {
            kind: BackupKind::Restic,
            path: repository.clone(),
            restic_password: Some(PASSWORD.to_owned()),
            jail: super::super::test_jail(),
        };
        let points = discover_source(&spec).await.unwrap();
        assert_eq!(points.len(), 2, "{points:#?}");
        assert!(points[0].created_at >= points[1].created_at);
        assert_eq!(points[0].detail["hostname"], "web-2", "newest first: {points:#?}");
        assert_eq!(points[1].detail["tags"], json!(["nightly"]));
        for point in &points {
            assert_eq!(point.format, BackupFormat::ResticSnapshot);
            assert_eq!(point.timestamp_source, TimestampSource::ResticSnapshot);
            assert_eq!(point.id.len(), 8);
            assert!(point.detail["snapshot_id"].as_str().unwrap().starts_with(&point.id));
            assert_eq!(point.path, repository);
            assert_eq!(point.detail["paths"], json!([data.to_str().unwrap()]));
            assert!((point.created_at - before).num_seconds().abs() < 120);
        }

        let wrong = SourceSpec {
            restic_password: Some("hunter2".to_owned()),
            ..spec.clone()
        };
        let err = discover_source(&wrong).await.unwrap_err();
        assert!(matches!(err, BackupError::ResticPassword { .. }), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let none = SourceSpec {
            restic_password: None,
            ..spec.clone()
        };
        assert!(matches!(
            discover_source(&none).await.unwrap_err(),
            BackupError::ResticPassword { .. }
        ));
        let not_a_repository = SourceSpec {
            path: data.clone(),
            ..spec.clone()
        };
        let err = discover_source(&not_a_repository).await.unwrap_err();
        assert!(matches!(err, BackupError::Restic { .. }), "{err}");
        let missing = SourceSpec {
            path: root.path().join("nowhere"),
            ..spec
        };
        assert!(matches!(
            discover_source(&missing).await.unwrap_err(),
            BackupError::SourceUnreadable { .. }
        ));
    }

    #[test]
    fn keeps_a_snapshot_with_an_unreadable_time() {
        let snapshot = json!({"id": "0123456789abcdef", "time": "last tuesday", "paths": ["/srv"]});
        let point = to_point(&snapshot, Path::new("s3:bucket/repo"), None);
        assert_eq!(point.id, "01234567");
        assert_eq!(point.timestamp_source, TimestampSource::FileMtime);
        assert!(point.metadata_error().unwrap().contains("last tuesday"));
        assert_eq!(point.size_bytes, 0);
        let with_summary = json!({"id": "ab", "short_id": "ab", "time": "2026-11-25T03:00:00.5+01:00",
            "summary": {"total_bytes_processed": 1234}});
        let point = to_point(&with_summary, Path::new("/r"), None);
        assert_eq!(point.size_bytes, 1234);
        assert_eq!(point.created_at.to_rfc3339(), "2026-11-25T02:00:00.500+00:00");
    }
}
