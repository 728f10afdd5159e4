//! Restoring a restic snapshot into a files sandbox with `restic restore`.
//!
//! The repository password reaches restic through its environment (`RESTIC_PASSWORD`), never its
//! command line; the runbook writes it as `${RESTIC_PASSWORD}`. restic's own error line (a
//! missing pack, a wrong password) becomes the restore's failure.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::backups::{BackupFormat, RecoveryPoint};
use crate::runner::psql;
use crate::runner::restore::RestoreError;
use crate::sandbox::DirSandbox;

/// Restores the restic snapshot `point` into `sandbox`; returns the runbook lines and the
/// restored directory.
pub async fn restore_restic(
    point: &RecoveryPoint,
    password: Option<&str>,
    sandbox: &DirSandbox,
    timeout: Duration,
) -> Result<(Vec<String>, PathBuf), RestoreError> {
    if point.format != BackupFormat::ResticSnapshot {
        return Err(RestoreError::Unsupported(format!("{:?}", point.format)));
    }
    let password = password.ok_or_else(|| {
        RestoreError::Tool(format!(
            "no password for restic repository {}: set password_env or password_file",
            point.path.display()
        ))
    })?;
    // The full id when discovery recorded it; the short id restic also accepts otherwise.
    let snapshot = point
        .detail
        .get("snapshot_id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(&point.id)
        .to_owned();
    let target = sandbox.path().join("restored");
    tokio::fs::create_dir_all(&target)
        .await
        .map_err(|err| RestoreError::Sandbox(err.to_string()))?;
    let mut command = Command::new("restic");
    command
        .arg("--repo")
        .arg(&point.path)
        .args(["--no-cache", "restore"])
        .arg(&snapshot)
        .arg("--target")
        .arg(&target)
        .env("RESTIC_PASSWORD", password)
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .env("LC_ALL", "C")
        .kill_on_drop(true);
    let runbook = vec![format!(
        "RESTIC_PASSWORD=\"${{RESTIC_PASSWORD}}\" restic --repo {} --no-cache restore {snapshot} --target \"$SANDBOX/restored\"",
        shell_quote(&point.path.display().to_string())
    )];
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            RestoreError::Tool("restic is not installed: install the Debian package restic".to_owned())
        } else {
            RestoreError::Tool(format!("cannot run restic: {err}"))
        }
    })?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| RestoreError::Tool(format!("restic restore did not finish within {timeout:?}")))?
        .map_err(|err| RestoreError::Tool(format!("cannot run restic: {err}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(RestoreError::Tool(format!(
            "restic restore failed: {}",
            explain(&stderr)
        )));
    }
    Ok((runbook, target))
}

/// restic's summary line (`Fatal: …`) with the first line naming what is damaged.
fn explain(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    let fatal = lines.iter().find(|line| line.starts_with("Fatal:"));
    let cause = lines
        .iter()
        .find(|line| line.starts_with("ignoring error for") || line.starts_with("Unknown blob"))
        .or_else(|| {
            lines
                .iter()
                .find(|line| line.contains("no such file") || line.contains("error"))
        });
    match (fatal, cause) {
        (Some(fatal), Some(cause)) => format!("{fatal} ({cause})"),
        (Some(line), None) | (None, Some(line)) => (*line).to_owned(),
        (None, None) => psql::first_error_line(stderr, "restic"),
    }
}

fn shell_quote(text: &str) -> String {
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:".contains(c)) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_explanation_names_the_damage() {
        let stderr = "Load(<data/1959b7f280>, 37, 0) returned error, retrying after 552ms: open x: no such file or directory\n\
                      ignoring error for /data/test: StreamPack: open repo/data/19/1959: no such file or directory\n\
                      Fatal: There were 2 errors\n";
        assert_eq!(
            explain(stderr),
            "Fatal: There were 2 errors (ignoring error for /data/test: StreamPack: open repo/data/19/1959: no such file or directory)"
        );
        assert_eq!(explain("Unknown blob f2ca\ngithub.com/x\n"), "Unknown blob f2ca");
    }
}
