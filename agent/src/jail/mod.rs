//! The restore jail: every process that reads backup content runs here (a backup is untrusted
//! input).
//!
//! A backup is untrusted input. An attacker who can plant one (ransomware, an insider, a
//! compromised bucket) controls what `pg_restore`, `psql`, the sandbox's PostgreSQL server, `tar`,
//! `restic` and `sqlite3` read, and PostgreSQL alone offers `COPY … TO PROGRAM`, `pg_read_file`
//! and C functions to whoever restores a dump as superuser. So none of those programs runs as the
//! agent or next to the agent's secrets. Each runs inside [bubblewrap](https://github.com/containers/bubblewrap)
//! (`bwrap`, the sandbox Flatpak is built on), started as the dedicated `lifeboat-sandbox` user:
//!
//! - **another uid**: the process runs as `lifeboat-sandbox`, never as the agent's user, with no
//!   supplementary groups and no capabilities;
//! - **its own namespaces**: user, PID, network (only a loopback of its own: the sandbox server
//!   listens on a Unix socket, which the agent reaches through the file system), IPC and UTS;
//! - **its own file system view**: `/usr` (and the `/bin`, `/lib` links into it) read-only, a
//!   generated `/etc/passwd` and `/etc/group`, a private `/tmp`, `/proc` of its own PID namespace,
//!   and exactly the paths the step needs: the sandbox directory (read-write) and the recovery
//!   point (read-only). The identity folder, the spool, the work directory, other sandboxes,
//!   scan paths, `/home`, `/root` and the rest of `/etc` do not exist in there;
//! - **a cleared environment** plus an allow-list (`PATH`, `LC_ALL`, and what the step needs,
//!   such as `PGPASSWORD`), passed as environment — never on a command line;
//! - **killed whole**: the jail's PID namespace dies with its first process, and bubblewrap's
//!   `--die-with-parent` takes it down if the agent dies, so nothing a restore starts outlives it;
//! - **watched**: [`watch`] samples the jail's process tree; a process the step does not run
//!   itself (a shell spawned by `COPY … TO PROGRAM`, `setsid sleep`) is a [`Stray`], which the
//!   runner reports as `restore.hostile`. In jails that run attacker-influenced interpreters (the
//!   sandbox server, `psql` on a plain dump) the shells are replaced by a tripwire (see
//!   [`tripwire`]) that stays up long enough to be seen and runs nothing.
//!
//! The agent needs the right to start processes as `lifeboat-sandbox` (see [`privilege`]):
//! run it as root, or grant its user the capabilities the shipped systemd unit lists.
//!
//! # Layout
//!
//! - [`user`]: the sandbox user, what it may read, giving it a directory.
//! - [`command`]: building and running a jailed command, with its watcher.
//! - [`watch`]: the jail's process tree and the strays in it.
//! - [`tripwire`]: the stand-in for shells in content jails.
//! - [`privilege`]: whether this agent may start jails; dropping inherited capabilities.

pub mod command;
pub mod privilege;
pub mod tripwire;
pub mod user;
pub mod watch;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use command::{JailCommand, JailOutput, JailedProcess};
pub use user::JailUser;
pub use watch::Stray;

/// The program every jail is started with.
pub const BWRAP: &str = "bwrap";
/// Debian's package that provides [`BWRAP`].
pub const BWRAP_PACKAGE: &str = "bubblewrap";

/// Error setting up or running a jail.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// bubblewrap is not installed.
    #[error(
        "bubblewrap (`bwrap`) is not installed: every restore runs inside it; install the Debian package {BWRAP_PACKAGE}"
    )]
    NoBubblewrap,
    /// The agent may not start processes as the sandbox user.
    #[error("the agent cannot start restores as the sandbox user {user}: {reason}")]
    NotPermitted { user: String, reason: String },
    /// The sandbox user does not exist and could not be created.
    #[error(
        "the sandbox user `{0}` does not exist and the agent could not create it: create it with `useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {0}`"
    )]
    NoUser(String),
    /// The sandbox user cannot read a recovery point in place.
    #[error(
        "the sandbox user {user} cannot read {}: restores read backups only as that user; grant it read access, e.g. `setfacl -R -m u:{user}:rX -m d:u:{user}:rX {}` (or make the files readable by a group it is in)",
        .path.display(), .grant.display()
    )]
    Unreadable {
        user: String,
        path: PathBuf,
        /// The directory to grant access on (the path itself, or its backup source).
        grant: PathBuf,
    },
    /// A file system operation for the jail failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// bubblewrap could not set the jail up (its own message).
    #[error("the restore jail could not be set up: {0}")]
    Setup(String),
    /// A jailed command did not finish in time; it was killed with its jail.
    #[error("{program} did not finish within {}", lifeboat_shared::durations::HumanDuration(*.timeout))]
    Timeout {
        program: String,
        timeout: std::time::Duration,
    },
}

impl JailError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.to_owned();
        move |source| Self::Io { action, path, source }
    }

    /// Whether the error is about this agent's set-up (the fix is on the agent's machine), not
    /// about the backup being restored.
    pub fn is_agent_problem(&self) -> bool {
        !matches!(self, Self::Timeout { .. })
    }
}

/// Whether shells inside a jail are the real ones or the tripwire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shells {
    /// The real shells: for tools that run their own helpers through `/bin/sh` (`initdb`, `tar`
    /// decompressors) and for the operator's own `command` and `service` checks.
    Real,
    /// Shells replaced by the [`tripwire`]: for attacker-influenced interpreters (the sandbox
    /// server, `psql` on a plain dump).
    Tripwire,
}

/// The strays every jail of one run saw, shared by the run's jails.
#[derive(Debug, Clone, Default)]
pub struct StrayLog(Arc<Mutex<Vec<Stray>>>);

impl StrayLog {
    /// Records strays, once per pid.
    pub fn extend(&self, strays: impl IntoIterator<Item = Stray>) {
        if let Ok(mut seen) = self.0.lock() {
            for stray in strays {
                if !seen
                    .iter()
                    .any(|known| known.pid == stray.pid && known.name == stray.name)
                {
                    tracing::warn!(pid = stray.pid, name = %stray.name, command = %stray.command_line, "a restore started a program the sandbox did not start");
                    seen.push(stray);
                }
            }
        }
    }

    /// Returns what was seen so far.
    pub fn strays(&self) -> Vec<Stray> {
        self.0.lock().map(|seen| seen.clone()).unwrap_or_default()
    }
}

/// What every jail of this agent shares: the user, the generated `/etc` files and the tripwire.
#[derive(Debug, Clone)]
pub struct JailContext {
    user: JailUser,
    /// Holds `passwd` and `group` naming only the sandbox user, bound into every jail.
    etc_dir: PathBuf,
    /// The `lifeboat-agent` executable when the sandbox user can run it: bound over the shells
    /// of [`Shells::Tripwire`] jails, and the service checks' probe.
    agent: Option<PathBuf>,
}

impl JailContext {
    /// Prepares jails for an agent whose private jail files live in `dir` (created if needed,
    /// readable by everyone: it holds only the sandbox user's `passwd` line).
    ///
    /// Fails when bubblewrap is missing, the sandbox user cannot be found or created, or this
    /// agent may not start processes as that user.
    pub fn prepare(dir: &Path) -> Result<Self, JailError> {
        if crate::capabilities::find_in_path(BWRAP).is_none() {
            return Err(JailError::NoBubblewrap);
        }
        let user = JailUser::resolve()?;
        privilege::check(&user)?;
        fs::create_dir_all(dir).map_err(JailError::io("create", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(JailError::io("protect", dir))?;
        write_public(&dir.join("passwd"), &user.passwd_line())?;
        write_public(&dir.join("group"), &user.group_line())?;
        let agent = tripwire::executable_for(&user);
        Ok(Self {
            user,
            etc_dir: dir.to_owned(),
            agent,
        })
    }

    /// Returns the sandbox user.
    pub fn user(&self) -> &JailUser {
        &self.user
    }

    /// What replaces shells in [`Shells::Tripwire`] jails: the agent's executable, or
    /// `/dev/null` (which cannot be run) when the sandbox user cannot run it.
    fn tripwire(&self) -> &Path {
        self.agent.as_deref().unwrap_or_else(|| Path::new("/dev/null"))
    }

    /// Starts describing a jail whose strays go to `strays`.
    pub fn jail(&self, strays: &StrayLog) -> Jail {
        Jail {
            context: self.clone(),
            writable: Vec::new(),
            readable: Vec::new(),
            shells: Shells::Tripwire,
            allowed: Vec::new(),
            strays: strays.clone(),
            network: false,
        }
    }
}

/// Writes a small file everyone may read (replacing it atomically).
fn write_public(path: &Path, contents: &str) -> Result<(), JailError> {
    let temporary = path.with_extension("tmp");
    let _stale = fs::remove_file(&temporary);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&temporary)
        .map_err(JailError::io("create", &temporary))?;
    file.write_all(contents.as_bytes())
        .map_err(JailError::io("write", &temporary))?;
    fs::rename(&temporary, path).map_err(JailError::io("replace", path))
}

/// One jail: what it may see and write, its shells, and which programs it runs.
#[derive(Debug, Clone)]
pub struct Jail {
    context: JailContext,
    writable: Vec<PathBuf>,
    /// Read-only paths, each with where the operator grants the sandbox user access to it.
    readable: Vec<(PathBuf, PathBuf)>,
    shells: Shells,
    /// Process names (`comm`) the step runs itself; anything else in the jail is a stray. Empty:
    /// strays are not looked for (the operator's own commands).
    allowed: Vec<&'static str>,
    strays: StrayLog,
    /// Whether the jail keeps the host's network (a remote repository's reader only).
    network: bool,
}

impl Jail {
    /// Binds `path` read-write at the same path.
    pub fn writable(mut self, path: impl Into<PathBuf>) -> Self {
        self.writable.push(path.into());
        self
    }

    /// Binds `path` read-only at the same path. The sandbox user must be able to read it; when
    /// it cannot, running a command fails with [`JailError::Unreadable`] naming `grant` as where
    /// to grant access (the backup source, usually).
    pub fn readable(mut self, path: impl Into<PathBuf>, grant: &Path) -> Self {
        self.readable.push((path.into(), grant.to_owned()));
        self
    }

    /// Binds a public path read-only at the same path (the agent's own executable).
    pub fn readable_unchecked(mut self, path: &Path) -> Self {
        self.readable.push((path.to_owned(), path.to_owned()));
        self
    }

    /// The `lifeboat-agent` executable, when the sandbox user can run it.
    pub fn agent_executable(&self) -> Option<PathBuf> {
        self.context.agent.clone()
    }

    /// The read-only paths and where to grant access to each.
    pub(crate) fn readable_with_grants(&self) -> Vec<(PathBuf, PathBuf)> {
        self.readable.clone()
    }

    /// Keeps the host's network (and its resolver and CA certificates) in the jail: only for a
    /// reader of a remote repository, which sees no sandbox and no local file of the agent.
    pub fn with_network(mut self) -> Self {
        self.network = true;
        self
    }

    /// Sets whether shells are real or the tripwire (the default).
    pub fn shells(mut self, shells: Shells) -> Self {
        self.shells = shells;
        self
    }

    /// Sets the process names the step runs itself; any other process in the jail is a stray.
    pub fn allow(mut self, names: &[&'static str]) -> Self {
        self.allowed.extend_from_slice(names);
        self
    }

    /// Starts a command for `program` in this jail.
    pub fn command(&self, program: impl Into<PathBuf>) -> JailCommand {
        JailCommand::new(self.clone(), program.into())
    }

    /// Returns where this jail's strays are recorded.
    pub fn strays(&self) -> &StrayLog {
        &self.strays
    }
}
