//! The sandbox user every jail runs as: `lifeboat-sandbox`, a system user that owns nothing but
//! the sandboxes the agent gives it.
//!
//! A dedicated user, not `postgres`: a restored dump runs as a sandbox superuser and could run
//! programs as the server's OS user; on a host where production PostgreSQL runs as `postgres`,
//! that user could reach production's data directory. This one can reach nothing of value, and
//! inside the jail it sees nothing else either.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use super::JailError;

/// The sandbox user's name.
pub const JAIL_USER: &str = "lifeboat-sandbox";
/// How many entries of a directory [`JailUser::may_read_tree`] looks at.
const MAX_TREE_ENTRIES: usize = 100_000;

/// The sandbox user, resolved on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailUser {
    name: String,
    uid: Uid,
    gid: Gid,
}

impl JailUser {
    /// Finds the sandbox user; an agent running as root creates it (without a home or a login
    /// shell) when it does not exist yet.
    pub fn resolve() -> Result<Self, JailError> {
        if !matches!(User::from_name(JAIL_USER), Ok(Some(_))) && nix::unistd::geteuid().is_root() {
            create_system_user(JAIL_USER);
        }
        match User::from_name(JAIL_USER) {
            Ok(Some(user)) => Ok(Self {
                name: user.name,
                uid: user.uid,
                gid: user.gid,
            }),
            Ok(None) | Err(_) => Err(JailError::NoUser(JAIL_USER.to_owned())),
        }
    }

    /// Returns the user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the user's uid.
    pub fn uid(&self) -> u32 {
        self.uid.as_raw()
    }

    /// Returns the user's primary gid (the only group a jailed process has).
    pub fn gid(&self) -> u32 {
        self.gid.as_raw()
    }

    /// The jail's `/etc/passwd`: this user alone.
    pub(super) fn passwd_line(&self) -> String {
        format!(
            "{}:x:{}:{}:Lifeboat sandbox:/nonexistent:/usr/sbin/nologin\n",
            self.name, self.uid, self.gid
        )
    }

    /// The jail's `/etc/group`: this user's primary group alone.
    pub(super) fn group_line(&self) -> String {
        format!("{}:x:{}:\n", self.name, self.gid)
    }

    /// Gives `path` (not what is in it) to this user.
    pub fn chown(&self, path: &Path) -> Result<(), JailError> {
        nix::unistd::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|errno| JailError::io("give to the sandbox user", path)(errno.into()))
    }

    /// The error for a path this user cannot read; `grant` is where to grant access.
    pub fn unreadable(&self, path: &Path, grant: &Path) -> JailError {
        JailError::Unreadable {
            user: self.name.clone(),
            path: path.to_owned(),
            grant: grant.to_owned(),
        }
    }

    /// Whether the mode bits let this user read `path`: every ancestor searchable, the path
    /// itself readable (and searchable when a directory). Access control lists can grant more
    /// than the bits show, so `false` is a strong hint, and the jail's own attempt decides.
    pub fn may_read(&self, path: &Path) -> bool {
        let searchable = path.ancestors().skip(1).all(|dir| self.may_search(dir));
        searchable
            && std::fs::metadata(path).is_ok_and(|meta| self.allows(&meta, if meta.is_dir() { 0o5 } else { 0o4 }))
    }

    /// Like [`may_read`](Self::may_read), and for a directory everything in it too (at most
    /// [`MAX_TREE_ENTRIES`] entries are looked at).
    pub fn may_read_tree(&self, path: &Path) -> bool {
        if !self.may_read(path) {
            return false;
        }
        let mut pending = vec![path.to_owned()];
        let mut seen = 0;
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                seen += 1;
                if seen > MAX_TREE_ENTRIES {
                    return true;
                }
                let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                    continue;
                };
                if meta.file_type().is_symlink() {
                    continue;
                }
                let want = if meta.is_dir() { 0o5 } else { 0o4 };
                if !self.allows(&meta, want) {
                    return false;
                }
                if meta.is_dir() {
                    pending.push(entry.path());
                }
            }
        }
        true
    }

    /// Whether the mode bits let this user pass through the directory `dir`.
    pub fn may_search(&self, dir: &Path) -> bool {
        std::fs::metadata(dir).is_ok_and(|meta| self.allows(&meta, 0o1))
    }

    /// Whether `meta`'s owner, group or other bits (whichever apply to this user) include `want`.
    fn allows(&self, meta: &std::fs::Metadata, want: u32) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let shift = if meta.uid() == self.uid.as_raw() {
            6
        } else if meta.gid() == self.gid.as_raw() {
            3
        } else {
            0
        };
        (meta.mode() >> shift) & want == want
    }
}

/// Creates a system user without home or login shell; concurrent agents may race to create it,
/// and whoever loses finds it in the next lookup.
fn create_system_user(name: &str) {
    let created = std::process::Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
        ])
        .args(["--shell", "/usr/sbin/nologin", name])
        .stdin(std::process::Stdio::null())
        .output();
    match created {
        Ok(output) if !output.status.success() => {
            tracing::debug!(stderr = %String::from_utf8_lossy(&output.stderr), "useradd {name}");
        }
        Ok(_) => tracing::info!(user = name, "created the sandbox user"),
        Err(err) => tracing::debug!(error = %err, "cannot run useradd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jail_sees_only_the_sandbox_user() {
        let user = JailUser {
            name: JAIL_USER.to_owned(),
            uid: Uid::from_raw(995),
            gid: Gid::from_raw(994),
        };
        assert_eq!(
            user.passwd_line(),
            "lifeboat-sandbox:x:995:994:Lifeboat sandbox:/nonexistent:/usr/sbin/nologin\n"
        );
        assert_eq!(user.group_line(), "lifeboat-sandbox:x:994:\n");
    }

    #[test]
    fn mode_bits_say_who_may_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let user = JailUser {
            name: JAIL_USER.to_owned(),
            uid: Uid::from_raw(65_000),
            gid: Gid::from_raw(65_000),
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("dump");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(user.may_read(&file) || !user.may_read(dir.path().parent().unwrap()));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!user.may_read(&file));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!user.may_read(dir.path()));
    }
}
