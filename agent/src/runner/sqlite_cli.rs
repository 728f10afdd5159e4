//! SQL on a restored SQLite file through the `sqlite3` command-line shell, in the sandbox's jail.
//!
//! A restored database file is untrusted input, and SQLite's parser of database files is native
//! code: it runs in the jail, as the sandbox user, not in the agent's process. (Production's own
//! SQLite file, opened read-only, is read in-process.)

use std::path::Path;
use std::time::Duration;

use crate::jail::{Jail, JailError};

/// Separates columns in `sqlite3` output (a control character no check result contains).
const SEPARATOR: &str = "\u{1f}";

/// Runs `sql` on the database at `path`; returns rows of text columns (NULL as an empty string).
pub async fn query(jail: &Jail, path: &Path, sql: &str, timeout: Duration) -> Result<Vec<Vec<String>>, String> {
    let output = jail
        .command("sqlite3")
        .args([
            "-batch",
            "-bail",
            "-noheader",
            "-list",
            "-separator",
            SEPARATOR,
            "-nullvalue",
            "",
        ])
        .arg(path)
        .arg(sql)
        .output(timeout)
        .await
        .map_err(|err| describe(&err))?;
    if !output.success() {
        let message = output
            .stderr
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("sqlite3 failed without a message");
        return Err(message.trim().to_owned());
    }
    Ok(output
        .stdout
        .lines()
        .map(|line| line.split(SEPARATOR).map(str::to_owned).collect())
        .collect())
}

/// Runs `sql` and returns the first column of the first row.
pub async fn scalar(jail: &Jail, path: &Path, sql: &str, timeout: Duration) -> Result<Option<String>, String> {
    Ok(query(jail, path, sql, timeout)
        .await?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next()))
}

/// Runs a script in one transaction.
pub async fn script(jail: &Jail, path: &Path, sql: &str, timeout: Duration) -> Result<(), String> {
    query(jail, path, &format!("BEGIN;\n{sql}\n;COMMIT;"), timeout)
        .await
        .map(|_| ())
}

fn describe(err: &JailError) -> String {
    match err {
        JailError::Setup(text) if text.contains("sqlite3") => {
            format!("{text} (install the Debian package sqlite3 on the agent)")
        }
        other => other.to_string(),
    }
}
