//! Restoring a recovery point into a sandbox with the real tools, and writing down how: every
//! restore records its runbook, the exact commands in order (secrets as `${VAR}`), so "how do we
//! recover right now" has a tested answer.
//!
//! Restores can only target a sandbox handle (`PostgresSandbox`, `DirSandbox`), which only the
//! sandbox module can create, for this run: there is no way to point a restore at production.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::backups::{BackupFormat, RecoveryPoint};
use crate::runner::psql;
use crate::sandbox::{DirSandbox, PostgresSandbox};

/// The database restores go into inside a PostgreSQL sandbox.
pub const RESTORED_DATABASE: &str = "restored";

/// Why a restore failed (becomes `backup.unrecoverable`).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Tool(String),
    #[error("restoring {0:?} backups is not supported yet")]
    Unsupported(String),
    #[error("cannot prepare the sandbox: {0}")]
    Sandbox(String),
}

impl From<psql::PsqlError> for RestoreError {
    fn from(err: psql::PsqlError) -> Self {
        Self::Tool(err.to_string())
    }
}

/// Number of parallel restore jobs: one per core.
pub fn parallel_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)) {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Restores a PostgreSQL logical dump into `sandbox`; returns the runbook lines.
pub async fn restore_postgres(
    point: &RecoveryPoint,
    sandbox: &PostgresSandbox,
    timeout: Duration,
) -> Result<Vec<String>, RestoreError> {
    let bin = sandbox.bin_dir();
    let url = sandbox.url(RESTORED_DATABASE);
    let runbook_url = format!("postgresql://${{PGUSER}}:${{PGPASSWORD}}@127.0.0.1:${{PGPORT}}/{RESTORED_DATABASE}");
    let mut runbook = vec![
        format!(
            "{}/initdb -D \"$SANDBOX/data\" --auth=scram-sha-256 -U \"$PGUSER\" --pwfile=\"$PWFILE\"",
            bin.display()
        ),
        format!(
            "{}/pg_ctl -D \"$SANDBOX/data\" -o \"-c listen_addresses=127.0.0.1 -c port=$PGPORT -c fsync=off\" -w start",
            bin.display()
        ),
        format!(
            "{}/createdb -h 127.0.0.1 -p \"$PGPORT\" {RESTORED_DATABASE}",
            bin.display()
        ),
    ];
    sandbox
        .create_database(RESTORED_DATABASE)
        .await
        .map_err(|err| RestoreError::Sandbox(err.to_string()))?;
    let path = shell_quote(&point.path);
    match &point.format {
        BackupFormat::PgCustom | BackupFormat::PgDirectory | BackupFormat::PgTar => {
            // Tar archives cannot be restored in parallel.
            let jobs = if matches!(point.format, BackupFormat::PgTar) {
                1
            } else {
                parallel_jobs()
            };
            let mut command = Command::new(bin.join("pg_restore"));
            command
                .args(["--no-owner", "--no-privileges", "--exit-on-error"])
                .arg(format!("--jobs={jobs}"))
                .arg(format!("--dbname={url}"))
                .arg(&point.path)
                .kill_on_drop(true);
            runbook.push(format!(
                "{}/pg_restore --no-owner --no-privileges --exit-on-error --jobs={jobs} --dbname=\"{runbook_url}\" {path}",
                bin.display()
            ));
            psql::run(command, "pg_restore", timeout).await.map_err(|err| {
                let text = err.to_string();
                if text.contains("unsupported version") {
                    RestoreError::Tool(format!(
                        "{text} (the dump was made by a newer pg_dump than this agent's PostgreSQL {} can read: \
                         install a newer PostgreSQL major on the agent)",
                        crate::capabilities::postgres_majors()
                            .last()
                            .copied()
                            .unwrap_or_default()
                    ))
                } else {
                    RestoreError::Tool(text)
                }
            })?;
        }
        BackupFormat::PgPlain { gzip } => {
            let cat = if *gzip { "gzip -dc" } else { "cat" };
            // A plain dump sets owners and grants by role name; create the roles it names (without
            // login) so that it restores as pg_restore --no-owner would.
            let mut scan = Command::new("bash");
            scan.args(["-o", "pipefail", "-c"])
                .arg(format!("{cat} {path} | grep -ohE '(OWNER TO|GRANT [A-Z, ]+ ON [^;]+ TO) [^; ]+' | sed -E 's/.* //' | sort -u"))
                .kill_on_drop(true);
            let roles = psql::run(scan, "grep", timeout).await.unwrap_or_default();
            let roles: Vec<&str> = roles
                .lines()
                .map(str::trim)
                .filter(|role| !role.is_empty() && *role != "PUBLIC" && !role.eq_ignore_ascii_case("public"))
                .collect();
            if !roles.is_empty() {
                let create = roles
                    .iter()
                    .map(|role| {
                        let name = role.trim_matches('"');
                        format!(
                            "DO $$ BEGIN CREATE ROLE {} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
                            psql::quote_identifier(name)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                psql::Connection::sandbox(bin, url.clone())
                    .script(&create, timeout)
                    .await?;
                runbook.push(format!(
                    "{}/psql -X -d \"{runbook_url}\" -c 'CREATE ROLE <each of: {}> NOLOGIN'",
                    bin.display(),
                    roles.join(", ")
                ));
            }
            let psql_line = format!(
                "{}/psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d \"{runbook_url}\"",
                bin.display()
            );
            runbook.push(format!("{cat} {path} | {psql_line}"));
            let mut command = Command::new("bash");
            command
                .args(["-o", "pipefail", "-c"])
                .arg(format!(
                    "{cat} {path} | \"{}\" -X -q -v ON_ERROR_STOP=1 --single-transaction -d \"$RESTORE_URL\"",
                    bin.join("psql").display()
                ))
                .env("RESTORE_URL", &url)
                .kill_on_drop(true);
            psql::run(command, "psql", timeout).await?;
        }
        other => return Err(RestoreError::Unsupported(format!("{other:?}"))),
    }
    Ok(runbook)
}

/// Restores a SQLite file copy into `sandbox`; returns the runbook lines and the restored path.
pub async fn restore_sqlite(
    point: &RecoveryPoint,
    sandbox: &DirSandbox,
) -> Result<(Vec<String>, std::path::PathBuf), RestoreError> {
    let target = sandbox.path().join("restored.sqlite");
    tokio::fs::copy(&point.path, &target)
        .await
        .map_err(|err| RestoreError::Tool(format!("cannot copy {}: {err}", point.path.display())))?;
    let runbook = vec![
        format!("cp {} \"$SANDBOX/restored.sqlite\"", shell_quote(&point.path)),
        "sqlite3 \"$SANDBOX/restored.sqlite\" 'PRAGMA integrity_check'".to_owned(),
    ];
    Ok((runbook, target))
}

/// Restores a files backup (directory snapshot or tar archive) into `sandbox`.
pub async fn restore_files(
    point: &RecoveryPoint,
    sandbox: &DirSandbox,
    timeout: Duration,
) -> Result<(Vec<String>, std::path::PathBuf), RestoreError> {
    let target = sandbox.path().join("restored");
    tokio::fs::create_dir_all(&target)
        .await
        .map_err(|err| RestoreError::Sandbox(err.to_string()))?;
    let source = shell_quote(&point.path);
    let (program, args, line): (&str, Vec<String>, String) = match &point.format {
        BackupFormat::FilesDir => (
            "cp",
            vec![
                "-a".into(),
                format!("{}/.", point.path.display()),
                target.display().to_string(),
            ],
            format!("cp -a {source}/. \"$SANDBOX/restored\""),
        ),
        BackupFormat::FilesTar { gzip } => {
            let flags = if *gzip { "-xzf" } else { "-xf" };
            (
                "tar",
                vec![
                    flags.into(),
                    point.path.display().to_string(),
                    "-C".into(),
                    target.display().to_string(),
                ],
                format!("tar {flags} {source} -C \"$SANDBOX/restored\""),
            )
        }
        other => return Err(RestoreError::Unsupported(format!("{other:?}"))),
    };
    let mut command = Command::new(program);
    command.args(&args).kill_on_drop(true);
    psql::run(command, program, timeout).await?;
    Ok((vec![line], target))
}
