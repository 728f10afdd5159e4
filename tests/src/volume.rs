//! Another volume on this machine: a tmpfs mounted for one test, unmounted on drop. Backups kept
//! on it are on a different device than the production data directory — which the agent finds
//! out by itself — as backups on another disk or NFS mount would be.
//!
//! Mounting needs root (the test command runs as root; CI does too).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// A mounted tmpfs, unmounted (lazily) when dropped.
pub struct OtherVolume {
    dir: tempfile::TempDir,
}

impl OtherVolume {
    /// Mounts a tmpfs of at most `size_mib` MiB on a fresh temporary directory.
    pub fn mount(size_mib: u32) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("create a mount point")?;
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m,mode=0755"),
                "lifeboat-test",
            ])
            .arg(dir.path())
            .output()
            .context("run mount")?;
        if !output.status.success() {
            bail!(
                "mount -t tmpfs {} failed (the tests need root to mount another volume): {}",
                dir.path().display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A directory on the volume (created).
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir on the other volume");
        dir
    }
}

impl Drop for OtherVolume {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).output();
    }
}
