//! Running the external tools discovery asks for facts (`pg_restore --list`, `restic snapshots`):
//! finding them, a deadline, and errors that name the package to install.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::Command;

use super::BackupError;

/// Where Debian and Ubuntu install PostgreSQL client and server binaries, one directory per major.
const POSTGRES_LIB_DIR: &str = "/usr/lib/postgresql";

/// What a finished tool printed.
#[derive(Debug)]
pub(super) struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    /// Returns the tool's complaint: stderr (or stdout when stderr is empty), trimmed and capped,
    /// fit for a finding's message.
    pub fn complaint(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = text.trim();
        let text = if text.is_empty() {
            format!("exited with {}", self.status)
        } else {
            text.to_owned()
        };
        cap(&text, 2_000)
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub(super) fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A tool discovery runs, with the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

pub(super) const PG_RESTORE: Tool = Tool {
    name: "pg_restore",
    package: "postgresql-client",
};

pub(super) const RESTIC: Tool = Tool {
    name: "restic",
    package: "restic",
};

/// Finds a PostgreSQL client program: the one of the highest major under `/usr/lib/postgresql`
/// (it reads archives of every older version), else the one in `PATH`.
pub(super) fn find_postgres_program(tool: Tool) -> Result<PathBuf, BackupError> {
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir(POSTGRES_LIB_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let program = entry.path().join("bin").join(tool.name);
            program.is_file().then_some((major, program))
        })
        .collect();
    versioned.sort();
    if let Some((_, program)) = versioned.pop() {
        return Ok(program);
    }
    crate::capabilities::find_in_path(tool.name).ok_or(BackupError::ToolMissing {
        tool: tool.name,
        package: tool.package,
    })
}

/// Runs `command` (stdin closed, output captured) and waits at most `timeout`; the child is
/// killed if the deadline passes. `subject` is the path the tool works on, for errors.
pub(super) async fn run(
    tool: Tool,
    mut command: Command,
    subject: &Path,
    timeout: Duration,
) -> Result<ToolOutput, BackupError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BackupError::ToolMissing {
                tool: tool.name,
                package: tool.package,
            }
        } else {
            BackupError::ToolFailed {
                tool: tool.name,
                path: subject.to_path_buf(),
                source,
            }
        }
    })?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_elapsed| BackupError::ToolTimedOut {
            tool: tool.name,
            path: subject.to_path_buf(),
            timeout,
        })?
        .map_err(|source| BackupError::ToolFailed {
            tool: tool.name,
            path: subject.to_path_buf(),
            source,
        })?;
    Ok(ToolOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_on_a_character_boundary() {
        assert_eq!(cap("short", 10), "short");
        assert_eq!(cap("ééé", 3), "é…");
    }

    #[tokio::test]
    async fn a_missing_program_names_its_package() {
        let tool = Tool {
            name: "lifeboat-no-such-tool",
            package: "lifeboat-no-such-package",
        };
        let err = run(tool, Command::new(tool.name), Path::new("/x"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::ToolMissing { .. }), "{err}");
        assert!(
            err.to_string().contains("apt-get install lifeboat-no-such-package"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_hung_tool_is_stopped_at_its_deadline() {
        let tool = Tool {
            name: "sleep",
            package: "coreutils",
        };
        let mut command = Command::new("sleep");
        command.arg("30");
        let err = run(tool, command, Path::new("/x"), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::ToolTimedOut { .. }), "{err}");
    }
}
