//! The janitor: removes the sandboxes a killed agent left behind.
//!
//! Run [`sweep`] at agent start (it is blocking: call it before the runtime is busy, or in
//! `spawn_blocking`); it may also run periodically. For each directory in the sandbox root:
//!
//! - a sandbox kept after a failure (`keep_until` in its marker) stays until that time, then goes,
//!   whether or not its owner still runs (cleanup already let go of it);
//! - any other sandbox stays while its owner runs (same pid *and* start time), and goes once the
//!   owner is gone: that agent was killed before it could clean up;
//! - a directory without a readable marker goes once it is an hour old (an agent crashed between
//!   creating it and writing the marker); a younger one may be being created right now.
//!
//! Before a directory is removed, any PostgreSQL still serving its `data` directory is stopped
//! (SIGINT, PostgreSQL's fast shutdown, then SIGKILL after a grace period). Processes are matched
//! by their command line mentioning that data directory (unique to the sandbox), never by name
//! or by a pid file alone.
//!
//! The janitor never leaves the root: symlinks and other non-directories in it are reported and
//! left alone, and removal does not follow symlinks inside a sandbox.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use nix::sys::signal::Signal;
use serde::Serialize;

use super::marker::SandboxMarker;
use super::{DATA_DIR, SandboxError, SandboxRoot};
use crate::procfs as process;

/// How old a directory without a marker must be before it is treated as a crash leftover.
const UNMARKED_GRACE: TimeDelta = TimeDelta::hours(1);
/// How long an orphaned server gets to shut down before SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What a sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JanitorReport {
    /// Sandboxes removed (their servers stopped first).
    pub removed: Vec<PathBuf>,
    /// Entries left in place, and why.
    pub kept: Vec<KeptEntry>,
    /// Sandboxes that should have been removed but could not be.
    pub failed: Vec<FailedEntry>,
}

/// An entry of the sandbox root the janitor left in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptEntry {
    pub path: PathBuf,
    pub reason: KeepReason,
}

/// Why the janitor left an entry in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum KeepReason {
    /// The agent process that created it still runs.
    OwnerAlive { pid: u32 },
    /// A failed run's sandbox kept for inspection until then.
    KeptUntil { keep_until: DateTime<Utc> },
    /// No readable marker yet, and younger than an hour: possibly being created.
    Unmarked,
    /// A symlink: not followed, not removed.
    Symlink,
    /// Neither a directory nor a symlink: not a sandbox.
    NotADirectory,
}

/// A sandbox the janitor could not remove.
#[derive(Debug, Clone, Serialize)]
pub struct FailedEntry {
    pub path: PathBuf,
    /// What went wrong, in words.
    pub error: String,
}

/// Removes the sandboxes in `root` that no live agent owns, and kept sandboxes whose time is up
/// (relative to `now`). Never touches anything outside `root`.
pub fn sweep(root: &SandboxRoot, now: DateTime<Utc>) -> JanitorReport {
    let mut report = JanitorReport::default();
    let entries = match fs::read_dir(root.dir()) {
        Ok(entries) => entries,
        Err(err) => {
            report.failed.push(FailedEntry {
                path: root.dir().to_owned(),
                error: format!("cannot list the sandbox root: {err}"),
            });
            return report;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                report.failed.push(FailedEntry {
                    path: root.dir().to_owned(),
                    error: format!("cannot list the sandbox root: {err}"),
                });
                continue;
            }
        };
        let path = entry.path();
        // The jails' own files (`.jail`) are not a sandbox.
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        // `DirEntry::file_type` does not follow symlinks.
        let file_type = match entry.file_type() {
            Ok(file_type) => file_type,
            Err(err) => {
                report.failed.push(FailedEntry {
                    path,
                    error: format!("cannot inspect: {err}"),
                });
                continue;
            }
        };
        if file_type.is_symlink() {
            tracing::warn!(path = %path.display(), "symlink in the sandbox root; not following it");
            report.kept.push(KeptEntry {
                path,
                reason: KeepReason::Symlink,
            });
            continue;
        }
        if !file_type.is_dir() {
            report.kept.push(KeptEntry {
                path,
                reason: KeepReason::NotADirectory,
            });
            continue;
        }
        if let Some(reason) = keep_reason(&path, now) {
            report.kept.push(KeptEntry { path, reason });
            continue;
        }
        match remove(&path) {
            Ok(()) => {
                tracing::info!(dir = %path.display(), "removed orphaned sandbox");
                report.removed.push(path);
            }
            Err(err) => {
                tracing::warn!(dir = %path.display(), error = %err, "cannot remove orphaned sandbox");
                report.failed.push(FailedEntry {
                    path,
                    error: err.to_string(),
                });
            }
        }
    }
    report
}

/// Returns why the sandbox in `dir` must stay, or `None` when it is to be removed.
fn keep_reason(dir: &Path, now: DateTime<Utc>) -> Option<KeepReason> {
    match SandboxMarker::read(dir) {
        Ok(marker) => match marker.keep_until {
            Some(keep_until) if keep_until > now => Some(KeepReason::KeptUntil { keep_until }),
            Some(_) => None,
            None if marker.owner().is_running() => Some(KeepReason::OwnerAlive { pid: marker.owner_pid }),
            None => None,
        },
        Err(_) => {
            let modified = fs::symlink_metadata(dir).and_then(|meta| meta.modified()).ok()?;
            let age = now.signed_duration_since(DateTime::<Utc>::from(modified));
            (age < UNMARKED_GRACE).then_some(KeepReason::Unmarked)
        }
    }
}

/// Stops whatever server still runs from the sandbox in `dir`, then removes `dir`.
fn remove(dir: &Path) -> Result<(), SandboxError> {
    // PostgreSQL reads SIGINT as "fast shutdown": it disconnects clients instead of waiting.
    process::stop_servers_of(&dir.join(DATA_DIR), Some(Signal::SIGINT), SHUTDOWN_GRACE).map_err(|errno| {
        SandboxError::Stop {
            dir: dir.to_owned(),
            errno,
        }
    })?;
    // Symlinks inside are removed, never followed.
    super::remove_dir(dir).map_err(SandboxError::io("remove", dir))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use lifeboat_shared::ids::RunId;

    use super::*;
    use crate::procfs::ProcessIdentity;
    use crate::sandbox::DirKind;

    fn work_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("lb-")
            .permissions(fs::Permissions::from_mode(0o711))
            .tempdir()
            .unwrap()
    }

    /// The identity of a process that has exited and been reaped: a killed agent.
    fn dead_owner() -> ProcessIdentity {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        ProcessIdentity { pid, start_time: 1 }
    }

    /// Makes the sandbox in `dir` look like the leftover of `owner`.
    fn set_owner(dir: &Path, owner: ProcessIdentity) {
        let mut marker = SandboxMarker::read(dir).unwrap();
        marker.owner_pid = owner.pid;
        marker.owner_start_time = owner.start_time;
        marker.write(dir).unwrap();
    }

    #[test]
    fn orphans_go_live_owners_stay_and_symlinks_are_not_followed() {
        let work_dir = work_dir();
        let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();

        let live = root.create_dir(RunId::new(), DirKind::Files).unwrap();
        let orphan = root.create_dir(RunId::new(), DirKind::Sqlite).unwrap();
        let orphan_dir = orphan.sandbox().dir().to_owned();
        set_owner(&orphan_dir, dead_owner());
        std::mem::forget(orphan); // the agent that owned it was killed: no Drop
        let recycled = root.create_dir(RunId::new(), DirKind::Files).unwrap();
        let recycled_dir = recycled.sandbox().dir().to_owned();
        // Our own pid, but another start time: the pid was recycled, the owner is gone.
        let me = ProcessIdentity::current().unwrap();
        set_owner(
            &recycled_dir,
            ProcessIdentity {
                start_time: me.start_time + 1,
                ..me
            },
        );
        std::mem::forget(recycled);

        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), "keep me").unwrap();
        let link = root.dir().join(format!("{}-files", RunId::new()));
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();

        let report = sweep(&root, Utc::now());
        let mut removed = report.removed.clone();
        removed.sort();
        let mut expected = vec![orphan_dir.clone(), recycled_dir.clone()];
        expected.sort();
        assert_eq!(removed, expected, "{report:?}");
        assert!(!orphan_dir.exists() && !recycled_dir.exists());
        assert!(report.failed.is_empty(), "{report:?}");
        assert!(report.kept.contains(&KeptEntry {
            path: live.sandbox().dir().to_owned(),
            reason: KeepReason::OwnerAlive {
                pid: std::process::id()
            },
        }));
        assert!(live.sandbox().dir().exists());
        assert!(report.kept.contains(&KeptEntry {
            path: link.clone(),
            reason: KeepReason::Symlink
        }));
        assert!(outside.path().join("precious").exists());
        assert!(link.exists());
    }

    #[test]
    fn unmarked_directories_go_only_after_an_hour() {
        let work_dir = work_dir();
        let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
        let unmarked = root.dir().join(format!("{}-postgres", RunId::new()));
        fs::create_dir(&unmarked).unwrap();

        let report = sweep(&root, Utc::now());
        assert_eq!(
            report.kept,
            vec![KeptEntry {
                path: unmarked.clone(),
                reason: KeepReason::Unmarked
            }]
        );
        assert!(unmarked.exists());

        let report = sweep(&root, Utc::now() + TimeDelta::hours(2));
        assert_eq!(report.removed, vec![unmarked.clone()]);
        assert!(!unmarked.exists());
    }

    #[tokio::test]
    async fn an_orphaned_server_is_stopped_and_its_sandbox_removed() {
        let major = crate::capabilities::postgres_majors()
            .last()
            .copied()
            .expect("this test needs PostgreSQL server binaries under /usr/lib/postgresql");
        let work_dir = work_dir();
        let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
        let sandbox = root.create_postgres(RunId::new(), major).await.unwrap();
        let dir = sandbox.sandbox().dir().to_owned();
        let data_dir = sandbox.data_dir().to_owned();
        let postmaster = process::processes_mentioning(&data_dir)
            .into_iter()
            .find(|found| process::read_stat(found.pid).is_ok_and(|stat| stat.name == "postgres"))
            .expect("a running postmaster");
        set_owner(&dir, dead_owner());
        std::mem::forget(sandbox); // the agent was killed: no cleanup, no Drop

        let report = tokio::task::spawn_blocking({
            let root = root.clone();
            move || sweep(&root, Utc::now())
        })
        .await
        .unwrap();
        assert_eq!(report.removed, vec![dir.clone()], "{report:?}");
        assert!(!dir.exists());
        assert!(!postmaster.is_running());
        assert!(process::processes_mentioning(&data_dir).is_empty());
    }
}
