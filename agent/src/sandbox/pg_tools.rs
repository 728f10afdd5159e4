//! Running PostgreSQL's own tools (`initdb`, `pg_ctl`) for a sandbox: as which user, in which
//! environment, and how their failures become errors.
//!
//! `initdb` and `pg_ctl` refuse to run as root, so when the agent runs as root they run as the
//! dedicated `lifeboat-sandbox` system user, who then owns the sandbox directory.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Output, Stdio};

use nix::unistd::{Gid, Uid, User};

use super::SandboxError;

/// The system user the server runs as when the agent runs as root. A dedicated user, not
/// `postgres`: a restored dump runs as a sandbox superuser and could run programs as the
/// server's OS user (`COPY … TO PROGRAM`); on a host where production PostgreSQL runs as
/// `postgres`, that user could reach production's data directory. This one owns nothing else.
const SERVER_USER: &str = "lifeboat-sandbox";
/// How many lines of a tool's output or the server log an error carries.
const OUTPUT_TAIL_LINES: usize = 20;

/// The unprivileged user the server runs as when the agent runs as root.
#[derive(Debug, Clone, Copy)]
pub(super) struct ServerUser {
    uid: Uid,
    gid: Gid,
}

impl ServerUser {
    /// Returns the dedicated sandbox user when we run as root (creating it, without a home or
    /// login shell, when it does not exist yet), `None` (run as ourselves) otherwise.
    pub(super) fn if_root() -> Result<Option<Self>, SandboxError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        if !matches!(User::from_name(SERVER_USER), Ok(Some(_))) {
            // Concurrent agents may race to create it: whoever loses sees it in the lookup below.
            let created = std::process::Command::new("useradd")
                .args([
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                ])
                .args(["--shell", "/usr/sbin/nologin", SERVER_USER])
                .stdin(std::process::Stdio::null())
                .output();
            if let Ok(output) = created
                && !output.status.success()
            {
                tracing::debug!(stderr = %String::from_utf8_lossy(&output.stderr), "useradd {SERVER_USER}");
            }
        }
        match User::from_name(SERVER_USER) {
            Ok(Some(user)) => Ok(Some(Self {
                uid: user.uid,
                gid: user.gid,
            })),
            Ok(None) | Err(_) => Err(SandboxError::NoServerUser),
        }
    }

    /// Checks that this user can traverse every directory down to `dir`.
    pub(super) fn check_reaches(&self, dir: &Path) -> Result<(), SandboxError> {
        let groups = std::ffi::CString::new(SERVER_USER)
            .ok()
            .and_then(|name| nix::unistd::getgrouplist(&name, self.gid).ok())
            .unwrap_or_else(|| vec![self.gid]);
        for ancestor in dir.ancestors() {
            let meta = fs::metadata(ancestor).map_err(SandboxError::io("inspect", ancestor))?;
            let search_bit = if meta.uid() == self.uid.as_raw() {
                0o100
            } else if groups.contains(&Gid::from_raw(meta.gid())) {
                0o010
            } else {
                0o001
            };
            if meta.mode() & search_bit == 0 {
                return Err(SandboxError::Unreachable {
                    user: SERVER_USER.to_owned(),
                    path: ancestor.to_owned(),
                });
            }
        }
        Ok(())
    }

    pub(super) fn chown(&self, path: &Path) -> Result<(), SandboxError> {
        nix::unistd::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|errno| SandboxError::io("give to the sandbox user", path)(errno.into()))
    }

    /// Gives `root` and everything under it to this user; symlinks are changed themselves, never
    /// followed (a restored data directory may hold links pointing outside the sandbox).
    pub(super) fn chown_tree(&self, root: &Path) -> Result<(), SandboxError> {
        let (uid, gid) = (Some(self.uid.as_raw()), Some(self.gid.as_raw()));
        let mut pending = vec![root.to_owned()];
        while let Some(path) = pending.pop() {
            std::os::unix::fs::lchown(&path, uid, gid).map_err(SandboxError::io("give to the sandbox user", &path))?;
            let meta = fs::symlink_metadata(&path).map_err(SandboxError::io("inspect", &path))?;
            if meta.is_dir() {
                for entry in fs::read_dir(&path).map_err(SandboxError::io("list", &path))? {
                    pending.push(entry.map_err(SandboxError::io("list", &path))?.path());
                }
            }
        }
        Ok(())
    }
}

/// `pg_ctl stop` shutdown modes.
#[derive(Debug, Clone, Copy)]
pub(super) enum StopMode {
    /// Disconnects clients, then a clean shutdown.
    Fast,
    /// Quits without a checkpoint: fine for a cluster that is thrown away.
    Immediate,
}

impl StopMode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// Configures a PostgreSQL tool: in the sandbox directory, with English messages (we match the
/// server log), none of the agent's `PG*` variables, and as the server user when we are root.
pub(super) fn configure(command: &mut std::process::Command, dir: &Path, run_as: Option<ServerUser>) {
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .env("LC_ALL", "C")
        .env("LANG", "C");
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"PG") {
            command.env_remove(key);
        }
    }
    if let Some(user) = run_as {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
}

/// Reads a file from `offset` on (the part of the server log one start attempt wrote).
pub(super) fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path)
        && file.seek(SeekFrom::Start(offset)).is_ok()
    {
        let mut bytes = Vec::new();
        let _partial = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

/// Turns a failed tool run into an error carrying the end of its output and of `log`.
pub(super) fn check(program: &str, output: &Output, log: &str) -> Result<(), SandboxError> {
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::new();
    for part in [
        &String::from_utf8_lossy(&output.stderr),
        &String::from_utf8_lossy(&output.stdout),
        log,
    ] {
        if !part.trim().is_empty() {
            let _infallible = writeln!(text, "{}", part.trim_end());
        }
    }
    Err(SandboxError::Command {
        program: program.to_owned(),
        status: output.status.to_string(),
        output: tail(&text),
    })
}

/// The last lines of a tool's output.
pub(super) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(OUTPUT_TAIL_LINES)..].join("\n")
}
