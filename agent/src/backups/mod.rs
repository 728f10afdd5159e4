//! Backup sources and their recovery points (`docs/agent-config.md`): finds every backup in a
//! `[[backup]]` source, dates it from the backup's own metadata, measures and fingerprints it,
//! and picks the one a restore test uses.
//!
//! Discovery only reads: it never writes to a backup source (restic runs with `--no-lock`).
//!
//! # What counts as a recovery point
//!
//! Each top-level entry of a source directory is judged on its own:
//!
//! - recognised by its content (magic bytes, `toc.dat`, `backup_label`…): a recovery point;
//! - not recognised, but named like a backup of the source's kind (`x.dump`, `x.sql.gz`,
//!   `x.sqlite`, `x.tar.gz`…): a recovery point whose `detail.metadata_error` says what is wrong
//!   with it. A zero-byte or garbage `nightly.dump` is a corrupt backup, and the restore attempt
//!   reports it as `backup.unrecoverable`;
//! - anything else (a README, hidden files, SQLite `-wal` sidecars, a symlink to another entry of
//!   the same source): skipped, with a debug log line.
//!
//! One unreadable or corrupt backup never fails the discovery of its source: its point keeps
//! whatever could be read, is dated by file mtime when its own metadata cannot be read, and
//! carries `detail.metadata_error`. Only a source that cannot be read at all, a missing tool, or a
//! restic repository that refuses us is a [`BackupError`].
//!
//! # Timestamps
//!
//! [`RecoveryPoint::created_at`] comes from the backup's own metadata wherever it has one (pg_dump
//! archive header, `-- Started on` of a verbose plain dump, `START TIME` of `backup_label`, the
//! restic snapshot). File mtime is the last resort, [`TimestampSource::FileMtime`] says so, and
//! `detail.timestamp_note` says why.

mod files;
mod pg_archive;
mod pg_basebackup;
mod pg_dump;
mod pick;
mod restic;
mod source_dir;
mod sqlite;
mod tar;
#[cfg(test)]
mod test_cluster;
mod timestamps;
mod tools;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::config::BackupKind;
pub use pick::{Pick, PickError, pick};
pub use tar::audit as audit_tar;

/// How a recovery point is stored, which decides how it is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupFormat {
    /// `pg_dump -Fc`: one file, restored with `pg_restore`.
    PgCustom,
    /// `pg_dump -Fd`: a directory with `toc.dat`, restored with `pg_restore`.
    PgDirectory,
    /// `pg_dump -Ft`: a tar file with `toc.dat`, restored with `pg_restore`.
    PgTar,
    /// `pg_dump -Fp`: SQL text, restored with `psql`; `gzip` when the file is gzip-compressed.
    PgPlain { gzip: bool },
    /// `pg_basebackup -Fp`: a copy of the data directory with `backup_label`.
    PgBaseBackupPlain,
    /// `pg_basebackup -Ft`: a directory with `base.tar[.gz]`, `pg_wal.tar[.gz]`, `backup_manifest`.
    PgBaseBackupTar,
    /// A copy of a SQLite database file.
    SqliteFile,
    /// A directory snapshot of files.
    FilesDir,
    /// A tar archive of files; `gzip` for `.tar.gz` / `.tgz`.
    FilesTar { gzip: bool },
    /// A snapshot in a restic repository.
    ResticSnapshot,
}

/// Where a recovery point's [`RecoveryPoint::created_at`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampSource {
    /// The creation time in a pg_dump archive header (custom, directory, tar).
    ArchiveHeader,
    /// `-- Started on …` of a plain dump made with `pg_dump --verbose`.
    PlainDumpHeader,
    /// `START TIME` in a base backup's `backup_label`.
    BackupLabel,
    /// A date in a backup manifest (`backup_manifest`, a files checksum manifest).
    BackupManifest,
    /// The `time` of a restic snapshot.
    ResticSnapshot,
    /// The file's modification time: the backup carries no time of its own, or it is unreadable.
    FileMtime,
}

/// One backup in a source: the thing a restore test restores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    /// Stable and human-readable: the file or directory name relative to the source path, or the
    /// restic snapshot's short id. Findings and runs name the point by it.
    pub id: String,
    /// The file or directory of the backup (restic: the repository).
    pub path: PathBuf,
    /// How the backup is stored, which decides how it is restored.
    pub format: BackupFormat,
    /// When the backup was taken; its age is compared with the asset's RPO.
    pub created_at: DateTime<Utc>,
    /// Where `created_at` comes from, so that a guess is never mistaken for a fact.
    pub timestamp_source: TimestampSource,
    /// Bytes on disk (a directory: the sum of its files; restic: bytes the snapshot covered, 0 if
    /// the repository does not record it).
    pub size_bytes: u64,
    /// `blake3:<hex>` of a single-file backup; `None` for directories and snapshots. Evidence that
    /// the bytes restored are the bytes discovered.
    pub checksum: Option<String>,
    /// PostgreSQL major version of the dumped server, when known: decides the sandbox version.
    /// For servers before 10 this is the first number (9 for 9.6).
    pub server_major: Option<u32>,
    /// Everything else worth showing: tool versions, archive facts, restic host and paths, the
    /// manifest's system identifier; `metadata_error` when the backup's metadata is unreadable,
    /// `timestamp_note` when `created_at` is a file mtime.
    pub detail: serde_json::Value,
}

impl RecoveryPoint {
    /// Returns why this point's metadata could not be read, if it could not: such a point is
    /// expected to fail its restore.
    pub fn metadata_error(&self) -> Option<&str> {
        self.detail.get("metadata_error").and_then(serde_json::Value::as_str)
    }
}

/// A backup source to discover: what a `[[backup]]` section resolves to.
#[derive(Clone)]
pub struct SourceSpec {
    /// The kind of source, which decides what its entries are.
    pub kind: BackupKind,
    /// The source directory, or the restic repository (a path or `s3:…`-style location).
    pub path: PathBuf,
    /// The restic repository password; given to restic through its environment, never on its
    /// command line.
    pub restic_password: Option<String>,
    /// The jail the tools that read the source (`pg_restore --list`, `restic snapshots`) run in.
    pub jail: crate::jail::Jail,
}

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceSpec")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("restic_password", &self.restic_password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// How much work discovery does per recovery point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// Hash every single-file backup (reads each file once, whole). Turn off for a quick listing
    /// of a source with many large backups.
    pub checksums: bool,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        Self { checksums: true }
    }
}

/// Why a backup source could not be discovered. A single bad backup is never one of these: it
/// becomes a recovery point with `detail.metadata_error`.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The source does not exist, is not a directory, or cannot be listed.
    #[error("cannot read backup source {}: {source}", path.display())]
    SourceUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tool that discovery needs is not installed.
    #[error("{tool} is not installed: install the Debian package {package} (apt-get install {package})")]
    ToolMissing { tool: &'static str, package: &'static str },
    /// A tool is installed but could not be started.
    #[error("cannot run {tool} on {}: {source}", path.display())]
    ToolFailed {
        tool: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tool did not answer in time (a hung network mount, a huge repository).
    #[error("{tool} did not finish within {} s on {}", timeout.as_secs(), path.display())]
    ToolTimedOut {
        tool: &'static str,
        path: PathBuf,
        timeout: Duration,
    },
    /// restic refused the repository password (or none was given).
    #[error("wrong password for restic repository {}: {message}", repository.display())]
    ResticPassword { repository: PathBuf, message: String },
    /// restic could not list the repository's snapshots for another reason.
    #[error("restic cannot list the snapshots of {}: {message}", repository.display())]
    Restic { repository: PathBuf, message: String },
    /// The background task inspecting the source stopped unexpectedly.
    #[error("inspecting backup source {} stopped unexpectedly: {message}", path.display())]
    Interrupted { path: PathBuf, message: String },
    /// The discovery jail could not run (the agent's set-up).
    #[error(transparent)]
    Jail(#[from] crate::jail::JailError),
}

impl BackupError {
    /// Whether the error is the agent's set-up (a missing tool, the discovery jail), not the
    /// source's.
    pub fn is_agent_problem(&self) -> bool {
        match self {
            Self::ToolMissing { .. } => true,
            Self::Jail(err) => err.is_agent_problem(),
            _ => false,
        }
    }
}

/// Finds every recovery point of a source, newest first (checksums included).
///
/// A source that does not exist or cannot be listed is [`BackupError::SourceUnreadable`]; an empty
/// one is `Ok(vec![])`, which the caller reports as `backup.missing`.
pub async fn discover(spec: &SourceSpec) -> Result<Vec<RecoveryPoint>, BackupError> {
    discover_with(spec, DiscoverOptions::default()).await
}

/// Finds every recovery point of a source, newest first, doing the work `options` asks for.
pub async fn discover_with(spec: &SourceSpec, options: DiscoverOptions) -> Result<Vec<RecoveryPoint>, BackupError> {
    let mut points = match spec.kind {
        BackupKind::PgDumpDir => pg_dump::discover(&spec.path, options, &spec.jail).await?,
        BackupKind::PgBasebackupDir => pg_basebackup::discover(&spec.path).await?,
        BackupKind::SqliteDir => sqlite::discover(&spec.path, options).await?,
        BackupKind::FilesDir => files::discover(&spec.path, options).await?,
        BackupKind::Restic => restic::discover(&spec.path, spec.restic_password.as_deref(), &spec.jail).await?,
    };
    sort_newest_first(&mut points);
    Ok(points)
}

/// A discovery jail for the tests of this module (one work directory for the whole test run).
#[cfg(test)]
pub(crate) fn test_jail() -> crate::jail::Jail {
    static WORK_DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = WORK_DIR.get_or_init(|| tempfile::tempdir().expect("work dir"));
    crate::sandbox::discovery_jail(dir.path()).expect("a discovery jail (bubblewrap, root)")
}

/// Lets the sandbox user read `path` (recursively) and pass through its ancestors, as an
/// operator does for real backups (tests of this module).
#[cfg(test)]
pub(crate) fn grant_sandbox_read(path: &std::path::Path) {
    let _ = std::process::Command::new("chmod")
        .args(["-R", "o+rX"])
        .arg(path)
        .status();
    for ancestor in path.ancestors().skip(1) {
        let _ = std::process::Command::new("chmod").arg("o+x").arg(ancestor).status();
    }
}

/// Sorts newest first; points of the same second are ordered by id, so the order is stable.
fn sort_newest_first(points: &mut [RecoveryPoint]) {
    points.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
}

/// Runs blocking file inspection off the async runtime.
async fn run_blocking<T: Send + 'static>(
    path: &std::path::Path,
    work: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| BackupError::Interrupted {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_source_is_an_error_and_an_empty_one_has_no_points() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("does-not-exist");
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let a_file = root.path().join("a-file");
        std::fs::write(&a_file, b"x").unwrap();
        for kind in [
            BackupKind::PgDumpDir,
            BackupKind::PgBasebackupDir,
            BackupKind::SqliteDir,
            BackupKind::FilesDir,
        ] {
            let spec = |path: &std::path::Path| SourceSpec {
                kind,
                path: path.to_path_buf(),
                restic_password: None,
                jail: super::test_jail(),
            };
            let err = discover(&spec(&missing)).await.unwrap_err();
            assert!(matches!(err, BackupError::SourceUnreadable { .. }), "{kind:?}: {err}");
            assert!(err.to_string().contains("does-not-exist"), "{err}");
            let err = discover(&spec(&a_file)).await.unwrap_err();
            assert!(matches!(err, BackupError::SourceUnreadable { .. }), "{kind:?}: {err}");
            assert_eq!(discover(&spec(&empty)).await.unwrap(), vec![], "{kind:?}");
        }
    }

    #[test]
    fn formats_and_sources_serialise_in_snake_case() {
        assert_eq!(serde_json::to_value(BackupFormat::PgCustom).unwrap(), "pg_custom");
        assert_eq!(
            serde_json::to_value(BackupFormat::PgPlain { gzip: true }).unwrap(),
            serde_json::json!({"pg_plain": {"gzip": true}})
        );
        assert_eq!(
            serde_json::to_value(BackupFormat::PgBaseBackupTar).unwrap(),
            "pg_base_backup_tar"
        );
        assert_eq!(serde_json::to_value(TimestampSource::FileMtime).unwrap(), "file_mtime");
        assert_eq!(
            serde_json::to_value(TimestampSource::ResticSnapshot).unwrap(),
            "restic_snapshot"
        );
    }

    #[test]
    fn the_restic_password_is_not_in_debug_output() {
        let spec = SourceSpec {
            kind: BackupKind::Restic,
            path: PathBuf::from("/srv/restic"),
            restic_password: Some("hunter2".to_owned()),
            jail: test_jail(),
        };
        let shown = format!("{spec:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn points_sort_newest_first_then_by_id() {
        let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap();
        let point = |id: &str, secs: i64| RecoveryPoint {
            id: id.to_owned(),
            path: PathBuf::from(id),
            format: BackupFormat::SqliteFile,
            created_at: at(secs),
            timestamp_source: TimestampSource::FileMtime,
            size_bytes: 0,
            checksum: None,
            server_major: None,
            detail: serde_json::json!({}),
        };
        let mut points = vec![point("b", 10), point("a", 20), point("c", 20), point("d", 5)];
        sort_newest_first(&mut points);
        let ids: Vec<&str> = points.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "b", "d"]);
    }
}
