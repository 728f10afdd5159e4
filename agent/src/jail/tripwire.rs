//! The tripwire: what a content jail has in place of its shells.
//!
//! Everything PostgreSQL and `psql` run on a dump's behalf goes through `/bin/sh -c`: `COPY … TO
//! PROGRAM`, `\!`, `\o |…`, `archive_command`. In jails that run attacker-influenced interpreters
//! every shell binary is replaced (bind-mounted over) by the `lifeboat-agent` executable, which,
//! started under a shell's name, runs nothing, says so on stderr, and stays up for
//! [`LINGER`] before failing with status 126 — long enough for the jail's watcher to see a process
//! the step did not start, which becomes `restore.hostile`. When the agent's executable cannot be
//! used (the sandbox user cannot read it), `/dev/null` stands in: the attempt fails at once and
//! is still contained, only not seen.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::JailUser;

/// Names of shells replaced in content jails.
const SHELLS: [&str; 9] = ["sh", "dash", "bash", "rbash", "zsh", "ksh", "mksh", "csh", "busybox"];
/// How long the tripwire stays up so the watcher sees it.
pub const LINGER: Duration = Duration::from_secs(2);
/// Exit status of the tripwire: "found but not executable", as a shell reports it.
const EXIT_NOT_EXECUTABLE: u8 = 126;
/// The executable's name.
const AGENT_EXECUTABLE: &str = "lifeboat-agent";

/// Whether this process was started under a shell's name, i.e. as the tripwire.
pub fn invoked_as_shell() -> bool {
    std::env::args_os()
        .next()
        .as_deref()
        .and_then(|argv0| Path::new(argv0).file_name())
        .and_then(|name| name.to_str())
        .is_some_and(|name| SHELLS.contains(&name))
}

/// Runs the tripwire: refuses, lingers, fails.
pub fn run() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    eprintln!(
        "lifeboat: this restore sandbox has no shell; refused to run {:?}",
        args.join(" ")
    );
    std::thread::sleep(LINGER);
    std::process::ExitCode::from(EXIT_NOT_EXECUTABLE)
}

/// The shell binaries of this machine to replace, resolved through their symlinks.
pub(super) fn shell_paths() -> Vec<PathBuf> {
    let mut paths = BTreeSet::new();
    for name in SHELLS {
        for dir in ["/usr/bin", "/bin", "/usr/sbin"] {
            if let Ok(real) = std::fs::canonicalize(Path::new(dir).join(name))
                && real.starts_with("/usr")
            {
                paths.insert(real);
            }
        }
    }
    paths.into_iter().collect()
}

/// This agent's executable, when the sandbox user can run it.
pub(super) fn executable_for(user: &JailUser) -> Option<PathBuf> {
    agent_executable().filter(|path| {
        user.may_read(path) && std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0)
    })
}

/// The `lifeboat-agent` executable: this one, or (in a test binary under `target/*/deps`) the one
/// built beside it.
fn agent_executable() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    if me.file_name().is_some_and(|name| name == AGENT_EXECUTABLE) {
        return Some(me);
    }
    let beside = me.parent()?.parent()?.join(AGENT_EXECUTABLE);
    beside.is_file().then_some(beside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shells_of_this_machine_are_found() {
        let paths = shell_paths();
        assert!(
            paths
                .iter()
                .any(|path| path.ends_with("dash") || path.ends_with("bash")),
            "{paths:?}"
        );
        assert!(paths.iter().all(|path| path.starts_with("/usr")));
    }

    #[test]
    fn a_test_binary_is_not_mistaken_for_the_agent() {
        // This test binary lives in target/*/deps and is not named lifeboat-agent.
        let found = agent_executable();
        assert!(
            found.as_ref().is_none_or(|path| path.ends_with(AGENT_EXECUTABLE)),
            "{found:?}"
        );
    }
}
