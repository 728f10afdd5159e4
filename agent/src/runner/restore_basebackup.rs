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

use tokio::process::Command;

use crate::backups::{BackupFormat, RecoveryPoint};
use crate::runner::psql;
use crate::runner::restore::RestoreError;
use crate::sandbox::PostgresSandbox;

/// The database checks run against when the asset's URL names none.
pub const DEFAULT_DATABASE: &str = "postgres";

/// Restores the base backup `point` into the stopped `sandbox` and starts it; returns the
/// runbook lines.
pub async fn restore_base_backup(
    point: &RecoveryPoint,
    sandbox: &mut PostgresSandbox,
    timeout: Duration,
) -> Result<Vec<String>, RestoreError> {
    let bin = sandbox.bin_dir().to_owned();
    let data = sandbox.data_dir().to_owned();
    let source = shell_quote(&point.path);
    let verify = bin.join("pg_verifybackup");
    let mut runbook = Vec::new();
    match point.format {
        BackupFormat::PgBaseBackupPlain => {
            runbook.push(format!("{} {source}", verify.display()));
            let mut command = Command::new(&verify);
            command.arg(&point.path).kill_on_drop(true);
            run(command, "pg_verifybackup", timeout).await?;
            refuse_tablespaces(&point.path)?;
            runbook.push(format!("cp -a {source}/. \"$SANDBOX/data\""));
            let mut command = Command::new("cp");
            command
                .arg("-a")
                .arg(format!("{}/.", point.path.display()))
                .arg(&data)
                .kill_on_drop(true);
            run(command, "cp", timeout).await?;
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
            runbook.push(format!("tar -xf {} -C \"$SANDBOX/data\"", shell_quote(&base)));
            extract(&base, &data, timeout).await?;
            if let Some(wal) = find_tar(&point.path, "pg_wal") {
                let wal_dir = data.join("pg_wal");
                runbook.push(format!("tar -xf {} -C \"$SANDBOX/data/pg_wal\"", shell_quote(&wal)));
                tokio::fs::create_dir_all(&wal_dir)
                    .await
                    .map_err(|err| RestoreError::Sandbox(err.to_string()))?;
                extract(&wal, &wal_dir, timeout).await?;
            }
            runbook.push(format!(
                "{} -m {} \"$SANDBOX/data\"",
                verify.display(),
                shell_quote(&manifest)
            ));
            let mut command = Command::new(&verify);
            command.arg("-m").arg(&manifest).arg(&data).kill_on_drop(true);
            run(command, "pg_verifybackup", timeout).await?;
        }
        other => return Err(RestoreError::Unsupported(format!("{other:?}"))),
    }
    runbook.extend([
        "rm -f \"$SANDBOX/data/postmaster.pid\" \"$SANDBOX/data/standby.signal\" \"$SANDBOX/data/recovery.signal\"".to_owned(),
        "printf 'local all lifeboat_sandbox scram-sha-256\\nhost all lifeboat_sandbox 127.0.0.1/32 scram-sha-256\\n' > \"$SANDBOX/data/pg_hba.conf\"".to_owned(),
        "chown -R postgres: \"$SANDBOX/data\" && chmod 700 \"$SANDBOX/data\"".to_owned(),
        format!(
            "echo \"CREATE ROLE lifeboat_sandbox SUPERUSER LOGIN PASSWORD '${{PGPASSWORD}}';\" | {}/postgres --single -D \"$SANDBOX/data\" -c archive_mode=off postgres",
            bin.display()
        ),
        format!(
            "{}/pg_ctl -D \"$SANDBOX/data\" -o \"-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=$SANDBOX -c fsync=off -c archive_mode=off -c hba_file=$SANDBOX/data/pg_hba.conf\" -w start",
            bin.display()
        ),
    ]);
    tokio::time::timeout(timeout, sandbox.start_restored())
        .await
        .map_err(|_| RestoreError::Tool(format!("the restored server did not start within {timeout:?}")))?
        .map_err(|err| RestoreError::Tool(format!("the restored server does not start: {err}")))?;
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

/// Runs a tool; its failure is the restore's failure, in the tool's own words.
async fn run(command: Command, program: &str, timeout: Duration) -> Result<String, RestoreError> {
    psql::run(command, program, timeout).await.map_err(RestoreError::from)
}

async fn extract(archive: &Path, into: &Path, timeout: Duration) -> Result<(), RestoreError> {
    let mut command = Command::new("tar");
    command.arg("-xf").arg(archive).arg("-C").arg(into).kill_on_drop(true);
    run(command, "tar", timeout).await.map(|_| ())
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

fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)) {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
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
