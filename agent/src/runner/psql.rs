//! SQL through the real `psql` client: check queries in sandboxes (in the sandbox's jail), and
//! read-only queries against production.
//!
//! `psql -X -At` prints any result type as text (booleans, bigints, numerics, timestamps), which
//! is what a check compares. Every connection to production goes through [`Connection::production`],
//! which sets `default_transaction_read_only=on` for the session (Lifeboat never destroys what it
//! protects): a statement that would write fails in PostgreSQL itself.
//!
//! No password is ever on a command line: a production URL's password is taken out of it and
//! handed to `psql` as `PGPASSWORD`, and a sandbox is reached through libpq's environment.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::jail::{Jail, JailError};
use crate::sandbox::PostgresSandbox;

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
    #[error(transparent)]
    Jail(#[from] JailError),
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Directory holding `psql` (the sandbox's PostgreSQL bin dir, or the newest installed).
    bin_dir: Option<PathBuf>,
    /// What `psql -d` gets: a URL or key/value string without its password, or a database name.
    conninfo: String,
    /// libpq variables: the password, the socket, read-only options.
    env: Vec<(String, String)>,
    /// The sandbox's client jail, for sandbox connections.
    jail: Option<Box<Jail>>,
}

impl Connection {
    /// A read-only connection to production: every transaction is read-only.
    pub fn production(url: &str) -> Self {
        let (conninfo, password) = split_password(url);
        let mut env = vec![
            (
                "PGOPTIONS".to_owned(),
                "-c default_transaction_read_only=on -c statement_timeout=300000".to_owned(),
            ),
            ("PGCONNECT_TIMEOUT".to_owned(), "10".to_owned()),
            ("PGAPPNAME".to_owned(), "lifeboat-agent".to_owned()),
        ];
        if let Some(password) = password {
            env.push(("PGPASSWORD".to_owned(), password));
        }
        Self {
            bin_dir: None,
            conninfo,
            env,
            jail: None,
        }
    }

    /// A read-write connection to `database` in a sandbox, run in the sandbox's jail.
    pub fn sandbox(sandbox: &PostgresSandbox, database: &str) -> Self {
        Self {
            bin_dir: Some(sandbox.bin_dir().to_owned()),
            conninfo: database.to_owned(),
            env: sandbox.env(database),
            jail: Some(Box::new(sandbox.client_jail().allow(&["psql"]))),
        }
    }

    /// The libpq environment of this connection (password included): for tools and checks that
    /// connect on their own.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// What `psql -d` gets (never a password).
    pub fn conninfo(&self) -> &str {
        &self.conninfo
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

    /// Runs `psql` with `args` after the connection options; returns stdout.
    async fn psql(&self, args: &[&str], timeout: Duration) -> Result<String, PsqlError> {
        let program = self.program("psql");
        let mut all: Vec<&str> = vec!["-X", "-v", "ON_ERROR_STOP=1", "-d", &self.conninfo];
        all.extend_from_slice(args);
        match &self.jail {
            Some(jail) => {
                let output = jail
                    .command(&program)
                    .args(all)
                    .envs(self.env.iter().cloned())
                    .output(timeout)
                    .await?;
                if output.success() {
                    Ok(output.stdout)
                } else {
                    Err(PsqlError::Failed(first_error_line(&output.stderr, "psql")))
                }
            }
            None => {
                let mut command = Command::new(&program);
                command
                    .args(all)
                    .envs(self.env.iter().cloned())
                    .stdin(Stdio::null())
                    .kill_on_drop(true);
                run(command, "psql", timeout).await
            }
        }
    }

    /// Runs one SQL statement; returns rows, each a vector of text columns.
    pub async fn query(&self, sql: &str, timeout: Duration) -> Result<Vec<Vec<String>>, PsqlError> {
        let output = self
            .psql(&["-q", "-A", "-t", "-F", "\u{1f}", "-c", sql], timeout)
            .await?;
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
        self.psql(&["-q", "--single-transaction", "-c", sql], timeout)
            .await
            .map(|_| ())
    }
}

/// Takes the password out of a libpq connection string — a `postgres://` URL or `key=value`
/// pairs — returning the string without it and the password (percent-decoded for URLs).
pub fn split_password(conninfo: &str) -> (String, Option<String>) {
    let trimmed = conninfo.trim();
    let scheme_end = ["postgresql://", "postgres://"]
        .iter()
        .find(|scheme| trimmed.starts_with(**scheme))
        .map(|scheme| scheme.len());
    match scheme_end {
        Some(start) => split_url_password(trimmed, start),
        None => split_keyword_password(trimmed),
    }
}

fn split_url_password(url: &str, start: usize) -> (String, Option<String>) {
    let rest = &url[start..];
    // The authority ends at the first '/', '?' or '#'; userinfo ends at its *last* '@' (an
    // unescaped '@' in a password is common).
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return (url.to_owned(), None);
    };
    let userinfo = &authority[..at];
    let Some((user, password)) = userinfo.split_once(':') else {
        return (url.to_owned(), None);
    };
    let without = format!("{}{user}@{}", &url[..start], &rest[at + 1..]);
    (without, Some(percent_decode(password)))
}

fn split_keyword_password(conninfo: &str) -> (String, Option<String>) {
    let mut kept = Vec::new();
    let mut password = None;
    for (key, value) in keyword_pairs(conninfo) {
        if key == "password" {
            password = Some(value);
        } else {
            kept.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    (kept.join(" "), password)
}

/// Parses `key=value` pairs as libpq does: values may be single-quoted with `\'` and `\\`.
fn keyword_pairs(conninfo: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            return pairs;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return pairs;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    other => value.push(other),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Runs a prepared command (outside any jail); returns stdout, or the most useful error line of
/// stderr.
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

    #[test]
    fn passwords_are_taken_out_of_urls_and_keyword_strings() {
        assert_eq!(
            split_password("postgres://app:s3cr%40t@db.internal:5432/rentals?sslmode=require"),
            (
                "postgres://app@db.internal:5432/rentals?sslmode=require".to_owned(),
                Some("s3cr@t".to_owned())
            )
        );
        // An unescaped '@' in the password: the host is after the last one.
        assert_eq!(
            split_password("postgresql://app:p@ss@db:5432/x"),
            ("postgresql://app@db:5432/x".to_owned(), Some("p@ss".to_owned()))
        );
        assert_eq!(
            split_password("postgres://app@db/x"),
            ("postgres://app@db/x".to_owned(), None)
        );
        let (rest, password) = split_password("host=db password='a b\\'c' dbname=rentals");
        assert_eq!(password.as_deref(), Some("a b'c"));
        assert_eq!(rest, "host='db' dbname='rentals'");
    }
}
