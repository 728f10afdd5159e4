//! PostgreSQL sandboxes started on a restored base backup instead of a fresh `initdb` cluster.
//!
//! [`SandboxRoot::create_postgres_for_base_backup`] makes the sandbox directory and an empty data
//! directory and starts nothing; the restore fills the data directory (after verifying the
//! backup); [`PostgresSandbox::start_restored`] then makes it a sandbox like any other:
//!
//! - production's `pg_hba.conf` is replaced by one that admits only the sandbox superuser, with
//!   its password, on the sandbox's socket and 127.0.0.1;
//! - the sandbox superuser and its random password are created in single-user mode (which runs
//!   the crash recovery from `backup_label` and needs no login, so production's roles and
//!   passwords never matter), the password going over stdin, never on a command line;
//! - `standby.signal`/`recovery.signal` are removed, so the copy never follows production;
//! - the server starts with the sandbox settings (loopback, private socket, no durability, and
//!   overrides for production's paths: see `server_options`).
//!
//! Stop, cleanup, keep-on-failure, `Drop` and the janitor's marker are those of every
//! [`PostgresSandbox`].

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::process::Stdio;

use lifeboat_shared::ids::RunId;
use tokio::io::AsyncWriteExt as _;

use super::super::pg_tools::check;
use super::{PostgresSandbox, SUPERUSER, random_password};
use crate::sandbox::{DATA_DIR, SandboxError, SandboxRoot};

/// Files of a base backup that would make the copy act as production's replica or archive
/// recovery target, or that belong to a server that is not running here.
const REMOVED_FILES: [&str; 4] = ["postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal"];

/// The sandbox's `pg_hba.conf`: only the sandbox superuser, only with its password.
const SANDBOX_HBA: &str = "# Lifeboat sandbox: only the sandbox superuser, with its password.\n\
                           local all lifeboat_sandbox scram-sha-256\n\
                           host all lifeboat_sandbox 127.0.0.1/32 scram-sha-256\n";

impl SandboxRoot {
    /// Creates a stopped PostgreSQL `major` sandbox for `run_id` with an empty data directory that
    /// a base backup is restored into; [`PostgresSandbox::start_restored`] starts it.
    ///
    /// Until started, the handle's port is 0 and its URLs lead nowhere.
    pub fn create_postgres_for_base_backup(&self, run_id: RunId, major: u32) -> Result<PostgresSandbox, SandboxError> {
        let (bin_dir, run_as, sandbox) =
            self.prepare_postgres(run_id, major, &["postgres", "pg_ctl", "pg_verifybackup"])?;
        let data_dir = sandbox.dir().join(DATA_DIR);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&data_dir)
            .map_err(SandboxError::io("create", &data_dir))?;
        if let Some(user) = &run_as {
            user.chown(sandbox.dir())?;
        }
        Ok(PostgresSandbox {
            sandbox,
            major,
            bin_dir,
            data_dir,
            run_as,
            password: random_password(),
            port: 0,
            may_be_running: false,
        })
    }
}

impl PostgresSandbox {
    /// Starts the server on the base backup restored into [`data_dir`](Self::data_dir): replaces
    /// its access rules, creates the sandbox superuser (running the backup's crash recovery) and
    /// starts it with the sandbox settings; returns once it accepts connections.
    ///
    /// A server that does not come up (damaged WAL, missing files) is a
    /// [`SandboxError::Command`] carrying the end of the server's output.
    pub async fn start_restored(&mut self) -> Result<(), SandboxError> {
        let version = self.data_dir.join("PG_VERSION");
        if !version.is_file() {
            return Err(SandboxError::Io {
                action: "find",
                path: version,
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        for name in REMOVED_FILES {
            let path = self.data_dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(SandboxError::io("remove", &path)(err)),
            }
        }
        let hba = self.data_dir.join("pg_hba.conf");
        fs::write(&hba, SANDBOX_HBA).map_err(SandboxError::io("write", &hba))?;
        // Debian keeps the configuration outside the data directory: the copy has none.
        for name in ["postgresql.conf", "pg_ident.conf"] {
            let path = self.data_dir.join(name);
            if !path.exists() {
                fs::write(&path, "").map_err(SandboxError::io("write", &path))?;
            }
        }
        fs::set_permissions(&self.data_dir, fs::Permissions::from_mode(0o700))
            .map_err(SandboxError::io("protect", &self.data_dir))?;
        if let Some(user) = &self.run_as {
            user.chown_tree(&self.data_dir)?;
        }
        self.may_be_running = true;
        self.create_superuser().await?;
        self.write_inspection_settings()?;
        self.start().await?;
        self.wait_until_ready().await?;
        tracing::debug!(
            dir = %self.sandbox.dir().display(),
            port = self.port,
            major = self.major,
            "postgresql sandbox started on a restored base backup"
        );
        Ok(())
    }

    /// Creates (or resets) the sandbox superuser in single-user mode: no login needed, and the
    /// backup's crash recovery runs first.
    async fn create_superuser(&self) -> Result<(), SandboxError> {
        let statement = format!(
            "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{SUPERUSER}') THEN \
             ALTER ROLE {SUPERUSER} SUPERUSER LOGIN PASSWORD '{password}'; ELSE \
             CREATE ROLE {SUPERUSER} SUPERUSER LOGIN PASSWORD '{password}'; END IF; END $$;\n",
            password = self.password
        );
        let mut command = self.command("postgres");
        command
            .arg("--single")
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "-c",
                "archive_mode=off",
                "-c",
                "fsync=off",
                "-c",
                "password_encryption=scram-sha-256",
                "-c",
                "external_pid_file=",
                "-c",
                "logging_collector=off",
                "-c",
                "log_min_messages=warning",
            ])
            .arg("postgres")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(SandboxError::io("run", &self.bin_dir.join("postgres")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(statement.as_bytes())
                .await
                .map_err(SandboxError::io("write to", &self.bin_dir.join("postgres")))?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(SandboxError::io("run", &self.bin_dir.join("postgres")))?;
        check("postgres --single", &output, "")?;
        let said = String::from_utf8_lossy(&output.stderr);
        if let Some(line) = said
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
