//! PostgreSQL sandboxes started on a restored base backup instead of a fresh `initdb` cluster.
//!
//! [`SandboxRoot::create_postgres_for_base_backup`] makes the sandbox directory and an empty data
//! directory and starts nothing; the restore fills the data directory in the jail (after verifying
//! the backup); [`PostgresSandbox::start_restored`] then makes it a sandbox like any other:
//!
//! - the backup's own configuration is set aside (renamed `*.from-backup`), not obeyed: an empty
//!   `postgresql.conf` and `postgresql.auto.conf`, so nothing it says about libraries to preload,
//!   programs to run or paths to use reaches the server; a setting that asks PostgreSQL to load a
//!   library from anywhere but the installed library directory is a sign of tampering;
//! - production's `pg_hba.conf` is replaced by one that admits only the sandbox superuser, with
//!   its password, on the socket;
//! - the sandbox superuser and its random password are created in single-user mode (which runs
//!   the crash recovery from `backup_label` and needs no login, so production's roles and
//!   passwords never matter), the password going over stdin, never on a command line;
//! - `standby.signal`/`recovery.signal` are removed, so the copy never follows production;
//! - the server starts with the sandbox settings (see `server::server_options`).
//!
//! Every file the agent writes into the restored data directory replaces the entry there without
//! following links: the directory holds what a possibly hostile backup put in it.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use lifeboat_shared::ids::RunId;
use tokio::io::AsyncWriteExt as _;

use super::super::pg_tools::check;
use super::server::SERVER_PROCESSES;
use super::{POSTGRES_LIB_DIR, PostgresSandbox, SUPERUSER};
use crate::jail::Shells;
use crate::sandbox::{SandboxError, SandboxRoot};

/// Files of a base backup that would make the copy act as production's replica or archive
/// recovery target, or that belong to a server that is not running here.
const REMOVED_FILES: [&str; 4] = ["postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal"];
/// The backup's configuration files, set aside and replaced by empty ones.
const CONFIG_FILES: [&str; 3] = ["postgresql.conf", "postgresql.auto.conf", "pg_ident.conf"];
/// Settings that load native code into the server or its sessions.
const LIBRARY_SETTINGS: [&str; 4] = [
    "shared_preload_libraries",
    "session_preload_libraries",
    "local_preload_libraries",
    "dynamic_library_path",
];
/// The sandbox's `pg_hba.conf`: only the sandbox superuser, only with its password, only on the
/// socket.
const SANDBOX_HBA: &str = "# Lifeboat sandbox: only the sandbox superuser, with its password.\n\
                           local all lifeboat_sandbox scram-sha-256\n";
/// Largest configuration file read for signs of tampering.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// How long single-user mode (the backup's crash recovery) may take.
const SINGLE_USER_TIMEOUT: Duration = Duration::from_secs(600);

impl SandboxRoot {
    /// Creates a stopped PostgreSQL `major` sandbox for `run_id` with an empty data directory that
    /// a base backup is restored into; [`PostgresSandbox::start_restored`] starts it.
    pub fn create_postgres_for_base_backup(&self, run_id: RunId, major: u32) -> Result<PostgresSandbox, SandboxError> {
        self.prepare_postgres(run_id, major, &["postgres", "pg_verifybackup"])
    }
}

impl PostgresSandbox {
    /// Starts the server on the base backup restored into [`data_dir`](Self::data_dir): sets its
    /// configuration aside, replaces its access rules, creates the sandbox superuser (running the
    /// backup's crash recovery) and starts it with the sandbox settings; returns once it accepts
    /// connections, with the signs of tampering found in the backup's configuration.
    ///
    /// A server that does not come up (damaged WAL, missing files) is a
    /// [`SandboxError::Command`] or [`SandboxError::ServerExited`] carrying the end of its output.
    pub async fn start_restored(&mut self) -> Result<Vec<String>, SandboxError> {
        let version = self.data_dir.join("PG_VERSION");
        if !fs::symlink_metadata(&version).is_ok_and(|meta| meta.is_file()) {
            return Err(SandboxError::Io {
                action: "find",
                path: version,
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        for name in REMOVED_FILES {
            remove_entry(&self.data_dir.join(name))?;
        }
        let libdir = Path::new(POSTGRES_LIB_DIR).join(self.major.to_string()).join("lib");
        let mut signs = Vec::new();
        for name in CONFIG_FILES {
            let path = self.data_dir.join(name);
            signs.extend(library_tampering(&read_config(&path), name, &libdir));
            if fs::symlink_metadata(&path).is_ok() {
                let aside = self.data_dir.join(format!("{name}.from-backup"));
                remove_entry(&aside)?;
                fs::rename(&path, &aside).map_err(SandboxError::io("set aside", &path))?;
            }
            self.write_jail_file(&path, b"")?;
        }
        self.write_jail_file(&self.data_dir.join("pg_hba.conf"), SANDBOX_HBA.as_bytes())?;
        // A copied backup brings its directory's mode along; the server wants 0700.
        let chmod = self
            .sandbox
            .jail()
            .allow(&["chmod"])
            .command("chmod")
            .arg("0700")
            .arg(&self.data_dir)
            .output(Duration::from_secs(30))
            .await?;
        check("chmod", &chmod, "")?;
        self.create_superuser().await?;
        self.write_inspection_settings()?;
        self.start().await?;
        tracing::debug!(
            dir = %self.sandbox.dir().display(),
            major = self.major,
            "postgresql sandbox started on a restored base backup"
        );
        Ok(signs)
    }

    /// Creates (or resets) the sandbox superuser in single-user mode, in the jail: no login
    /// needed, and the backup's crash recovery runs first.
    async fn create_superuser(&self) -> Result<(), SandboxError> {
        let statement = format!(
            "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{SUPERUSER}') THEN \
             ALTER ROLE {SUPERUSER} SUPERUSER LOGIN PASSWORD '{password}'; ELSE \
             CREATE ROLE {SUPERUSER} SUPERUSER LOGIN PASSWORD '{password}'; END IF; END $$;\n",
            password = self.password
        );
        let mut process = self
            .sandbox
            .jail()
            .shells(Shells::Tripwire)
            .allow(SERVER_PROCESSES)
            .command(self.bin_dir.join("postgres"))
            .arg("--single")
            .arg("-D")
            .arg(&self.data_dir)
            .args(self.server_options())
            .args(["-c", "password_encryption=scram-sha-256"])
            .arg("postgres")
            .stdin_piped()
            .spawn()?;
        if let Some(mut stdin) = process.take_stdin() {
            stdin
                .write_all(statement.as_bytes())
                .await
                .map_err(SandboxError::io("write to", &self.bin_dir.join("postgres")))?;
        }
        let output = process.wait_with_output(SINGLE_USER_TIMEOUT).await?;
        check("postgres --single", &output, "")?;
        if let Some(line) = output
            .stderr
            .lines()
            .find(|line| line.contains("ERROR:") || line.contains("FATAL:") || line.contains("PANIC:"))
        {
            return Err(SandboxError::Command {
                program: "postgres --single".to_owned(),
                status: output.status.to_string(),
                output: line.trim().to_owned(),
            });
        }
        Ok(())
    }
}

/// Removes a directory entry (a file or a link, never what a link points to) if it exists.
fn remove_entry(path: &Path) -> Result<(), SandboxError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(SandboxError::io("remove", path)(err)),
    }
}

/// Reads a restored configuration file: a regular file only (a link is not followed), at most
/// [`MAX_CONFIG_BYTES`]; anything else reads as empty.
fn read_config(path: &Path) -> String {
    let Ok(file) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
    else {
        return String::new();
    };
    if !file.metadata().is_ok_and(|meta| meta.is_file()) {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _partial = file.take(MAX_CONFIG_BYTES).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Settings in `config` that would load a library from outside `libdir` (the installed
/// PostgreSQL's own): a restored backup has no business shipping native code.
fn library_tampering(config: &str, file: &str, libdir: &Path) -> Vec<String> {
    let mut signs = Vec::new();
    for line in config.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(char::is_whitespace)) else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        if !LIBRARY_SETTINGS.contains(&key.as_str()) {
            continue;
        }
        let value = value.trim().trim_matches('\'');
        let outside = value
            .split([',', ':'])
            .map(|entry| entry.trim().trim_matches('"'))
            .filter(|entry| entry.contains('/'))
            .any(|entry| !entry.starts_with("$libdir") && !Path::new(entry).starts_with(libdir));
        if outside {
            signs.push(format!(
                "its {file} sets {key} = '{value}': it asks PostgreSQL to load a library from outside {} (ignored)",
                libdir.display()
            ));
        }
    }
    signs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_from_outside_the_installation_are_signs_of_tampering() {
        let libdir = Path::new("/usr/lib/postgresql/15/lib");
        let config = "shared_preload_libraries = 'pg_stat_statements'\n\
                      # shared_preload_libraries = '/tmp/commented.so'\n\
                      session_preload_libraries='$libdir/auto_explain'\n\
                      local_preload_libraries = '/usr/lib/postgresql/15/lib/plugins/x'\n";
        assert!(library_tampering(config, "postgresql.conf", libdir).is_empty());
        let hostile = "shared_preload_libraries = 'pg_stat_statements, /var/lib/postgresql/data/evil.so'\n\
                       dynamic_library_path = '/srv/lib:$libdir'\n";
        let signs = library_tampering(hostile, "postgresql.auto.conf", libdir);
        assert_eq!(signs.len(), 2, "{signs:?}");
        assert!(signs[0].contains("evil.so") && signs[0].contains("postgresql.auto.conf"));
    }

    #[test]
    fn restored_configuration_is_read_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "shared_preload_libraries = '/x.so'").unwrap();
        let link = dir.path().join("postgresql.conf");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert_eq!(read_config(&link), "");
        assert!(read_config(&secret).contains("/x.so"));
    }
}
