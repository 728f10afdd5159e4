//! Restoring a restic snapshot into a files sandbox.
//!
//! Two jails joined by a pipe: `restic dump --archive tar` reads the repository (and nothing
//! else) and `tar -x` writes the sandbox (and nothing else). `restic restore` would try to give
//! every file its original owner, which the sandbox user cannot (and should not) do; the runbook
//! still says `restic restore`, which is how a person recovers as root. The repository password
//! reaches restic through its environment (`RESTIC_PASSWORD`), never its command line; the
//! runbook writes it as `${RESTIC_PASSWORD}`. restic's own error line (a missing pack, a wrong
//! password) becomes the restore's failure.

use std::path::PathBuf;
use std::time::Duration;

use crate::backups::{BackupFormat, RecoveryPoint};
use crate::jail::{Jail, JailOutput};
use crate::runner::psql;
use crate::runner::restore::RestoreError;
use crate::runner::runbook;
use crate::sandbox::DirSandbox;

/// The only process a restic step runs.
const RESTIC_PROCESSES: &[&str] = &["restic"];
/// Node types of a snapshot that no backup of files needs restored.
const DEVICE_TYPES: [&str; 2] = ["dev", "chardev"];
/// How many device nodes are named in a sign of tampering.
const MAX_NAMED: usize = 3;

/// Restores the restic snapshot `point` into `sandbox`; returns the runbook lines and the
/// restored directory. Device nodes in the snapshot go to `signs`.
pub async fn restore_restic(
    point: &RecoveryPoint,
    password: Option<&str>,
    sandbox: &DirSandbox,
    timeout: Duration,
    signs: &mut Vec<String>,
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
    // Reading the repository: a jail that sees it, read-only, and nothing of the sandbox.
    let reader = sandbox
        .sandbox()
        .jail_for_reading()
        .readable(&point.path, &point.path)
        .allow(RESTIC_PROCESSES);
    let listing = restic(&reader, point, password)
        .args(["ls", "--json"])
        .arg(&snapshot)
        .output(timeout)
        .await?;
    if listing.success() {
        signs.extend(device_nodes(&listing.stdout));
    }
    let writer = sandbox.sandbox().jail().allow(&["mkdir", "tar"]);
    let mkdir = writer.command("mkdir").arg(&target).output(timeout).await?;
    crate::runner::restore::tool_result(mkdir, "mkdir")?;
    let mut dump = restic(&reader, point, password)
        .args(["dump", "--archive", "tar"])
        .arg(&snapshot)
        .arg("/")
        .spawn()?;
    let stream = dump
        .take_stdout()
        .ok_or_else(|| RestoreError::Tool("restic dump has no output".to_owned()))?
        .into_owned_fd()
        .map_err(|err| RestoreError::Tool(format!("cannot connect restic to tar: {err}")))?;
    let extract = writer
        .command("tar")
        .args(["-x", "--no-same-owner", "--no-same-permissions", "-C"])
        .arg(&target)
        .stdin_file(std::fs::File::from(stream))
        .output(timeout);
    let (dumped, extracted) = tokio::join!(dump.wait_with_output(timeout), extract);
    let runbook = vec![format!(
        "RESTIC_PASSWORD=\"${{RESTIC_PASSWORD}}\" restic --repo {} --no-cache restore {snapshot} --target \"$RESTORE_DIR/restored\"",
        runbook::quote(&point.path)
    )];
    let dumped = dumped?;
    if !dumped.success()
        && dumped.stderr.to_ascii_lowercase().contains("permission denied")
        && !sandbox.sandbox().jail_user().may_read_tree(&point.path)
    {
        return Err(RestoreError::Jail(
            sandbox.sandbox().jail_user().unreadable(&point.path, &point.path),
        ));
    }
    check(dumped)?;
    crate::runner::restore::tool_result(extracted?, "tar")?;
    Ok((runbook, target))
}

/// A restic command on `point`'s repository in `jail`, the password in its environment.
fn restic(jail: &Jail, point: &RecoveryPoint, password: &str) -> crate::jail::JailCommand {
    jail.command("restic")
        .arg("--repo")
        .arg(&point.path)
        .args(["--no-cache", "--no-lock", "--quiet"])
        .env("RESTIC_PASSWORD", password)
}

fn check(output: JailOutput) -> Result<(), RestoreError> {
    if output.success() {
        return Ok(());
    }
    Err(RestoreError::Tool(format!(
        "restic restore failed: {}",
        explain(&output.stderr)
    )))
}

/// The device nodes `restic ls --json` lists, as a sign of tampering.
fn device_nodes(listing: &str) -> Option<String> {
    let devices: Vec<String> = listing
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|node| {
            node.get("type")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|kind| DEVICE_TYPES.contains(&kind))
        })
        .filter_map(|node| node.get("path").and_then(serde_json::Value::as_str).map(str::to_owned))
        .collect();
    (!devices.is_empty()).then(|| {
        format!(
            "the snapshot holds {} device node(s) ({}): restored by a privileged process they would open the machine's devices",
            devices.len(),
            devices.iter().take(MAX_NAMED).cloned().collect::<Vec<_>>().join(", ")
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_nodes_are_signs_of_tampering() {
        let listing = "{\"time\":\"2026-12-04T10:00:00Z\",\"struct_type\":\"snapshot\"}\n\
                       {\"name\":\"a\",\"type\":\"file\",\"path\":\"/data/a\",\"struct_type\":\"node\"}\n\
                       {\"name\":\"mem\",\"type\":\"chardev\",\"path\":\"/data/mem\",\"struct_type\":\"node\"}\n";
        let sign = device_nodes(listing).unwrap();
        assert!(sign.contains("/data/mem") && sign.contains("1 device"), "{sign}");
        assert_eq!(device_nodes("{\"type\":\"file\",\"path\":\"/x\"}"), None);
    }

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
