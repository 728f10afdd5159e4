//! The business checks an operator declares (`[[test.check]]`, `docs/agent-config.md`), run against
//! a restored sandbox: `sql`, `row_counts` (against production, read-only), `schema` (restored vs
//! production: the differences are drift), `transaction`, `command`, `service` + `http`, and
//! `integrity` (`pg_amcheck`, `PRAGMA integrity_check`, `restic check`).
//!
//! Everything that reads the restored data runs in the sandbox's jail: `psql`, `sqlite3`,
//! `pg_amcheck`, `restic`, and the operator's own `command` and `service`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::Row as _;

use crate::config::{CheckKind, CheckSpec, Tolerance};
use crate::jail::{Jail, Shells};
use crate::runner::psql::{self, Connection};
use crate::runner::sqlite_cli;
use crate::verdict::CheckReport;

/// What a check runs against, with the sandbox's jail that every step on it runs in.
#[derive(Debug, Clone)]
pub enum Target {
    /// A restored PostgreSQL database in a sandbox.
    Postgres {
        connection: Connection,
        bin_dir: PathBuf,
        database: String,
        /// The sandbox's client jail (its data directory and socket).
        jail: Jail,
        /// `SANDBOX_DATABASE_URL` for the operator's commands: the socket, no password (that is
        /// in `PGPASSWORD`).
        url: String,
    },
    /// A restored SQLite file (a copy in a sandbox).
    Sqlite { path: PathBuf, jail: Jail },
    /// Restored files in a sandbox directory; `restic` when they came from a restic snapshot.
    Files {
        dir: PathBuf,
        restic: Option<ResticRepository>,
        jail: Jail,
    },
}

impl Target {
    /// The sandbox's jail.
    pub fn jail(&self) -> &Jail {
        match self {
            Self::Postgres { jail, .. } | Self::Sqlite { jail, .. } | Self::Files { jail, .. } => jail,
        }
    }
}

/// The restic repository a files restore came from, for the `integrity` check.
#[derive(Clone)]
pub struct ResticRepository {
    pub path: PathBuf,
    pub password: Option<String>,
}

impl std::fmt::Debug for ResticRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResticRepository")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The production side of comparisons, always opened read-only.
#[derive(Debug, Clone)]
pub enum Production {
    Postgres(Connection),
    Sqlite(PathBuf),
}

/// Runs one check.
pub async fn run(
    check: &CheckSpec,
    target: &Target,
    production: Option<&Production>,
    timeout: Duration,
) -> CheckReport {
    let started = Instant::now();
    let (passed, message, drift) = match &check.kind {
        CheckKind::Sql { sql, min, max } => sql_check(sql, *min, *max, target, timeout).await,
        CheckKind::RowCounts { tables, tolerance } => {
            row_counts_check(tables, *tolerance, target, production, timeout).await
        }
        CheckKind::Schema => schema_check(target, production, timeout).await,
        CheckKind::Transaction { sql } => transaction_check(sql, target, timeout).await,
        CheckKind::Service { .. } => crate::runner::service::check(check, target, timeout).await,
        CheckKind::Command { command } => command_check(check, command, target, timeout).await,
        CheckKind::Integrity => integrity_check(target, timeout).await,
    };
    CheckReport {
        name: check.name.clone(),
        kind: check.kind.name(),
        passed,
        message,
        seconds: started.elapsed().as_secs_f64(),
        drift,
    }
}

type Outcome = (bool, String, Vec<String>);

fn fail(message: impl Into<String>) -> Outcome {
    (false, message.into(), vec![])
}

async fn sqlite_pool(path: &Path, read_only: bool) -> Result<sqlx::SqlitePool, sqlx::Error> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(read_only)
        .create_if_missing(false);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
}

/// Runs `sql` on production's SQLite file (read-only, in-process) and returns the first column
/// of the first row as text.
async fn production_sqlite_scalar(path: &Path, sql: &str) -> Result<Option<String>, String> {
    let read_only = true;
    let pool = sqlite_pool(path, read_only).await.map_err(|err| err.to_string())?;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_optional(&pool)
        .await
        .map_err(|err| err.to_string())?;
    pool.close().await;
    Ok(row.and_then(|row| {
        row.try_get::<Option<String>, _>(0)
            .ok()
            .flatten()
            .or_else(|| row.try_get::<Option<i64>, _>(0).ok().flatten().map(|v| v.to_string()))
            .or_else(|| row.try_get::<Option<f64>, _>(0).ok().flatten().map(|v| v.to_string()))
            .or_else(|| row.try_get::<Option<bool>, _>(0).ok().flatten().map(|v| v.to_string()))
    }))
}

/// Evaluates a scalar result: booleans must be true; numbers must lie within min/max (or be
/// non-zero when no bounds are given).
pub fn judge(value: Option<&str>, min: Option<f64>, max: Option<f64>) -> (bool, String) {
    let Some(value) = value else {
        return (false, "expected a value, got no rows".into());
    };
    match value.trim() {
        "t" | "true" => return (true, "true".into()),
        "f" | "false" => return (false, "expected true, got false".into()),
        _ => {}
    }
    let Ok(number) = value.trim().parse::<f64>() else {
        return (false, format!("expected a boolean or a number, got {value:?}"));
    };
    if min.is_none() && max.is_none() {
        return if number != 0.0 {
            (true, format!("{value} (non-zero)"))
        } else {
            (false, "expected a non-zero result, got 0".into())
        };
    }
    if let Some(min) = min
        && number < min
    {
        return (false, format!("expected at least {min}, got {value}"));
    }
    if let Some(max) = max
        && number > max
    {
        return (false, format!("expected at most {max}, got {value}"));
    }
    (true, format!("{value} within bounds"))
}

async fn sql_check(sql: &str, min: Option<f64>, max: Option<f64>, target: &Target, timeout: Duration) -> Outcome {
    let value = match target {
        Target::Postgres { connection, .. } => connection.scalar(sql, timeout).await.map_err(|err| err.to_string()),
        Target::Sqlite { path, jail } => sqlite_cli::scalar(jail, path, sql, timeout).await,
        Target::Files { .. } => return fail("an sql check needs a database asset"),
    };
    match value {
        Ok(value) => {
            let (passed, message) = judge(value.as_deref(), min, max);
            (passed, message, vec![])
        }
        Err(err) => fail(format!("query failed: {err}")),
    }
}

async fn count_rows(target: &Target, table: &str, timeout: Duration) -> Result<i64, String> {
    let sql = format!("select count(*) from {}", psql::quote_identifier(table));
    let value = match target {
        Target::Postgres { connection, .. } => connection.scalar(&sql, timeout).await.map_err(|err| err.to_string())?,
        Target::Sqlite { path, jail } => sqlite_cli::scalar(jail, path, &sql, timeout).await?,
        Target::Files { .. } => return Err("not a database".into()),
    };
    value
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| format!("no count for {table}"))
}

/// Runs `sql` against production (read-only) and returns the first column of the first row.
pub(crate) async fn production_scalar(
    production: &Production,
    sql: &str,
    timeout: Duration,
) -> Result<Option<String>, String> {
    match production {
        Production::Postgres(connection) => connection.scalar(sql, timeout).await.map_err(|err| err.to_string()),
        Production::Sqlite(path) => production_sqlite_scalar(path, sql).await,
    }
}

async fn count_production_rows(production: &Production, table: &str, timeout: Duration) -> Result<i64, String> {
    let sql = format!("select count(*) from {}", psql::quote_identifier(table));
    production_scalar(production, &sql, timeout)
        .await?
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| format!("no count for {table} in production"))
}

async fn row_counts_check(
    tables: &[String],
    tolerance: Tolerance,
    target: &Target,
    production: Option<&Production>,
    timeout: Duration,
) -> Outcome {
    let Some(production) = production else {
        return fail("row_counts needs the asset's production url or path to compare against");
    };
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for table in tables {
        let restored = match count_rows(target, table, timeout).await {
            Ok(count) => count,
            Err(err) => {
                problems.push(format!("{table}: cannot count restored rows ({err})"));
                continue;
            }
        };
        let live = match count_production_rows(production, table, timeout).await {
            Ok(count) => count,
            Err(err) => {
                problems.push(format!("{table}: cannot count production rows ({err})"));
                continue;
            }
        };
        let difference = (live - restored).unsigned_abs() as f64;
        if difference > tolerance.allowed(live) {
            problems.push(format!("{table}: restored {restored} rows, production has {live}"));
        } else {
            seen.push(format!("{table} {restored}/{live}"));
        }
    }
    if problems.is_empty() {
        (
            true,
            format!("row counts within tolerance: {}", seen.join(", ")),
            vec![],
        )
    } else {
        fail(problems.join("; "))
    }
}

pub(crate) const POSTGRES_SCHEMA_SQL: &str = "\
select 'table ' || table_schema || '.' || table_name from information_schema.tables \
 where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE' \
union all select 'column ' || table_schema || '.' || table_name || '.' || column_name || ' ' || data_type \
 from information_schema.columns where table_schema not in ('pg_catalog', 'information_schema') \
union all select 'index ' || schemaname || '.' || indexname from pg_indexes \
 where schemaname not in ('pg_catalog', 'information_schema') \
union all select 'extension ' || extname from pg_extension where extname <> 'plpgsql'";

pub(crate) const SQLITE_SCHEMA_SQL: &str = "\
select 'table ' || m.name from sqlite_master m where m.type = 'table' and m.name not like 'sqlite_%' \
union all select 'column ' || m.name || '.' || p.name || ' ' || lower(p.type) from sqlite_master m \
 join pragma_table_info(m.name) p where m.type = 'table' and m.name not like 'sqlite_%' \
union all select 'index ' || name from sqlite_master where type = 'index' and name not like 'sqlite_%'";

async fn production_sqlite_lines(path: &Path, sql: &'static str) -> Result<BTreeSet<String>, String> {
    let pool = sqlite_pool(path, true).await.map_err(|err| err.to_string())?;
    let rows = sqlx::query(sql).fetch_all(&pool).await.map_err(|err| err.to_string())?;
    pool.close().await;
    Ok(rows.iter().filter_map(|row| row.try_get::<String, _>(0).ok()).collect())
}

/// The schema of the restored database, one line per table, column, index and extension.
pub async fn restored_schema(target: &Target, timeout: Duration) -> Result<BTreeSet<String>, String> {
    match target {
        Target::Postgres { connection, .. } => Ok(connection
            .query(POSTGRES_SCHEMA_SQL, timeout)
            .await
            .map_err(|err| err.to_string())?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect()),
        Target::Sqlite { path, jail } => Ok(sqlite_cli::query(jail, path, SQLITE_SCHEMA_SQL, timeout)
            .await?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect()),
        Target::Files { .. } => Err("not a database".into()),
    }
}

/// The schema of production, read-only.
pub async fn production_schema(production: &Production, timeout: Duration) -> Result<BTreeSet<String>, String> {
    match production {
        Production::Postgres(connection) => Ok(connection
            .query(POSTGRES_SCHEMA_SQL, timeout)
            .await
            .map_err(|err| err.to_string())?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect()),
        Production::Sqlite(path) => production_sqlite_lines(path, SQLITE_SCHEMA_SQL).await,
    }
}

/// Describes schema differences in words: `+` exists in production only, `-` in the backup only.
pub fn schema_drift(restored: &BTreeSet<String>, production: &BTreeSet<String>) -> Vec<String> {
    let mut drift: Vec<String> = production
        .difference(restored)
        .map(|line| format!("+ {line} (in production, not in the backup)"))
        .collect();
    drift.extend(
        restored
            .difference(production)
            .map(|line| format!("- {line} (in the backup, gone from production)")),
    );
    drift
}

async fn schema_check(target: &Target, production: Option<&Production>, timeout: Duration) -> Outcome {
    let Some(production) = production else {
        return fail("a schema check needs the asset's production url or path");
    };
    let restored = match restored_schema(target, timeout).await {
        Ok(schema) => schema,
        Err(err) => return fail(format!("cannot read the restored schema: {err}")),
    };
    let live = match production_schema(production, timeout).await {
        Ok(schema) => schema,
        Err(err) => return fail(format!("cannot read the production schema: {err}")),
    };
    let drift = schema_drift(&restored, &live);
    let message = if drift.is_empty() {
        format!("schema matches production ({} objects)", restored.len())
    } else {
        format!("{} schema difference(s) since the backup", drift.len())
    };
    // Drift is reported as a finding; the restored schema itself is usable.
    (true, message, drift)
}

async fn transaction_check(script: &str, target: &Target, timeout: Duration) -> Outcome {
    match target {
        Target::Postgres { connection, .. } => match connection.script(script, timeout).await {
            Ok(()) => (true, "the workflow committed".into(), vec![]),
            Err(err) => fail(format!("the workflow failed: {err}")),
        },
        Target::Sqlite { path, jail } => match sqlite_cli::script(jail, path, script, timeout).await {
            Ok(()) => (true, "the workflow committed".into(), vec![]),
            Err(err) => fail(format!("the workflow failed: {err}")),
        },
        Target::Files { .. } => fail("a transaction check needs a database asset"),
    }
}

/// Environment for commands and services run against the sandbox.
pub fn sandbox_env(target: &Target) -> Vec<(String, String)> {
    match target {
        Target::Postgres { connection, url, .. } => {
            let mut env = connection.env().to_vec();
            env.push(("SANDBOX_DATABASE_URL".into(), url.clone()));
            env
        }
        Target::Sqlite { path, .. } => vec![
            ("SANDBOX_DATABASE_URL".into(), format!("sqlite://{}", path.display())),
            ("SANDBOX_PATH".into(), path.display().to_string()),
        ],
        Target::Files { dir, .. } => vec![("SANDBOX_PATH".into(), dir.display().to_string())],
    }
}

/// The jail for the operator's own program: the sandbox's, real shells, and the paths the check
/// names, read-only.
pub fn operator_jail(check: &CheckSpec, target: &Target) -> Jail {
    check
        .paths
        .iter()
        .fold(target.jail().clone().shells(Shells::Real), |jail, path| {
            jail.readable(path, std::path::Path::new(path))
        })
}

async fn command_check(check: &CheckSpec, command_line: &str, target: &Target, timeout: Duration) -> Outcome {
    // The operator's own command: real shells, and no process of it counts as a stray.
    let output = operator_jail(check, target)
        .command("sh")
        .arg("-c")
        .arg(command_line)
        .envs(sandbox_env(target))
        .output(timeout)
        .await;
    match output {
        Ok(output) if output.success() => (true, "exited 0".into(), vec![]),
        Ok(output) => fail(format!(
            "{command_line:?} failed ({}): {}",
            output.status,
            psql::first_error_line(&output.stderr, "the command")
        )),
        Err(err) => fail(format!("{command_line:?} could not run: {err}")),
    }
}

async fn integrity_check(target: &Target, timeout: Duration) -> Outcome {
    match target {
        Target::Postgres {
            bin_dir,
            database,
            connection,
            jail,
            ..
        } => {
            let output = jail
                .clone()
                .allow(&["pg_amcheck"])
                .command(bin_dir.join("pg_amcheck"))
                .args(["--install-missing", "--heapallindexed", "--no-dependent-indexes"])
                .arg("-d")
                .arg(database)
                .envs(connection.env().iter().cloned())
                .output(timeout)
                .await;
            match output {
                Ok(output) if output.success() => (true, "pg_amcheck found no corruption".into(), vec![]),
                Ok(output) => fail(format!(
                    "pg_amcheck: {}",
                    psql::first_error_line(&output.stderr, "pg_amcheck")
                )),
                Err(err) => fail(format!("pg_amcheck could not run: {err}")),
            }
        }
        Target::Sqlite { path, jail } => {
            match sqlite_cli::scalar(jail, path, "PRAGMA integrity_check", timeout).await {
                Ok(Some(value)) if value == "ok" => (true, "PRAGMA integrity_check: ok".into(), vec![]),
                Ok(value) => fail(format!("PRAGMA integrity_check: {}", value.unwrap_or_default())),
                Err(err) => fail(format!("PRAGMA integrity_check failed: {err}")),
            }
        }
        Target::Files {
            restic: Some(repository),
            jail,
            ..
        } => {
            // Reads a tenth of the pack files back and checks their hashes, plus the structure.
            let output = jail
                .clone()
                .readable(&repository.path, &repository.path)
                .allow(&["restic"])
                .command("restic")
                .arg("--repo")
                .arg(&repository.path)
                .args(["--no-cache", "--no-lock", "check", "--read-data-subset=10%"])
                .env("RESTIC_PASSWORD", repository.password.as_deref().unwrap_or_default())
                .output(timeout)
                .await;
            match output {
                Ok(output) if output.success() => {
                    (true, "restic check --read-data-subset=10%: no errors".into(), vec![])
                }
                Ok(output) => fail(format!(
                    "restic check: {}",
                    psql::first_error_line(&output.stderr, "restic")
                )),
                Err(err) => fail(format!("restic check could not run: {err}")),
            }
        }
        Target::Files { dir, restic: None, .. } => match std::fs::read_dir(dir) {
            Ok(entries) => {
                if entries.count() > 0 {
                    (true, "restored files are readable".into(), vec![])
                } else {
                    fail("the restore produced no files")
                }
            }
            Err(err) => fail(format!("cannot read restored files: {err}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_booleans_and_bounds() {
        assert!(judge(Some("t"), None, None).0);
        assert_eq!(judge(Some("f"), None, None), (false, "expected true, got false".into()));
        assert!(judge(Some("412"), Some(400.0), Some(500.0)).0);
        assert!(!judge(Some("12"), Some(400.0), None).0);
        assert!(!judge(Some("0"), None, None).0);
        assert!(!judge(None, None, None).0);
        assert!(!judge(Some("hello"), None, None).0);
    }

    #[test]
    fn drift_lists_both_directions() {
        let restored: BTreeSet<String> = ["table public.a", "column public.a.x integer"].map(String::from).into();
        let live: BTreeSet<String> = [
            "table public.a",
            "column public.a.x integer",
            "column public.a.deposit numeric",
            "extension pg_trgm",
        ]
        .map(String::from)
        .into();
        let drift = schema_drift(&restored, &live);
        assert_eq!(drift.len(), 2);
        assert!(drift.iter().any(|line| line.contains("deposit")));
        assert!(drift.iter().any(|line| line.contains("pg_trgm")));
    }
}
