//! Restoring a recovery point into a sandbox with the real tools, inside the sandbox's jail, and
//! writing down how: every restore records its runbook, the exact commands in order (secrets as
//! `${VAR}`), so "how do we recover right now" has a tested answer.
//!
//! Restores can only target a sandbox handle (`PostgresSandbox`, `DirSandbox`), which only the
//! sandbox module can create, for this run: there is no way to point a restore at production.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backups::{BackupFormat, RecoveryPoint};
use crate::jail::{JailError, JailOutput, JailUser, Shells};
use crate::runner::psql::{self, first_error_line};
use crate::runner::{plain_dump, runbook};
use crate::sandbox::{DirSandbox, PostgresSandbox, SandboxError};

/// The database restores go into inside a PostgreSQL sandbox.
pub const RESTORED_DATABASE: &str = "restored";
/// The processes a `pg_restore` step runs: itself and its parallel workers.
const PG_RESTORE_PROCESSES: &[&str] = &["pg_restore"];
/// The processes of a files restore: the copy or `tar`, and the decompressors `tar` runs.
const FILES_PROCESSES: &[&str] = &["cp", "mkdir", "tar", "gzip", "xz", "zstd", "lz4", "bzip2", "sh"];

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The backup did not restore (becomes `backup.unrecoverable`).
    #[error("{0}")]
    Tool(String),
    #[error("restoring {0:?} backups is not supported yet")]
    Unsupported(String),
    /// The agent's set-up stopped the restore (becomes `agent.misconfigured`).
    #[error("cannot prepare the sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    /// The agent's set-up stopped the restore (becomes `agent.misconfigured`), or it timed out.
    #[error(transparent)]
    Jail(#[from] JailError),
}

impl RestoreError {
    /// Whether the failure is the agent's set-up (the fix is on the agent's machine), not the
    /// backup's.
    pub fn is_agent_problem(&self) -> bool {
        match self {
            Self::Tool(_) | Self::Unsupported(_) => false,
            Self::Sandbox(err) => err.is_agent_problem(),
            Self::Jail(err) => err.is_agent_problem(),
        }
    }
}

impl From<psql::PsqlError> for RestoreError {
    fn from(err: psql::PsqlError) -> Self {
        match err {
            psql::PsqlError::Jail(err) => Self::Jail(err),
            other => Self::Tool(other.to_string()),
        }
    }
}

/// Number of parallel restore jobs: one per core.
pub fn parallel_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Where the operator grants the sandbox user read access to a recovery point: the point itself
/// when it is a directory, else the directory it is in.
pub fn grant_dir(point: &RecoveryPoint) -> PathBuf {
    if point.path.is_dir() {
        point.path.clone()
    } else {
        point.path.parent().map_or_else(|| point.path.clone(), Path::to_owned)
    }
}

/// Turns a failed jailed tool into the restore's failure, in the tool's own words.
pub(crate) fn tool_result(output: JailOutput, program: &str) -> Result<String, RestoreError> {
    if output.success() {
        Ok(output.stdout)
    } else {
        Err(RestoreError::Tool(first_error_line(&output.stderr, program)))
    }
}

/// Like [`tool_result`] for a tool that reads `point`: when it failed to read and the sandbox
/// user may not read the point, the failure is the agent's set-up ([`JailError::Unreadable`]),
/// not the backup's.
pub(crate) fn reading_result(
    output: JailOutput,
    program: &str,
    user: &JailUser,
    point: &RecoveryPoint,
) -> Result<String, RestoreError> {
    if output.success() {
        return Ok(output.stdout);
    }
    let stderr = output.stderr.to_ascii_lowercase();
    let could_not_read = ["permission denied", "does not exist", "no such file"]
        .iter()
        .any(|said| stderr.contains(said));
    if could_not_read && !user.may_read_tree(&point.path) {
        return Err(RestoreError::Jail(user.unreadable(&point.path, &grant_dir(point))));
    }
    tool_result(output, program)
}

/// Restores a PostgreSQL logical dump into `sandbox`; returns the runbook lines. Signs of
/// tampering found on the way go to `signs`, whether or not the restore succeeds.
pub async fn restore_postgres(
    point: &RecoveryPoint,
    sandbox: &PostgresSandbox,
    timeout: Duration,
    signs: &mut Vec<String>,
) -> Result<Vec<String>, RestoreError> {
    let bin = sandbox.bin_dir();
    let mut runbook = vec![format!("{}/createdb {RESTORED_DATABASE}", bin.display())];
    sandbox.create_database(RESTORED_DATABASE).await?;
    let path = runbook::quote(&point.path);
    match &point.format {
        BackupFormat::PgCustom | BackupFormat::PgDirectory | BackupFormat::PgTar => {
            // Tar archives cannot be restored in parallel.
            let jobs = if matches!(point.format, BackupFormat::PgTar) {
                1
            } else {
                parallel_jobs()
            };
            runbook.push(format!(
                "{}/pg_restore --no-owner --no-privileges --exit-on-error --jobs={jobs} --dbname={RESTORED_DATABASE} {path}",
                bin.display()
            ));
            let output = sandbox
                .client_jail()
                .readable(&point.path, &grant_dir(point))
                .allow(PG_RESTORE_PROCESSES)
                .command(bin.join("pg_restore"))
                .args(["--no-owner", "--no-privileges", "--exit-on-error"])
                .arg(format!("--jobs={jobs}"))
                .arg(format!("--dbname={RESTORED_DATABASE}"))
                .arg(&point.path)
                .envs(sandbox.env(RESTORED_DATABASE))
                .output(timeout)
                .await?;
            reading_result(output, "pg_restore", sandbox.sandbox().jail_user(), point).map_err(explain_newer_dump)?;
        }
        BackupFormat::PgPlain { gzip } => {
            restore_plain(point, *gzip, sandbox, timeout, &mut runbook, signs).await?;
        }
        other => return Err(RestoreError::Unsupported(format!("{other:?}"))),
    }
    Ok(runbook)
}

/// Names the fix when `pg_restore` cannot read a dump made by a newer `pg_dump`.
fn explain_newer_dump(err: RestoreError) -> RestoreError {
    match err {
        RestoreError::Tool(text) if text.contains("unsupported version") => RestoreError::Tool(format!(
            "{text} (the dump was made by a newer pg_dump than this agent's PostgreSQL {} can read: \
             install a newer PostgreSQL major on the agent)",
            crate::capabilities::postgres_majors()
                .last()
                .copied()
                .unwrap_or_default()
        )),
        other => other,
    }
}

/// Restores a plain SQL dump: creates the roles it names, then feeds it to a jailed `psql` that
/// runs none of its meta-commands (see [`plain_dump`]).
async fn restore_plain(
    point: &RecoveryPoint,
    gzip: bool,
    sandbox: &PostgresSandbox,
    timeout: Duration,
    runbook_lines: &mut Vec<String>,
    signs: &mut Vec<String>,
) -> Result<(), RestoreError> {
    let bin = sandbox.bin_dir().to_owned();
    let path = point.path.clone();
    let roles = tokio::task::spawn_blocking(move || plain_dump::roles(&path, gzip))
        .await
        .map_err(|err| RestoreError::Tool(format!("cannot read the dump: {err}")))?
        .map_err(|err| RestoreError::Tool(format!("cannot read the dump: {err}")))?;
    if !roles.is_empty() {
        let create = roles
            .iter()
            .map(|role| {
                format!(
                    "DO $$ BEGIN CREATE ROLE {} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
                    psql::quote_identifier(role)
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        psql::Connection::sandbox(sandbox, RESTORED_DATABASE)
            .script(&create, timeout)
            .await?;
        runbook_lines.push(format!(
            "{}/psql -X -d {RESTORED_DATABASE} -c 'CREATE ROLE <each of: {}> NOLOGIN'",
            bin.display(),
            roles.join(", ")
        ));
    }
    let cat = if gzip { "gzip -dc" } else { "cat" };
    runbook_lines.push(format!(
        "{cat} {} | {}/psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d {RESTORED_DATABASE}",
        runbook::quote(&point.path),
        bin.display()
    ));
    let restrict = psql_restrict_key(&bin).await;
    let mut process = sandbox
        .client_jail()
        .shells(Shells::Tripwire)
        .allow(&["psql"])
        .command(bin.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-"])
        .envs(sandbox.env(RESTORED_DATABASE))
        .stdin_piped()
        .spawn()?;
    let stdin = process
        .take_stdin()
        .ok_or_else(|| RestoreError::Tool("psql has no stdin".to_owned()))?
        .into_owned_fd()
        .map_err(|err| RestoreError::Tool(format!("cannot feed psql: {err}")))?;
    let path = point.path.clone();
    let key = restrict.clone();
    let feeding =
        tokio::task::spawn_blocking(move || plain_dump::feed(&path, gzip, key.as_deref(), std::fs::File::from(stdin)));
    let output = process.wait_with_output(timeout).await;
    let report = feeding
        .await
        .map_err(|err| RestoreError::Tool(format!("cannot feed the dump: {err}")))?
        .map_err(|err| RestoreError::Tool(format!("cannot read the dump: {err}")))?;
    if report.meta_command_count > 0 {
        signs.push(format!(
            "the plain dump carries {} psql meta-command(s), which pg_dump never writes (e.g. `{}`); none was run",
            report.meta_command_count,
            report.meta_commands.first().map(String::as_str).unwrap_or_default()
        ));
    }
    let output = output?;
    if !output.success() && !report.other_meta_commands.is_empty() && output.stderr.contains("restricted") {
        return Err(RestoreError::Tool(format!(
            "the plain dump uses psql meta-commands that pg_dump does not write (`{}`): only a plain pg_dump of one database restores; dump without --create, or use the custom format",
            report.other_meta_commands.join("`, `")
        )));
    }
    tool_result(output, "psql")?;
    Ok(())
}

/// A fresh `\restrict` key when this major's `psql` supports it, `None` otherwise.
async fn psql_restrict_key(bin: &Path) -> Option<String> {
    let output = tokio::process::Command::new(bin.join("psql"))
        .arg("--version")
        .output()
        .await
        .ok()?;
    plain_dump::psql_supports_restrict(&String::from_utf8_lossy(&output.stdout)).then(plain_dump::restrict_key)
}

/// Restores a SQLite file copy into `sandbox`; returns the runbook lines and the restored path.
pub async fn restore_sqlite(
    point: &RecoveryPoint,
    sandbox: &DirSandbox,
    timeout: Duration,
) -> Result<(Vec<String>, PathBuf), RestoreError> {
    let target = sandbox.path().join("restored.sqlite");
    let output = sandbox
        .sandbox()
        .jail()
        .readable(&point.path, &grant_dir(point))
        .allow(&["cp"])
        .command("cp")
        .arg("--no-preserve=mode,ownership")
        .arg(&point.path)
        .arg(&target)
        .output(timeout)
        .await?;
    reading_result(output, "cp", sandbox.sandbox().jail_user(), point)?;
    let runbook = vec![
        format!("cp {} \"$RESTORE_DIR/restored.sqlite\"", runbook::quote(&point.path)),
        "sqlite3 \"$RESTORE_DIR/restored.sqlite\" 'PRAGMA integrity_check'".to_owned(),
    ];
    Ok((runbook, target))
}

/// Restores a files backup (directory snapshot or tar archive) into `sandbox`. Members of an
/// archive that try to leave its directory or create devices go to `signs`.
pub async fn restore_files(
    point: &RecoveryPoint,
    sandbox: &DirSandbox,
    timeout: Duration,
    signs: &mut Vec<String>,
) -> Result<(Vec<String>, PathBuf), RestoreError> {
    let target = sandbox.path().join("restored");
    let source = runbook::quote(&point.path);
    let mut runbook = Vec::new();
    let jail = sandbox
        .sandbox()
        .jail()
        .readable(&point.path, &grant_dir(point))
        .shells(Shells::Real)
        .allow(FILES_PROCESSES);
    let mkdir = jail.command("mkdir").arg(&target).output(timeout).await?;
    tool_result(mkdir, "mkdir")?;
    let output = match &point.format {
        BackupFormat::FilesDir => {
            runbook.push(format!("cp -a {source}/. \"$RESTORE_DIR/restored\""));
            jail.command("cp")
                .arg("-a")
                .arg(format!("{}/.", point.path.display()))
                .arg(&target)
                .output(timeout)
                .await?
        }
        BackupFormat::FilesTar { gzip } => {
            signs.extend(crate::backups::audit_tar(&point.path, *gzip));
            let flags = if *gzip { "-xzf" } else { "-xf" };
            runbook.push(format!("tar {flags} {source} -C \"$RESTORE_DIR/restored\""));
            jail.command("tar")
                .args([flags, "--no-same-owner", "--no-same-permissions"])
                .arg(&point.path)
                .arg("-C")
                .arg(&target)
                .output(timeout)
                .await?
        }
        other => return Err(RestoreError::Unsupported(format!("{other:?}"))),
    };
    let program = if matches!(point.format, BackupFormat::FilesDir) {
        "cp"
    } else {
        "tar"
    };
    reading_result(output, program, sandbox.sandbox().jail_user(), point)?;
    Ok((runbook, target))
}
