//! Restoring a `pg_basebackup` recovery point (plain or tar format) into a PostgreSQL sandbox.
//!
//! 1. The backup is verified with `pg_verifybackup` before anything starts on it: a plain backup
//!    in place; a tar backup, which `pg_verifybackup` 15 cannot read, after `base.tar` is
//!    extracted into the sandbox and `pg_wal.tar` into its `pg_wal`, with `-m` naming the
//!    backup's manifest (the WAL is then in place, so it is parsed too). A failure is the
//!    restore's failure, in `pg_verifybackup`'s words.
//! 2. A plain backup is copied into the sandbox.
//! 3. The sandbox starts on it ([`PostgresSandbox::start_restored`]): crash recovery from
//!    `backup_label` with the WAL the backup carries, not a point-in-time recovery.
//!
//! Backups with tablespaces are refused: their data lives outside the backup directory (a plain
//! backup links to production's tablespace paths).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backups::{BackupFormat, RecoveryPoint};
use crate::jail::{Jail, Shells};
use crate::runner::restore::{RestoreError, grant_dir, reading_result, tool_result};
use crate::runner::runbook;
use crate::sandbox::PostgresSandbox;

/// The database checks run against when the asset's URL names none.
pub const DEFAULT_DATABASE: &str = "postgres";
/// The processes of the copy and verification steps, and the decompressors `tar` runs.
const STEP_PROCESSES: &[&str] = &[
    "cp",
    "tar",
    "mkdir",
    "pg_verifybackup",
    "pg_waldump",
    "gzip",
    "lz4",
    "zstd",
    "sh",
];

/// Restores the base backup `point` into the stopped `sandbox` and starts it; returns the
/// runbook lines. Signs of tampering (settings that load libraries from outside the installation)
/// go to `signs`.
pub async fn restore_base_backup(
    point: &RecoveryPoint,
    sandbox: &mut PostgresSandbox,
    timeout: Duration,
    signs: &mut Vec<String>,
) -> Result<Vec<String>, RestoreError> {
    let bin = sandbox.bin_dir().to_owned();
    let data = sandbox.data_dir().to_owned();
    let source = runbook::quote(&point.path);
    let verify = bin.join("pg_verifybackup");
    let jail = sandbox
        .sandbox()
        .jail()
        .readable(&point.path, &grant_dir(point))
        .shells(Shells::Real)
        .allow(STEP_PROCESSES);
    let mut runbook = Vec::new();
    match point.format {
        BackupFormat::PgBaseBackupPlain => {
            runbook.push(format!("{} {source}", verify.display()));
            let output = jail.command(&verify).arg(&point.path).output(timeout).await?;
            reading_result(output, "pg_verifybackup", sandbox.sandbox().jail_user(), point)?;
            refuse_tablespaces(&point.path)?;
            runbook.push(format!("cp -a {source}/. \"$PGDATA\""));
            let output = jail
                .command("cp")
                .arg("-a")
                .arg(format!("{}/.", point.path.display()))
                .arg(&data)
                .output(timeout)
                .await?;
            tool_result(output, "cp")?;
        }
        BackupFormat::PgBaseBackupTar => {
            let base = find_tar(&point.path, "base")
                .ok_or_else(|| RestoreError::Tool(format!("no base.tar in {}", point.path.display())))?;
            let manifest = point.path.join("backup_manifest");
            if !manifest.is_file() {
                return Err(RestoreError::Tool(format!(
                    "{} has no backup_manifest: the backup cannot be verified",
                    point.path.display()
                )));
            }
            let tablespace_tars = tablespace_tars(&point.path);
            if !tablespace_tars.is_empty() {
                return Err(RestoreError::Unsupported(format!(
                    "base backups with tablespaces ({})",
                    tablespace_tars.join(", ")
                )));
            }
            // GNU tar recognises gzip, lz4 and zstd by content.
            runbook.push(format!("tar -xf {} -C \"$PGDATA\"", runbook::quote(&base)));
            let user = sandbox.sandbox().jail_user().clone();
            extract(&jail, &base, &data, timeout)
                .await
                .map_err(|err| unreadable_or(err, &user, point))?;
            if let Some(wal) = find_tar(&point.path, "pg_wal") {
                let wal_dir = data.join("pg_wal");
                runbook.push(format!("tar -xf {} -C \"$PGDATA/pg_wal\"", runbook::quote(&wal)));
                let output = jail.command("mkdir").arg("-p").arg(&wal_dir).output(timeout).await?;
                tool_result(output, "mkdir")?;
                extract(&jail, &wal, &wal_dir, timeout).await?;
            }
            runbook.push(format!(
                "{} -m {} \"$PGDATA\"",
                verify.display(),
                runbook::quote(&manifest)
            ));
            let output = jail
                .command(&verify)
                .arg("-m")
                .arg(&manifest)
                .arg(&data)
                .output(timeout)
                .await?;
            tool_result(output, "pg_verifybackup")?;
        }
        other => return Err(RestoreError::Unsupported(format!("{other:?}"))),
    }
    runbook.extend([
        "rm -f \"$PGDATA/postmaster.pid\" \"$PGDATA/standby.signal\" \"$PGDATA/recovery.signal\"".to_owned(),
        "chown -R postgres: \"$PGDATA\" && chmod 700 \"$PGDATA\"".to_owned(),
        format!("{}/pg_ctl -D \"$PGDATA\" -w start", bin.display()),
    ]);
    let started = tokio::time::timeout(timeout, sandbox.start_restored())
        .await
        .map_err(|_| RestoreError::Tool(format!("the restored server did not start within {timeout:?}")))?;
    match started {
        Ok(found) => signs.extend(found),
        Err(err) if err.is_agent_problem() => return Err(RestoreError::Sandbox(err)),
        Err(err) => return Err(RestoreError::Tool(format!("the restored server does not start: {err}"))),
    }
    Ok(runbook)
}

/// The database checks run against: the path of the asset's URL, or `postgres`.
pub fn database_of(url: Option<&str>) -> String {
    url.and_then(|url| url.split_once("://"))
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, path)| path.split(['?', '#']).next().unwrap_or_default().to_owned())
        .filter(|database| !database.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned())
}

/// A failed step on `point` is the agent's set-up when the sandbox user may not read the point.
fn unreadable_or(err: RestoreError, user: &crate::jail::JailUser, point: &RecoveryPoint) -> RestoreError {
    match err {
        RestoreError::Tool(text)
            if text.to_ascii_lowercase().contains("permission denied") && !user.may_read_tree(&point.path) =>
        {
            RestoreError::Jail(user.unreadable(&point.path, &grant_dir(point)))
        }
        other => other,
    }
}

async fn extract(jail: &Jail, archive: &Path, into: &Path, timeout: Duration) -> Result<(), RestoreError> {
    let output = jail
        .command("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output(timeout)
        .await?;
    tool_result(output, "tar").map(|_| ())
}

/// `<stem>.tar`, `.tar.gz`, `.tgz`, `.tar.lz4` or `.tar.zst` in `dir`.
fn find_tar(dir: &Path, stem: &str) -> Option<PathBuf> {
    ["tar", "tar.gz", "tgz", "tar.lz4", "tar.zst"]
        .iter()
        .map(|extension| dir.join(format!("{stem}.{extension}")))
        .find(|path| path.is_file())
}

/// Tablespace tars of a tar-format backup: `<oid>.tar[.…]`.
fn tablespace_tars(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.split_once(".t")
                .is_some_and(|(stem, _)| !stem.is_empty() && stem.bytes().all(|byte| byte.is_ascii_digit()))
        })
        .collect()
}

fn refuse_tablespaces(backup: &Path) -> Result<(), RestoreError> {
    let links = backup.join("pg_tblspc");
    let has_tablespaces = std::fs::read_dir(&links).is_ok_and(|mut entries| entries.next().is_some());
    if has_tablespaces {
        return Err(RestoreError::Unsupported(format!(
            "base backups with tablespaces ({} is not empty)",
            links.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_comes_from_the_url_path() {
        assert_eq!(database_of(Some("postgres://u:p@db:5432/shop?sslmode=require")), "shop");
        assert_eq!(database_of(Some("postgres://u:p@db:5432/")), "postgres");
        assert_eq!(database_of(Some("postgres://db")), "postgres");
        assert_eq!(database_of(None), "postgres");
    }

    #[test]
    fn tablespace_tars_are_numbered() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["base.tar", "pg_wal.tar", "backup_manifest", "16385.tar.gz"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(tablespace_tars(dir.path()), ["16385.tar.gz"]);
    }
}
