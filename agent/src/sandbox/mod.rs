//! Throw-away sandboxes that restores go into, with guaranteed cleanup (DESIGN.md §5.1).
//!
//! # Only sandboxes this run created
//!
//! Restores and checks never take a path or a connection string to write to: the restore code
//! requires a [`&PostgresSandbox`](PostgresSandbox) or a [`&DirSandbox`](DirSandbox). Those
//! handles have private fields and are only made by [`SandboxRoot::create_postgres`] and
//! [`SandboxRoot::create_dir`], which create a fresh directory for one run (creation fails if it
//! already exists) and, for PostgreSQL, a fresh cluster on 127.0.0.1 and a Unix socket in that
//! directory, with a random 32-character password. So the type system, not a convention, is what
//! keeps a restore from pointing at production or at another run's sandbox.
//!
//! # On disk
//!
//! ```text
//! <work_dir>/sandboxes/                      the SandboxRoot
//!   <run_id>-<kind>/                         one sandbox (kind: postgres, sqlite, files)
//!     sandbox.json                           marker: run, owner pid + start time, keep_until
//!     data/                                  what is restored (PostgreSQL: the data directory)
//!     postgres.log, .s.PGSQL.<port>          PostgreSQL only
//! ```
//!
//! # Guaranteed cleanup
//!
//! - success or failure: the runner calls `cleanup`, which stops the server and removes the
//!   directory (or keeps it, below);
//! - timeout, cancellation (the run's future is dropped), early return, panic: the handle's `Drop`
//!   stops the server and removes the directory synchronously;
//! - the agent is killed (SIGKILL, power loss): [`janitor::sweep`] at the next start finds the
//!   sandboxes whose owner process is gone, stops their servers and removes them. Should a
//!   server survive all of that, PostgreSQL shuts itself down within a minute of its data
//!   directory's lock file disappearing.
//!
//! # Keep on failure
//!
//! Opt-in per test, with a TTL: `cleanup(failed = true, keep_on_failure = Some(ttl))` stops the
//! server but keeps the directory, writing `keep_until` into the marker; the janitor removes it
//! once that time has passed. To inspect a kept PostgreSQL sandbox, start it as the user that owns
//! the directory (`lifeboat-sandbox` when the agent runs as root). It then listens only on the Unix socket
//! in the sandbox directory, and the superuser's password is in `<dir>/password` (without sudo,
//! `runuser -u postgres --` does the same):
//!
//! ```text
//! sudo -u postgres /usr/lib/postgresql/<major>/bin/pg_ctl start -D <dir>/data -l <dir>/postgres.log
//! sudo -u postgres env PGPASSWORD="$(sudo cat <dir>/password)" \
//!     /usr/lib/postgresql/<major>/bin/psql -h <dir> -U lifeboat_sandbox -d <database>
//! sudo -u postgres /usr/lib/postgresql/<major>/bin/pg_ctl stop -D <dir>/data
//! ```

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_shared::ids::RunId;
use serde::{Deserialize, Serialize};

pub mod janitor;
mod marker;
mod pg_tools;
pub mod postgres;
mod process;

pub use marker::{MARKER_FILE, SandboxMarker};
pub use postgres::{PostgresSandbox, pick_major};

use process::ProcessIdentity;

/// Name of the sandbox root inside the agent's work directory.
pub const SANDBOXES_DIR: &str = "sandboxes";
/// Name of the directory inside a sandbox that restores go into.
pub const DATA_DIR: &str = "data";
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
    /// The agent runs as root, and there is no unprivileged user for the server (initdb and
    /// pg_ctl refuse to run as root).
    #[error(
        "the agent runs as root and could neither find nor create the `lifeboat-sandbox` system user to run the sandbox server as: create it (useradd --system lifeboat-sandbox) or run the agent as an unprivileged user"
    )]
    NoServerUser,
    /// The server's user cannot reach the sandbox directory.
    #[error(
        "user {user} cannot reach {}: grant it search permission (chmod o+x) or put the agent's work_dir where it can",
        .path.display()
    )]
    Unreachable { user: String, path: PathBuf },
    /// The sandbox path contains characters that would need quoting in `pg_ctl` options.
    #[error(
        "sandbox path {} has characters a postgresql sandbox cannot use: use a work_dir of letters, digits and / . _ - + @ :",
        .0.display()
    )]
    UnsafePath(PathBuf),
    /// The Unix socket path would exceed the kernel's 107-byte limit.
    #[error("sandbox path {} is too long for a unix socket: use a shorter work_dir", .0.display())]
    SocketPathTooLong(PathBuf),
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
    /// The blocking task running a cleanup panicked or was dropped by a shutting-down runtime.
    #[error("sandbox cleanup task failed")]
    Worker(#[source] tokio::task::JoinError),
}

impl SandboxError {
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
    /// Canonical (absolute, symlink-free) path: servers are found by the path in their `-D`.
    dir: PathBuf,
    /// This agent process, recorded as the owner in every marker.
    owner: ProcessIdentity,
}

impl SandboxRoot {
    /// Opens (creating it if needed) the sandbox root `dir`, normally `<work_dir>/sandboxes`.
    ///
    /// A symlink at `dir` itself is refused. The directory is made private to the agent's user;
    /// when the agent runs as root, other users may traverse it (mode 0711, no listing) so that
    /// the sandbox user can reach its own sandbox's data directory.
    pub fn open(dir: &Path) -> Result<Self, SandboxError> {
        fs::create_dir_all(dir).map_err(SandboxError::io("create", dir))?;
        let meta = fs::symlink_metadata(dir).map_err(SandboxError::io("inspect", dir))?;
        if !meta.is_dir() {
            return Err(SandboxError::RootNotADirectory(dir.to_owned()));
        }
        let mode = if nix::unistd::geteuid().is_root() { 0o711 } else { 0o700 };
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(SandboxError::io("protect", dir))?;
        let dir = fs::canonicalize(dir).map_err(SandboxError::io("resolve", dir))?;
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

    /// Creates an empty directory sandbox for `run_id` (SQLite copies, files restores).
    pub fn create_dir(&self, run_id: RunId, kind: DirKind) -> Result<DirSandbox, SandboxError> {
        let sandbox = self.create_sandbox(run_id, kind.into())?;
        let data = sandbox.dir().join(DATA_DIR);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&data)
            .map_err(SandboxError::io("create", &data))?;
        Ok(DirSandbox { sandbox, data })
    }

    /// Creates `<root>/<run_id>-<kind>` (failing if it exists: a sandbox is never reused) and its
    /// marker. The returned guard removes the directory if anything after this fails.
    fn create_sandbox(&self, run_id: RunId, kind: SandboxKind) -> Result<Sandbox, SandboxError> {
        let dir = self.dir.join(format!("{run_id}-{kind}"));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(SandboxError::io("create", &dir))?;
        let marker = SandboxMarker::new(run_id, kind, self.owner);
        let sandbox = Sandbox {
            dir,
            marker,
            released: false,
        };
        sandbox.marker.write(&sandbox.dir)?;
        tracing::debug!(dir = %sandbox.dir.display(), "sandbox created");
        Ok(sandbox)
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
