//! The tools a drill runs, per declared backup kind, and their versions.
//!
//! PostgreSQL sandboxes use the server tools of one installed major under `/usr/lib/postgresql`
//! (the newest, or the oldest one new enough for a dump); the other tools are found in `PATH`
//! like the restore engine finds them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Check;
use crate::config::{AgentConfig, AssetKind, BackupKind};

const GROUP: &str = "tools";
/// Where Debian installs PostgreSQL, one directory per major.
const POSTGRES_LIB_DIR: &str = "/usr/lib/postgresql";
/// How long `--version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// A program found in `PATH`, with the Debian package that provides it.
struct PathTool {
    name: &'static str,
    package: &'static str,
}

const RESTIC: PathTool = PathTool {
    name: "restic",
    package: "restic",
};
const SQLITE3: PathTool = PathTool {
    name: "sqlite3",
    package: "sqlite3",
};
const TAR: PathTool = PathTool {
    name: "tar",
    package: "tar",
};

/// The PostgreSQL programs a sandbox of `kind` needs in one major's `bin` directory.
fn postgres_tools(kind: BackupKind) -> &'static [&'static str] {
    match kind {
        BackupKind::PgDumpDir => &["initdb", "postgres", "pg_restore", "psql"],
        BackupKind::PgBasebackupDir => &["postgres", "pg_verifybackup", "psql"],
        BackupKind::SqliteDir | BackupKind::FilesDir | BackupKind::Restic => &[],
    }
}

/// The other programs a drill of `kind` runs.
fn path_tools(kind: BackupKind) -> &'static [PathTool] {
    match kind {
        BackupKind::PgDumpDir => &[],
        BackupKind::PgBasebackupDir | BackupKind::FilesDir => &[TAR],
        BackupKind::SqliteDir => &[SQLITE3],
        BackupKind::Restic => &[RESTIC],
    }
}

/// Checks the tools of every declared backup kind, and `psql` for PostgreSQL assets read in
/// production.
pub async fn check(config: &AgentConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut postgres_needed: BTreeSet<&'static str> = BTreeSet::new();
    let mut users: BTreeSet<&str> = BTreeSet::new();
    for backup in &config.backup {
        let tools = postgres_tools(backup.kind);
        if !tools.is_empty() {
            postgres_needed.extend(tools);
            users.insert(backup.kind.as_str());
        }
    }
    if config
        .asset
        .iter()
        .any(|asset| asset.kind == AssetKind::Postgres && asset.url.is_some())
    {
        postgres_needed.insert("psql");
        users.insert("read-only production checks");
    }
    if !postgres_needed.is_empty() {
        let users: Vec<&str> = users.into_iter().collect();
        checks.push(postgres(&postgres_needed, &users.join(", ")).await);
    }
    let mut seen = BTreeSet::new();
    for backup in &config.backup {
        for tool in path_tools(backup.kind) {
            if seen.insert(tool.name) {
                let users: Vec<&str> = config
                    .backup
                    .iter()
                    .filter(|other| path_tools(other.kind).iter().any(|t| t.name == tool.name))
                    .map(|other| other.kind.as_str())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                checks.push(in_path(tool, &users.join(", ")).await);
            }
        }
    }
    if config.backup.is_empty() {
        checks.push(Check::warn(
            GROUP,
            "backups",
            "no [[backup]] is declared: nothing to restore, so no tool is needed",
        ));
    }
    checks
}

/// The installed majors that have every tool in `needed`, and the version of the newest.
async fn postgres(needed: &BTreeSet<&'static str>, users: &str) -> Check {
    let majors = crate::capabilities::postgres_majors();
    let complete: Vec<u32> = majors
        .iter()
        .copied()
        .filter(|major| needed.iter().all(|tool| bin_dir(*major).join(tool).is_file()))
        .collect();
    let tools = needed.iter().copied().collect::<Vec<_>>().join(", ");
    let Some(newest) = complete.last() else {
        let found = if majors.is_empty() {
            "no PostgreSQL is installed under /usr/lib/postgresql".to_owned()
        } else {
            format!(
                "installed majors {} lack some of them",
                majors.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            )
        };
        return Check::fail(
            GROUP,
            "postgresql",
            format!("{users} need {tools}: {found}; install them with apt-get install postgresql postgresql-client"),
        );
    };
    let program = bin_dir(*newest).join(if needed.contains("postgres") {
        "postgres"
    } else {
        "psql"
    });
    let version = version_of(&program).await;
    let majors_text = complete.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    match version {
        Ok(version) => Check::ok(
            GROUP,
            "postgresql",
            format!("{version} (majors {majors_text}: {tools}) for {users}"),
        ),
        Err(err) => Check::fail(
            GROUP,
            "postgresql",
            format!("{} does not run: {err}", program.display()),
        ),
    }
}

fn bin_dir(major: u32) -> PathBuf {
    Path::new(POSTGRES_LIB_DIR).join(major.to_string()).join("bin")
}

/// A program in `PATH` and its version.
async fn in_path(tool: &PathTool, users: &str) -> Check {
    let Some(program) = crate::capabilities::find_in_path(tool.name) else {
        return Check::fail(
            GROUP,
            tool.name,
            format!(
                "not installed, and {users} backups need it: apt-get install {}",
                tool.package
            ),
        );
    };
    match version_of(&program).await {
        Ok(version) => Check::ok(
            GROUP,
            tool.name,
            format!("{version} ({}) for {users}", program.display()),
        ),
        Err(err) => Check::fail(GROUP, tool.name, format!("{} does not run: {err}", program.display())),
    }
}

/// The first line `program --version` prints (`restic version` for restic).
pub(crate) async fn version_of(program: &Path) -> Result<String, String> {
    let mut command = tokio::process::Command::new(program);
    if program.file_name().is_some_and(|name| name == "restic") {
        command.arg("version");
    } else {
        command.arg("--version");
    }
    command
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(VERSION_TIMEOUT, command.output())
        .await
        .map_err(|_elapsed| format!("no answer within {} s", VERSION_TIMEOUT.as_secs()))?
        .map_err(|err| err.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.lines().map(str::trim).find(|line| !line.is_empty()) {
        Some(line) if output.status.success() => Ok(line.to_owned()),
        _ => Err(format!(
            "exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_postgres_kind_needs_the_server() {
        assert!(postgres_tools(BackupKind::PgDumpDir).contains(&"postgres"));
        assert!(postgres_tools(BackupKind::PgBasebackupDir).contains(&"pg_verifybackup"));
        assert!(postgres_tools(BackupKind::Restic).is_empty());
        assert_eq!(path_tools(BackupKind::SqliteDir)[0].name, "sqlite3");
    }

    #[tokio::test]
    async fn versions_are_the_first_line_and_a_missing_program_is_an_error() {
        let version = version_of(Path::new("/bin/ls")).await.expect("ls runs");
        assert!(version.contains("ls"), "{version}");
        assert!(version_of(Path::new("/nonexistent/lifeboat-tool")).await.is_err());
    }
}
