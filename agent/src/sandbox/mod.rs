//! Throw-away sandboxes that restores go into, with guaranteed cleanup (Lifeboat never destroys
//! what it protects: restores go only into sandboxes the agent created for that run).
//!
//! # Only sandboxes this run created
//!
//! Restores and checks never take a path or a connection string to write to: the restore code
//! requires a [`&PostgresSandbox`](PostgresSandbox) or a [`&DirSandbox`](DirSandbox). Those
//! handles have private fields and are only made by [`SandboxRoot::create_postgres`] and
//! [`SandboxRoot::create_dir`], which create a fresh directory for one run (creation fails if it
//! already exists) and, for PostgreSQL, a fresh cluster listening only on a Unix socket of its
//! own, with a random 32-character password. So the type system, not a convention, is what keeps a
//! restore from pointing at production or at another run's sandbox. Every process that touches a
//! sandbox's content runs in a [`jail`](crate::jail) that sees that sandbox and nothing else.
//!
//! # On disk
//!
//! ```text
//! <work_dir>/sandboxes/                      the SandboxRoot (mode 0711: the sandbox user passes through)
//!   .jail/passwd, .jail/group                the jails' /etc files (the sandbox user alone)
//!   <run_id>-<kind>/                         one sandbox, owned by the agent (0711)
//!     sandbox.json                           marker: run, owner pid + start time, keep_until
//!     postgres.log                           PostgreSQL only: the server's output
//!     data/                                  the sandbox user's (0700): what is restored
//!     private/                               PostgreSQL only, the sandbox user's: initdb's password file
//! <runtime>/<8 characters>/.s.PGSQL.5432     PostgreSQL only: the server's socket (see socket_dir)
//! ```
//!
//! Only `data/` (and `private/`, and the socket directory) is ever bound into a jail: the marker
//! and logs stay out of reach of what a restore runs, so a hostile backup cannot rewrite what the
//! janitor reads. The agent writes into `data/` only by removing an entry and creating it anew
//! (never through a link the restore may have planted).
//!
//! # Guaranteed cleanup
//!
//! - success or failure: the runner calls `cleanup`, which stops the server and removes the
//!   directory (or keeps it, below);
//! - timeout, cancellation (the run's future is dropped), early return, panic: the handle's `Drop`
//!   kills the jail and removes the directory synchronously;
//! - the agent is killed (SIGKILL, power loss): every jail dies with it (bubblewrap's
//!   `--die-with-parent`), and [`janitor::sweep`] at the next start removes the directories
//!   whose owner process is gone.
//!
//! # Keep on failure
//!
//! Opt-in per test, with a TTL: `cleanup(failed = true, keep_on_failure = Some(ttl))` stops the
//! server but keeps the directory, writing `keep_until` into the marker; the janitor removes it
//! once that time has passed. To inspect a kept PostgreSQL sandbox, start it as the sandbox user
//! (it listens only on a Unix socket in the sandbox's `data` directory, and the superuser's
//! password is in `<dir>/password`). It holds what a possibly hostile backup restored: look, but
//! keep it in a jail of its own if you run more than `psql` on it.
//!
//! ```text
//! sudo -u lifeboat-sandbox /usr/lib/postgresql/<major>/bin/postgres -D <dir>/data &
//! sudo env PGPASSWORD="$(sudo cat <dir>/password)" \
//!     /usr/lib/postgresql/<major>/bin/psql -h <dir>/data -U lifeboat_sandbox -d <database>
//! ```

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_shared::ids::RunId;
use serde::{Deserialize, Serialize};

pub mod janitor;
mod marker;
mod pg_tools;
pub mod postgres;
mod socket_dir;

pub use marker::{MARKER_FILE, SandboxMarker};
pub use postgres::{PostgresSandbox, pick_major};

use crate::jail::{Jail, JailContext, JailError, JailUser, Stray, StrayLog};
use crate::procfs::ProcessIdentity;

/// Name of the sandbox root inside the agent's work directory.
pub const SANDBOXES_DIR: &str = "sandboxes";
/// Name of the directory inside a sandbox that restores go into (the sandbox user's).
pub const DATA_DIR: &str = "data";
/// Name of the sandbox user's scratch directory inside a PostgreSQL sandbox.
pub const PRIVATE_DIR: &str = "private";
/// Name of the directory in the sandbox root holding the jails' `/etc` files.
pub const JAIL_DIR: &str = ".jail";
/// Attempts at removing a sandbox directory.
const REMOVE_ATTEMPTS: u32 = 5;
/// Pause between attempts at removing a sandbox directory.
const REMOVE_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Error creating, using or removing a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file system operation or a child process failed to start.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The sandbox root is not a plain directory (e.g. a symlink, which we do not follow).
    #[error("sandbox root {} is not a directory (symlinks are refused)", .0.display())]
    RootNotADirectory(PathBuf),
    /// A marker file could not be parsed or encoded.
    #[error("sandbox marker {} is invalid: {source}", .path.display())]
    Marker {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// No PostgreSQL server binaries are installed at all.
    #[error(
        "no postgresql server is installed on this agent (looked for /usr/lib/postgresql/<major>/bin/initdb): install the postgresql package matching the backups"
    )]
    NoPostgresInstalled,
    /// The dump comes from a newer PostgreSQL than any installed: pg_restore cannot read it.
    #[error(
        "the backup was made by postgresql {needed}, newer than every postgresql installed on this agent ({}): install postgresql {needed} or newer on the agent",
        postgres::list_majors(.installed)
    )]
    NoCompatibleMajor { needed: u32, installed: Vec<u32> },
    /// The requested PostgreSQL major is not installed.
    #[error(
        "postgresql {major} is not installed on this agent (installed: {})",
        postgres::list_majors(.installed)
    )]
    MajorNotInstalled { major: u32, installed: Vec<u32> },
    /// The jail cannot be set up or used (bubblewrap, the sandbox user, privileges).
    #[error(transparent)]
    Jail(#[from] JailError),
    /// The sandbox user cannot reach the sandbox directory.
    #[error(
        "the sandbox user {user} cannot reach {}: give that directory search permission for others (chmod o+x), or put the agent's work_dir under directories it can pass through",
        .path.display()
    )]
    Unreachable { user: String, path: PathBuf },
    /// A PostgreSQL tool exited unsuccessfully.
    #[error("{program} failed ({status}): {output}")]
    Command {
        program: String,
        status: String,
        output: String,
    },
    /// The sandbox server was started but did not accept connections.
    #[error("the sandbox server does not accept connections: {0}")]
    NotReady(#[source] sqlx::Error),
    /// A statement in the sandbox failed.
    #[error("cannot {action} in the sandbox: {source}")]
    Sql {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// Processes of the sandbox could not be stopped.
    #[error("cannot stop the server of sandbox {}: {errno}", .dir.display())]
    Stop { dir: PathBuf, errno: nix::errno::Errno },
    /// The server exited before accepting connections.
    #[error("the sandbox server stopped before accepting connections: {0}")]
    ServerExited(String),
    /// The blocking task running a cleanup panicked or was dropped by a shutting-down runtime.
    #[error("sandbox cleanup task failed")]
    Worker(#[source] tokio::task::JoinError),
}

impl SandboxError {
    /// Whether the error is about this agent's set-up (a missing tool, the jail, permissions)
    /// rather than about the backup being restored.
    pub fn is_agent_problem(&self) -> bool {
        match self {
            Self::Jail(err) => err.is_agent_problem(),
            Self::Io { .. }
            | Self::RootNotADirectory(_)
            | Self::Marker { .. }
            | Self::NoPostgresInstalled
            | Self::NoCompatibleMajor { .. }
            | Self::MajorNotInstalled { .. }
            | Self::Unreachable { .. }
            | Self::Stop { .. }
            | Self::Worker(_) => true,
            Self::Command { .. } | Self::NotReady(_) | Self::Sql { .. } | Self::ServerExited(_) => false,
        }
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self + use<> {
        let path = path.to_owned();
        move |source| Self::Io { action, path, source }
    }
}

/// What a sandbox holds; the suffix of its directory name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxKind {
    /// A private PostgreSQL cluster ([`PostgresSandbox`]).
    Postgres,
    /// A directory a SQLite database is copied into ([`DirSandbox`]).
    Sqlite,
    /// A directory files are restored into ([`DirSandbox`]).
    Files,
}

impl SandboxKind {
    /// Returns the lowercase name used in directory names and markers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
            Self::Files => "files",
        }
    }
}

impl fmt::Display for SandboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of sandbox that are a plain directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirKind {
    /// A SQLite database copy.
    Sqlite,
    /// A files restore (directory snapshot, tar archive, restic snapshot).
    Files,
}

impl From<DirKind> for SandboxKind {
    fn from(kind: DirKind) -> Self {
        match kind {
            DirKind::Sqlite => Self::Sqlite,
            DirKind::Files => Self::Files,
        }
    }
}

/// What `cleanup` did with a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupOutcome {
    /// The sandbox directory is gone (and its server stopped).
    Removed,
    /// The failed run's sandbox was kept for inspection (its server stopped); the janitor removes
    /// it after `keep_until`.
    Kept { dir: PathBuf, keep_until: DateTime<Utc> },
}

impl CleanupOutcome {
    /// Returns the kept directory, if the sandbox was kept.
    pub fn kept_dir(&self) -> Option<&Path> {
        match self {
            Self::Removed => None,
            Self::Kept { dir, .. } => Some(dir),
        }
    }
}

/// The directory all sandboxes of this agent live in, normally `<work_dir>/sandboxes`.
///
/// Everything in it belongs to the agent: the janitor removes what no live agent process owns.
#[derive(Debug, Clone)]
pub struct SandboxRoot {
    /// Canonical (absolute, symlink-free) path: jails bind paths under it as they are.
    dir: PathBuf,
    /// This agent process, recorded as the owner in every marker.
    owner: ProcessIdentity,
}

impl SandboxRoot {
    /// Opens (creating it if needed) the sandbox root `dir`, normally `<work_dir>/sandboxes`.
    ///
    /// A symlink at `dir` itself is refused. The directory gets mode 0711 (others may pass
    /// through, nobody but the agent may list it), so that the sandbox user reaches its own
    /// sandboxes; for the same reason its parent (the work directory), when the agent owns it,
    /// gains search permission for others. What is private in the work directory (the spool, keys)
    /// keeps its own modes.
    pub fn open(dir: &Path) -> Result<Self, SandboxError> {
        fs::create_dir_all(dir).map_err(SandboxError::io("create", dir))?;
        let meta = fs::symlink_metadata(dir).map_err(SandboxError::io("inspect", dir))?;
        if !meta.is_dir() {
            return Err(SandboxError::RootNotADirectory(dir.to_owned()));
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).map_err(SandboxError::io("protect", dir))?;
        let dir = fs::canonicalize(dir).map_err(SandboxError::io("resolve", dir))?;
        if let Some(parent) = dir.parent() {
            let_others_pass(parent);
        }
        let owner = ProcessIdentity::current().map_err(SandboxError::io("read", Path::new("/proc/self/stat")))?;
        Ok(Self { dir, owner })
    }

    /// Opens the sandbox root of an agent whose work directory is `work_dir`.
    pub fn in_work_dir(work_dir: &Path) -> Result<Self, SandboxError> {
        Self::open(&work_dir.join(SANDBOXES_DIR))
    }

    /// Returns the root directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Prepares the jails of this agent: bubblewrap, the sandbox user, the right to start
    /// processes as that user, and that user's way to the sandboxes.
    pub fn jail_context(&self) -> Result<JailContext, SandboxError> {
        let context = JailContext::prepare(&self.dir.join(JAIL_DIR))?;
        let user = context.user();
        let ancestors: Vec<&Path> = self.dir.ancestors().collect();
        if let Some(blocked) = ancestors.into_iter().rev().find(|dir| !user.may_search(dir)) {
            return Err(SandboxError::Unreachable {
                user: user.name().to_owned(),
                path: blocked.to_owned(),
            });
        }
        Ok(context)
    }

    /// Creates an empty directory sandbox for `run_id` (SQLite copies, files restores).
    pub fn create_dir(&self, run_id: RunId, kind: DirKind) -> Result<DirSandbox, SandboxError> {
        let context = self.jail_context()?;
        let sandbox = self.create_sandbox(run_id, kind.into(), context)?;
        let data = sandbox.dir().join(DATA_DIR);
        Ok(DirSandbox { sandbox, data })
    }

    /// Creates `<root>/<run_id>-<kind>` (failing if it exists: a sandbox is never reused), its
    /// marker, and its `data` directory given to the sandbox user. The returned guard removes the
    /// directory if anything after this fails.
    fn create_sandbox(&self, run_id: RunId, kind: SandboxKind, jail: JailContext) -> Result<Sandbox, SandboxError> {
        let dir = self.dir.join(format!("{run_id}-{kind}"));
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&dir)
            .map_err(SandboxError::io("create", &dir))?;
        let marker = SandboxMarker::new(run_id, kind, self.owner);
        let sandbox = Sandbox {
            dir,
            marker,
            released: false,
            jail,
            strays: StrayLog::default(),
        };
        sandbox.marker.write(&sandbox.dir)?;
        sandbox.give_to_jail(DATA_DIR)?;
        tracing::debug!(dir = %sandbox.dir.display(), "sandbox created");
        Ok(sandbox)
    }
}

/// The jail discovery runs its tools in (`pg_restore --list`, `restic snapshots`), for an agent
/// whose work directory is `work_dir`: it sees no sandbox, only what each tool is given.
pub fn discovery_jail(work_dir: &Path) -> Result<Jail, SandboxError> {
    let context = SandboxRoot::in_work_dir(work_dir)?.jail_context()?;
    Ok(context.jail(&StrayLog::default()))
}

/// Adds search permission for others to `dir` when the agent owns it and it lacks it.
fn let_others_pass(dir: &Path) {
    let Ok(meta) = fs::metadata(dir) else { return };
    if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o001 != 0 {
        return;
    }
    let mode = (meta.mode() & 0o7777) | 0o001;
    match fs::set_permissions(dir, fs::Permissions::from_mode(mode)) {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), mode = format!("{mode:o}"), "let the sandbox user pass through the work directory")
        }
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err, "cannot let the sandbox user pass through the work directory")
        }
    }
}

/// One sandbox directory with its marker; removed on drop unless it was cleaned up or kept.
///
/// Only [`SandboxRoot`] creates one; it is the common part of [`DirSandbox`] and
/// [`PostgresSandbox`].
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
    marker: SandboxMarker,
    /// Set once the directory was removed or handed over to keep-on-failure: `Drop` then leaves it.
    released: bool,
    jail: JailContext,
    /// What every jail of this sandbox saw that the steps did not start.
    strays: StrayLog,
}

impl Sandbox {
    /// Returns the sandbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the run the sandbox was created for.
    pub fn run_id(&self) -> RunId {
        self.marker.run_id
    }

    /// Returns what the sandbox holds.
    pub fn kind(&self) -> SandboxKind {
        self.marker.kind
    }

    /// Returns when the sandbox was created.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.marker.created_at
    }

    /// Returns the sandbox user.
    pub fn jail_user(&self) -> &JailUser {
        self.jail.user()
    }

    /// A jail for a step on this sandbox: its `data` directory read-write, nothing else of the
    /// agent's; add what the step reads with [`Jail::readable`].
    pub fn jail(&self) -> Jail {
        self.jail.jail(&self.strays).writable(self.dir.join(DATA_DIR))
    }

    /// A jail for a step that only reads (a backup it is given with [`Jail::readable`]): none of
    /// this sandbox's directories are in it.
    pub fn jail_for_reading(&self) -> Jail {
        self.jail.jail(&self.strays)
    }

    /// The programs this sandbox's jails saw that their steps did not start.
    pub fn strays(&self) -> Vec<Stray> {
        self.strays.strays()
    }

    /// Creates `<dir>/<name>` (mode 0700) and gives it to the sandbox user.
    fn give_to_jail(&self, name: &str) -> Result<PathBuf, SandboxError> {
        let path = self.dir.join(name);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(SandboxError::io("create", &path))?;
        self.jail.user().chown(&path)?;
        Ok(path)
    }

    /// Removes the directory, or keeps it until `now + keep_on_failure` when the run failed and
    /// keeping was asked for. On error the guard stays armed, so `Drop` tries to remove it.
    fn release(&mut self, failed: bool, keep_on_failure: Option<Duration>) -> Result<CleanupOutcome, SandboxError> {
        if failed && let Some(ttl) = keep_on_failure {
            let keep_until = keep_until(Utc::now(), ttl);
            let mut marker = self.marker.clone();
            marker.keep_until = Some(keep_until);
            marker.write(&self.dir)?;
            self.marker = marker;
            self.released = true;
            tracing::info!(dir = %self.dir.display(), %keep_until, "failed run's sandbox kept for inspection");
            return Ok(CleanupOutcome::Kept {
                dir: self.dir.clone(),
                keep_until,
            });
        }
        remove_dir(&self.dir).map_err(SandboxError::io("remove", &self.dir))?;
        self.released = true;
        Ok(CleanupOutcome::Removed)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // A jail dropped with this sandbox (a cancelled initdb, restore or server) was sent
        // SIGKILL but may still be dying: make sure nothing runs from here before removing it.
        if let Err(errno) = crate::procfs::stop_servers_of(&self.dir, None, Duration::ZERO) {
            tracing::warn!(dir = %self.dir.display(), %errno, "cannot stop what runs from a dropped sandbox");
        }
        match remove_dir(&self.dir) {
            Ok(()) => tracing::debug!(dir = %self.dir.display(), "sandbox removed on drop"),
            Err(err) => tracing::warn!(
                dir = %self.dir.display(),
                error = %err,
                "cannot remove sandbox; the janitor will at the next agent start"
            ),
        }
    }
}

/// Removes `dir` and everything in it (symlinks inside are removed, not followed); a directory
/// that is already gone is fine.
///
/// Retries a few times: a process that was just killed (e.g. an `initdb` child when the run was
/// cancelled mid-creation) may still be creating files while the tree is removed.
fn remove_dir(dir: &Path) -> io::Result<()> {
    let mut attempt = 1;
    loop {
        match fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) if attempt < REMOVE_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(REMOVE_RETRY_DELAY);
            }
            Err(err) => return Err(err),
        }
    }
}

/// Returns `now + ttl`, saturating instead of overflowing.
fn keep_until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A directory sandbox for one run: SQLite copies and files restores go into [`path`](Self::path).
///
/// Removed by [`cleanup`](Self::cleanup), or on drop if cleanup was not called.
#[derive(Debug)]
pub struct DirSandbox {
    sandbox: Sandbox,
    /// `<dir>/data`: restores go here, apart from the marker.
    data: PathBuf,
}

impl DirSandbox {
    /// Returns the (initially empty) directory restores go into.
    pub fn path(&self) -> &Path {
        &self.data
    }

    /// Returns the sandbox itself (directory, run, kind).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Removes the sandbox, or keeps it until now + `keep_on_failure` when `failed` and keeping
    /// was asked for.
    ///
    /// Runs on a blocking thread (a restored tree can be large); once started it completes even
    /// if the returned future is dropped.
    pub async fn cleanup(
        mut self,
        failed: bool,
        keep_on_failure: Option<Duration>,
    ) -> Result<CleanupOutcome, SandboxError> {
        tokio::task::spawn_blocking(move || self.sandbox.release(failed, keep_on_failure))
            .await
            .map_err(SandboxError::Worker)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, SandboxRoot) {
        let work_dir = tempfile::tempdir().unwrap();
        let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
        (work_dir, root)
    }

    #[tokio::test]
    async fn dir_sandboxes_are_created_once_and_removed_by_cleanup() {
        let (_work_dir, root) = root();
        let run_id = RunId::new();
        let sandbox = root.create_dir(run_id, DirKind::Files).unwrap();
        let dir = sandbox.sandbox().dir().to_owned();
        assert_eq!(dir, root.dir().join(format!("{run_id}-files")));
        assert_eq!(sandbox.path(), dir.join("data"));
        assert!(std::fs::read_dir(sandbox.path()).unwrap().next().is_none());
        let marker = SandboxMarker::read(&dir).unwrap();
        assert_eq!(
            (marker.run_id, marker.kind, marker.keep_until),
            (run_id, SandboxKind::Files, None)
        );
        assert_eq!(marker.owner_pid, std::process::id());

        // The same run cannot get the same sandbox twice.
        assert!(root.create_dir(run_id, DirKind::Files).is_err());

        std::fs::write(sandbox.path().join("restored.txt"), "x").unwrap();
        assert_eq!(
            sandbox.cleanup(false, Some(Duration::from_secs(60))).await.unwrap(),
            CleanupOutcome::Removed
        );
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn a_failed_dir_sandbox_is_kept_only_when_asked() {
        let (_work_dir, root) = root();
        let failed_not_kept = root.create_dir(RunId::new(), DirKind::Sqlite).unwrap();
        let dir = failed_not_kept.sandbox().dir().to_owned();
        assert_eq!(
            failed_not_kept.cleanup(true, None).await.unwrap(),
            CleanupOutcome::Removed
        );
        assert!(!dir.exists());

        let kept = root.create_dir(RunId::new(), DirKind::Sqlite).unwrap();
        let dir = kept.sandbox().dir().to_owned();
        let before = Utc::now();
        let outcome = kept.cleanup(true, Some(Duration::from_secs(3600))).await.unwrap();
        assert_eq!(outcome.kept_dir(), Some(dir.as_path()));
        let keep_until = SandboxMarker::read(&dir).unwrap().keep_until.unwrap();
        assert!(keep_until >= before + TimeDelta::hours(1) && keep_until <= Utc::now() + TimeDelta::hours(1));
    }

    #[test]
    fn dropping_a_dir_sandbox_removes_it() {
        let (_work_dir, root) = root();
        let sandbox = root.create_dir(RunId::new(), DirKind::Files).unwrap();
        let dir = sandbox.sandbox().dir().to_owned();
        drop(sandbox);
        assert!(!dir.exists());
    }

    #[test]
    fn a_symlinked_root_is_refused() {
        let work_dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), work_dir.path().join(SANDBOXES_DIR)).unwrap();
        assert!(matches!(
            SandboxRoot::in_work_dir(work_dir.path()),
            Err(SandboxError::RootNotADirectory(_))
        ));
    }

    #[test]
    fn keep_until_saturates() {
        let now = Utc::now();
        assert_eq!(keep_until(now, Duration::from_secs(60)), now + TimeDelta::minutes(1));
        assert_eq!(keep_until(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
