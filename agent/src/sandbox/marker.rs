//! The marker file `sandbox.json` in every sandbox directory: which run made the sandbox, which
//! agent process owns it, and until when a failed run's sandbox is kept.
//!
//! It is what lets the janitor tell a sandbox in use (its owner still runs) from the leftover of
//! a killed agent, without any other state. It is written atomically (temporary file, then
//! rename), so a reader sees either the old or the new marker, never half of one.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use lifeboat_shared::ids::RunId;
use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use super::{SandboxError, SandboxKind};
use crate::procfs::ProcessIdentity;

/// Name of the marker file inside a sandbox directory.
pub const MARKER_FILE: &str = "sandbox.json";
/// Markers are a few hundred bytes; anything much larger is not ours.
const MAX_MARKER_BYTES: u64 = 64 * 1024;

/// The contents of `sandbox.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxMarker {
    /// The run the sandbox was created for.
    pub run_id: RunId,
    /// What the sandbox holds.
    pub kind: SandboxKind,
    /// When the sandbox directory was created.
    pub created_at: DateTime<Utc>,
    /// The agent process that created the sandbox and is responsible for removing it.
    pub owner_pid: u32,
    /// Start time of the owner (`/proc/<pid>/stat` field 22), so that a recycled pid does not
    /// pass for the owner.
    pub owner_start_time: u64,
    /// Set when a failed run's sandbox is kept for inspection: the janitor removes it after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_until: Option<DateTime<Utc>>,
}

impl SandboxMarker {
    /// Returns a marker for a sandbox `owner` creates now.
    pub(crate) fn new(run_id: RunId, kind: SandboxKind, owner: ProcessIdentity) -> Self {
        Self {
            run_id,
            kind,
            created_at: Utc::now(),
            owner_pid: owner.pid,
            owner_start_time: owner.start_time,
            keep_until: None,
        }
    }

    /// Returns the identity of the owning agent process.
    pub(crate) fn owner(&self) -> ProcessIdentity {
        ProcessIdentity {
            pid: self.owner_pid,
            start_time: self.owner_start_time,
        }
    }

    /// Reads the marker of the sandbox in `dir`. A symlinked marker is refused.
    pub(crate) fn read(dir: &Path) -> Result<Self, SandboxError> {
        let path = dir.join(MARKER_FILE);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .map_err(SandboxError::io("open", &path))?;
        let mut text = String::new();
        (&mut file)
            .take(MAX_MARKER_BYTES)
            .read_to_string(&mut text)
            .map_err(SandboxError::io("read", &path))?;
        serde_json::from_str(&text).map_err(|source| SandboxError::Marker { path, source })
    }

    /// Writes the marker into the sandbox in `dir`, replacing any previous one atomically.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), SandboxError> {
        let path = dir.join(MARKER_FILE);
        let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(|source| SandboxError::Marker {
            path: path.clone(),
            source,
        })?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&tmp)
            .map_err(SandboxError::io("create", &tmp))?;
        file.write_all(&json).map_err(SandboxError::io("write", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(SandboxError::io("rename", &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let owner = ProcessIdentity::current().unwrap();
        let mut marker = SandboxMarker::new(RunId::new(), SandboxKind::Postgres, owner);
        marker.write(dir.path()).unwrap();
        assert_eq!(SandboxMarker::read(dir.path()).unwrap(), marker);
        assert_eq!(marker.owner(), owner);

        marker.keep_until = Some(Utc::now());
        marker.write(dir.path()).unwrap();
        assert_eq!(SandboxMarker::read(dir.path()).unwrap(), marker);
        assert!(!dir.path().join(format!("{MARKER_FILE}.tmp")).exists());

        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("secret"), "{}").unwrap();
        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("secret"), linked.path().join(MARKER_FILE)).unwrap();
        assert!(SandboxMarker::read(linked.path()).is_err());
    }
}
