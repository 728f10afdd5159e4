//! Short private directories for the sandbox servers' Unix sockets.
//!
//! A Unix socket path may not exceed 107 bytes, and a sandbox directory under a long `work_dir`
//! easily does. So each PostgreSQL sandbox listens in a directory of its own under a short runtime
//! root, whatever `work_dir` is:
//!
//! - `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`, e.g. `/run/lifeboat-agent`), else
//! - `/run/lifeboat-agent` when the agent may create it, else
//! - `/tmp/lifeboat-agent-<uid>`, created by the agent with mode 0711 and refused if someone else
//!   made it first.
//!
//! Each sandbox's directory is `<root>/<8 random characters>`, given to the sandbox user; the
//! socket inside is `.s.PGSQL.5432`. The directory is removed with its sandbox.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rand::Rng as _;
use rand::distr::Alphanumeric;

use super::SandboxError;
use crate::jail::JailUser;

/// The system-wide runtime root, when the agent may create it.
const SYSTEM_ROOT: &str = "/run/lifeboat-agent";
/// Length of a sandbox's random directory name.
const NAME_LEN: usize = 8;

/// One sandbox's socket directory; removed on drop.
#[derive(Debug)]
pub struct SocketDir {
    path: PathBuf,
}

impl SocketDir {
    /// Creates a fresh socket directory given to `user`.
    pub fn create(user: &JailUser) -> Result<Self, SandboxError> {
        let root = runtime_root()?;
        let name: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(NAME_LEN)
            .map(|byte| char::from(byte).to_ascii_lowercase())
            .collect();
        let path = root.join(name);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(SandboxError::io("create", &path))?;
        let dir = Self { path };
        user.chown(&dir.path)?;
        Ok(dir)
    }

    /// Returns the directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_dir_all(&self.path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::debug!(dir = %self.path.display(), error = %err, "cannot remove a socket directory");
        }
    }
}

/// Returns (creating it when needed) the root socket directories live in.
fn runtime_root() -> Result<PathBuf, SandboxError> {
    if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY").map(PathBuf::from)
        && dir.is_absolute()
        && owned_directory(&dir)
    {
        open_up(&dir)?;
        return Ok(dir);
    }
    let system = Path::new(SYSTEM_ROOT);
    if fs::DirBuilder::new().mode(0o711).create(system).is_ok() || owned_directory(system) {
        open_up(system)?;
        return Ok(system.to_owned());
    }
    let fallback = std::env::temp_dir().join(format!("lifeboat-agent-{}", nix::unistd::geteuid()));
    match fs::DirBuilder::new().mode(0o711).create(&fallback) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(SandboxError::io("create", &fallback)(err)),
    }
    if !owned_directory(&fallback) {
        return Err(SandboxError::io("use", &fallback)(std::io::Error::other(
            "it is not a directory owned by the agent's user (someone else created it)",
        )));
    }
    open_up(&fallback)?;
    Ok(fallback)
}

/// Whether `dir` is a real directory (not a symlink) owned by this process's user.
fn owned_directory(dir: &Path) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|meta| meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw())
}

/// Mode 0711: the sandbox user may pass through to its own directory, nobody may list.
fn open_up(dir: &Path) -> Result<(), SandboxError> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).map_err(SandboxError::io("protect", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_are_short_whatever_the_work_dir() {
        let root = runtime_root().unwrap();
        let longest = root.join("x".repeat(NAME_LEN)).join(".s.PGSQL.65535");
        assert!(longest.as_os_str().len() <= 107, "{}", longest.display());
        assert!(owned_directory(&root));
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o711);
    }
}
