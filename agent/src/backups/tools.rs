//! Running the external tools discovery asks for facts (`pg_restore --list`, `restic snapshots`):
//! finding them, running them in a jail with a deadline, and errors that name the package to
//! install.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::BackupError;
use crate::jail::{JailCommand, JailError};

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

/// Runs `command` — in the discovery jail: discovery reads backup content too — and waits at
/// most `timeout`; the jail is killed if the deadline passes. `subject` is the path the tool
/// works on, for errors.
pub(super) async fn run(
    tool: Tool,
    command: JailCommand,
    subject: &Path,
    timeout: Duration,
) -> Result<ToolOutput, BackupError> {
    match command.env("LC_ALL", "C").output(timeout).await {
        Ok(output) => Ok(ToolOutput {
            status: output.status,
            stdout: output.stdout,
            stderr: output.stderr,
        }),
        Err(JailError::Timeout { .. }) => Err(BackupError::ToolTimedOut {
            tool: tool.name,
            path: subject.to_path_buf(),
            timeout,
        }),
        Err(JailError::Setup(message)) if message.contains("execvp") => Err(BackupError::ToolMissing {
            tool: tool.name,
            package: tool.package,
        }),
        Err(err) => Err(BackupError::Jail(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_on_a_character_boundary() {
        assert_eq!(cap("short", 10), "short");
        assert_eq!(cap("ééé", 3), "é…");
    }

    fn discovery_jail() -> (tempfile::TempDir, crate::jail::Jail) {
        let work_dir = tempfile::tempdir().unwrap();
        let root = crate::sandbox::SandboxRoot::in_work_dir(work_dir.path()).unwrap();
        let jail = root.jail_context().unwrap().jail(&crate::jail::StrayLog::default());
        (work_dir, jail)
    }

    #[tokio::test]
    async fn a_missing_program_names_its_package() {
        let tool = Tool {
            name: "lifeboat-no-such-tool",
            package: "lifeboat-no-such-package",
        };
        let (_dir, jail) = discovery_jail();
        let err = run(tool, jail.command(tool.name), Path::new("/x"), Duration::from_secs(5))
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
        let (_dir, jail) = discovery_jail();
        let err = run(
            tool,
            jail.command("sleep").arg("30"),
            Path::new("/x"),
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BackupError::ToolTimedOut { .. }), "{err}");
    }
}
