//! Running a sandbox's PostgreSQL server in its jail: the settings it starts with, waiting until
//! it accepts connections, and stopping it.
//!
//! The server is the jail's own program (`postgres -D …` in the foreground, no `pg_ctl`), so the
//! jail lives exactly as long as the server: SIGINT is PostgreSQL's fast shutdown, and killing the
//! jail takes every backend and anything they started with it. Its output goes to
//! `<sandbox>/postgres.log`, outside the jail.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sqlx::{Connection as _, PgConnection};

use super::{PORT, PostgresSandbox};
use crate::jail::{JailedProcess, Shells};
use crate::procfs::ProcessIdentity;
use crate::sandbox::SandboxError;
use crate::sandbox::pg_tools::{read_from, tail};

/// The server's log, in the sandbox directory (the agent's, not the jail's).
pub const LOG_FILE: &str = "postgres.log";
/// How long the server may take to accept connections (crash recovery of a base backup included).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Interval between connection attempts while waiting for the server.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long a fast shutdown may take before the jail is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `Drop` waits for a killed jail to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The processes a sandbox server runs: the postmaster and its backends, all `postgres`.
pub(super) const SERVER_PROCESSES: &[&str] = &["postgres"];

impl PostgresSandbox {
    /// Starts the server in its jail and waits until it accepts connections.
    pub(super) async fn start(&mut self) -> Result<(), SandboxError> {
        let log_path = self.sandbox.dir().join(LOG_FILE);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(SandboxError::io("open", &log_path))?;
        let log_offset = log.metadata().map(|meta| meta.len()).unwrap_or(0);
        let process = self
            .sandbox
            .jail()
            .writable(self.socket_dir.path())
            .shells(Shells::Tripwire)
            .allow(SERVER_PROCESSES)
            .command(self.bin_dir.join("postgres"))
            .arg("-D")
            .arg(&self.data_dir)
            .args(self.server_options())
            .log_to(log)
            .spawn()?;
        self.server = Some(process);
        self.wait_until_ready(&log_path, log_offset).await
    }

    /// Server settings for a run: the private socket only, no durability (the cluster is thrown
    /// away), modest resources; and overrides for whatever a restored base backup's configuration
    /// says about paths, programs and libraries (another `hba_file`, archiving, preloaded
    /// libraries, production's pid file, log directory or certificates).
    pub(super) fn server_options(&self) -> Vec<String> {
        let data = self.data_dir.display();
        let settings = [
            "listen_addresses=".to_owned(),
            format!("port={PORT}"),
            format!("unix_socket_directories={}", self.socket_dir.path().display()),
            "unix_socket_permissions=0777".to_owned(),
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "max_wal_size=4GB".to_owned(),
            "checkpoint_timeout=30min".to_owned(),
            "shared_buffers=128MB".to_owned(),
            "max_connections=40".to_owned(),
            "log_min_messages=warning".to_owned(),
            format!("hba_file={data}/pg_hba.conf"),
            format!("ident_file={data}/pg_ident.conf"),
            "archive_mode=off".to_owned(),
            "archive_command=".to_owned(),
            "restore_command=".to_owned(),
            "ssl=off".to_owned(),
            "logging_collector=off".to_owned(),
            "external_pid_file=".to_owned(),
            "shared_preload_libraries=".to_owned(),
            "session_preload_libraries=".to_owned(),
            "local_preload_libraries=".to_owned(),
            "dynamic_library_path=$libdir".to_owned(),
            "jit=off".to_owned(),
        ];
        settings
            .into_iter()
            .flat_map(|setting| ["-c".to_owned(), setting])
            .collect()
    }

    /// Waits until the server accepts a login, or fails with the end of its log when it stops
    /// first or does not come up in time.
    async fn wait_until_ready(&mut self, log_path: &std::path::Path, log_offset: u64) -> Result<(), SandboxError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match PgConnection::connect_with(&self.connect_options("postgres")).await {
                Ok(connection) => {
                    let _closed = connection.close().await;
                    return Ok(());
                }
                Err(err) => {
                    let exited = self.server.as_mut().is_none_or(|server| !server.is_running());
                    if exited {
                        let log = read_from(log_path, log_offset);
                        return Err(SandboxError::ServerExited(tail(&log)));
                    }
                    if Instant::now() >= deadline {
                        return Err(SandboxError::NotReady(err));
                    }
                }
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Stops the server: fast shutdown, then the whole jail killed.
    pub(super) async fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        server.signal(Signal::SIGINT);
        if !server.wait_for_exit(STOP_GRACE).await {
            tracing::debug!(dir = %self.sandbox.dir().display(), "sandbox server did not stop in time; killing its jail");
        }
        server.kill().await;
    }
}

/// Waits (blocking, for `Drop`) until a killed jail's `bwrap` process is gone.
pub(super) fn wait_until_gone(server: &JailedProcess) {
    let Some(identity) = server.root_pid().and_then(|pid| ProcessIdentity::of(pid).ok()) else {
        return;
    };
    let deadline = Instant::now() + KILL_WAIT;
    while identity.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
