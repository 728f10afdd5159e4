//! Running SQL with the real `psql` client: check queries in sandboxes, and read-only queries
//! against production.
//!
//! `psql -X -At` prints any result type as text (booleans, bigints, numerics, timestamps), which
//! is what a check compares. Every connection to production goes through [`Connection::production`],
//! which sets `default_transaction_read_only=on` for the session (DESIGN.md §5.1): a statement that
//! would write fails in PostgreSQL itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// A failed query.
#[derive(Debug, thiserror::Error)]
pub enum PsqlError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error("query did not finish within {0:?}")]
    Timeout(Duration),
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Directory holding `psql` (the sandbox's PostgreSQL bin dir, or PATH lookup when None).
    pub bin_dir: Option<PathBuf>,
    /// A libpq connection string or URL.
    pub url: String,
    /// Extra libpq options (`PGOPTIONS`), e.g. read-only for production.
    pub options: Option<String>,
}

impl Connection {
    /// A read-only connection to production: every transaction is read-only.
    pub fn production(url: &str) -> Self {
        Self {
            bin_dir: None,
            url: url.to_owned(),
            options: Some("-c default_transaction_read_only=on -c statement_timeout=300000".into()),
        }
    }

    /// A read-write connection to a sandbox database.
    pub fn sandbox(bin_dir: &Path, url: String) -> Self {
        Self {
            bin_dir: Some(bin_dir.to_owned()),
            url,
            options: None,
        }
    }

    fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => crate::capabilities::postgres_majors()
                .last()
                .map(|major| PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/{name}")))
                .filter(|path| path.exists())
                .unwrap_or_else(|| PathBuf::from(name)),
        }
    }

    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.program(name));
        command
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGAPPNAME", "lifeboat-agent");
        if let Some(options) = &self.options {
            command.env("PGOPTIONS", options);
        }
        command
    }

    /// Runs one SQL statement; returns rows, each a vector of text columns.
    pub async fn query(&self, sql: &str, timeout: Duration) -> Result<Vec<Vec<String>>, PsqlError> {
        let mut command = self.command("psql");
        command.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-F",
            "\u{1f}",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &self.url,
            "-c",
            sql,
        ]);
        let output = run(command, "psql", timeout).await?;
        Ok(output
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| line.split('\u{1f}').map(str::to_owned).collect())
            .collect())
    }

    /// Runs one statement and returns the first column of the first row.
    pub async fn scalar(&self, sql: &str, timeout: Duration) -> Result<Option<String>, PsqlError> {
        Ok(self
            .query(sql, timeout)
            .await?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next()))
    }

    /// Runs a script in one transaction (a `transaction` check).
    pub async fn script(&self, sql: &str, timeout: Duration) -> Result<(), PsqlError> {
        let mut command = self.command("psql");
        command.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-d",
            &self.url,
            "-c",
            sql,
        ]);
        run(command, "psql", timeout).await.map(|_| ())
    }
}

/// Runs a prepared command; returns stdout, or the most useful error line of stderr.
pub async fn run(mut command: Command, program: &str, timeout: Duration) -> Result<String, PsqlError> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().map_err(|source| PsqlError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| PsqlError::Timeout(timeout))?
        .map_err(|source| PsqlError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(PsqlError::Failed(first_error_line(&stderr, program)))
}

/// Picks the line of a tool's stderr that explains the failure.
pub fn first_error_line(stderr: &str, program: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    lines
        .iter()
        .find(|line| line.contains("error:") || line.starts_with("ERROR") || line.contains("FATAL"))
        .or_else(|| lines.first())
        .map_or_else(
            || format!("{program} failed without a message"),
            |line| (*line).to_owned(),
        )
}

/// Quotes an SQL identifier (`bookings` → `"bookings"`, `public.t` → `"public"."t"`).
pub fn quote_identifier(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_per_part() {
        assert_eq!(quote_identifier("bookings"), "\"bookings\"");
        assert_eq!(quote_identifier("public.t"), "\"public\".\"t\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn the_error_line_is_chosen() {
        let stderr = "pg_restore: connecting\npg_restore: error: could not read input file: end of file\n";
        assert_eq!(
            first_error_line(stderr, "pg_restore"),
            "pg_restore: error: could not read input file: end of file"
        );
        assert_eq!(first_error_line("", "psql"), "psql failed without a message");
    }
}
