//! PostgreSQL sandboxes: a private, throw-away cluster per run that dumps are restored into.
//!
//! [`SandboxRoot::create_postgres`] runs `initdb` into `<sandbox>/data` (scram-sha-256 for every
//! connection, superuser `lifeboat_sandbox` with a random 32-character password handed over in a
//! 0600 file that is deleted right after) and `pg_ctl start` on a free port of 127.0.0.1 plus a Unix
//! socket in the sandbox directory, with durability turned off (the cluster is thrown away). When
//! the agent runs as root the server runs as the dedicated `lifeboat-sandbox` user, because `initdb` and
//! `pg_ctl` refuse root.
//!
//! The server is stopped (`pg_ctl stop -m fast`, then `-m immediate`, then SIGKILL) by
//! [`PostgresSandbox::cleanup`], or by `Drop` when cleanup was not reached.

use std::fmt::{self, Write as _};
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use lifeboat_shared::ids::RunId;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{Connection as _, PgConnection};

use super::pg_tools::{ServerUser, StopMode, check, configure, read_from, tail};
use super::process;
use super::{CleanupOutcome, DATA_DIR, Sandbox, SandboxError, SandboxKind, SandboxRoot};

mod restored;

/// Where Debian and Ubuntu install PostgreSQL server binaries, one directory per major.
const POSTGRES_LIB_DIR: &str = "/usr/lib/postgresql";
/// The superuser every sandbox cluster is created with.
pub const SUPERUSER: &str = "lifeboat_sandbox";
/// Length of the random superuser password (alphanumeric: no quoting needed anywhere).
const PASSWORD_LEN: usize = 32;
/// Start attempts, each on a fresh port: another process may take the port between our probe
/// and the postmaster's bind.
const START_ATTEMPTS: u32 = 5;
/// How long `pg_ctl start` waits for the server to come up.
const START_TIMEOUT_SECS: u32 = 60;
/// How long each `pg_ctl stop` waits for the server to go down.
const STOP_TIMEOUT_SECS: u32 = 30;
/// How long we try to connect after `pg_ctl start` reported the server up.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Interval between connection attempts while waiting for the server.
const READY_POLL: Duration = Duration::from_millis(100);
/// Linux limit for a Unix socket path (`sun_path` is 108 bytes with the terminating NUL).
const SOCKET_PATH_MAX: usize = 107;
/// The longest socket file name the server can create in the sandbox directory.
const LONGEST_SOCKET_NAME: &str = ".s.PGSQL.65535";
/// Locales tried for `initdb`, best first (C.UTF-8 is missing from some older systems).
const LOCALES: [&str; 2] = ["C.UTF-8", "C"];
/// File holding a kept sandbox's password, for whoever inspects it.
pub const PASSWORD_FILE: &str = "password";

/// Chooses the PostgreSQL major to restore a dump with.
///
/// pg_restore reads dumps from older servers but not from newer ones, so this is the lowest
/// installed major at least `server_major` (the dump's server version), or the highest installed
/// when the dump's version is unknown. A dump newer than every installed major is
/// [`SandboxError::NoCompatibleMajor`]: a finding about the agent, not a crash.
pub fn pick_major(server_major: Option<u32>, installed: &[u32]) -> Result<u32, SandboxError> {
    match server_major {
        Some(needed) => installed
            .iter()
            .copied()
            .filter(|major| *major >= needed)
            .min()
            .ok_or_else(|| {
                if installed.is_empty() {
                    SandboxError::NoPostgresInstalled
                } else {
                    let mut installed = installed.to_vec();
                    installed.sort_unstable();
                    SandboxError::NoCompatibleMajor { needed, installed }
                }
            }),
        None => installed.iter().copied().max().ok_or(SandboxError::NoPostgresInstalled),
    }
}

/// Formats majors for messages: `15, 16`, or `none`.
pub(super) fn list_majors(majors: &[u32]) -> String {
    if majors.is_empty() {
        return "none".to_owned();
    }
    majors.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

impl SandboxRoot {
    /// Checks that `tools` of PostgreSQL `major` are installed and that the server user can
    /// reach the sandbox root, then creates the sandbox directory and marker for `run_id`.
    fn prepare_postgres(
        &self,
        run_id: RunId,
        major: u32,
        tools: &[&str],
    ) -> Result<(PathBuf, Option<ServerUser>, Sandbox), SandboxError> {
        let bin_dir = Path::new(POSTGRES_LIB_DIR).join(major.to_string()).join("bin");
        if !tools.iter().all(|tool| bin_dir.join(tool).is_file()) {
            return Err(SandboxError::MajorNotInstalled {
                major,
                installed: crate::capabilities::postgres_majors(),
            });
        }
        let run_as = ServerUser::if_root()?;
        check_usable_path(&self.dir.join(format!("{run_id}-{}", SandboxKind::Postgres)))?;
        if let Some(user) = &run_as {
            user.check_reaches(&self.dir)?;
        }
        let sandbox = self.create_sandbox(run_id, SandboxKind::Postgres)?;
        Ok((bin_dir, run_as, sandbox))
    }

    /// Creates a sandbox for `run_id` running a fresh PostgreSQL `major` cluster; returns once it
    /// accepts connections.
    ///
    /// Fails with [`SandboxError::MajorNotInstalled`] when `/usr/lib/postgresql/<major>/bin`
    /// lacks the server binaries (see [`pick_major`]). If this future is dropped midway, whatever
    /// was created is stopped and removed.
    pub async fn create_postgres(&self, run_id: RunId, major: u32) -> Result<PostgresSandbox, SandboxError> {
        let (bin_dir, run_as, sandbox) = self.prepare_postgres(run_id, major, &["initdb", "pg_ctl", "postgres"])?;
        let data_dir = sandbox.dir().join(DATA_DIR);
        let mut postgres = PostgresSandbox {
            sandbox,
            major,
            bin_dir,
            data_dir,
            run_as,
            password: random_password(),
            port: 0,
            may_be_running: false,
        };
        if let Some(user) = &postgres.run_as {
            user.chown(postgres.sandbox.dir())?;
        }
        postgres.init().await?;
        postgres.start().await?;
        postgres.wait_until_ready().await?;
        tracing::debug!(
            dir = %postgres.sandbox.dir().display(),
            port = postgres.port,
            major,
            "postgresql sandbox started"
        );
        Ok(postgres)
    }
}

/// A running, private PostgreSQL cluster for one run: restores target it through this handle.
///
/// Listens on 127.0.0.1:[`port`](Self::port) and on a Unix socket in
/// [`socket_dir`](Self::socket_dir); every login needs the random [`password`](Self::password).
/// Stopped and removed by [`cleanup`](Self::cleanup), or on drop if cleanup was not reached.
pub struct PostgresSandbox {
    /// The directory guard. Fields drop after `Drop::drop`, so the server is stopped before the
    /// directory is removed.
    sandbox: Sandbox,
    major: u32,
    bin_dir: PathBuf,
    data_dir: PathBuf,
    /// The user `initdb`/`pg_ctl` run as, when the agent runs as root.
    run_as: Option<ServerUser>,
    password: String,
    port: u16,
    /// Whether `initdb` or the server may have run and not been stopped since: `Drop` then looks
    /// for processes of this sandbox to stop (a cancelled `initdb` may still be dying, a
    /// cancelled `pg_ctl start` may still bring a server up).
    may_be_running: bool,
}

impl fmt::Debug for PostgresSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSandbox")
            .field("dir", &self.sandbox.dir())
            .field("major", &self.major)
            .field("port", &self.port)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl PostgresSandbox {
    /// Returns the sandbox itself (directory, run, kind).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Returns the PostgreSQL major the cluster runs.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// Returns the TCP port the server listens on, on 127.0.0.1 only.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        self.sandbox.dir()
    }

    /// Returns the cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Returns the directory of this major's binaries, for `pg_restore`, `pg_amcheck`, `psql`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Returns the superuser's name.
    pub fn user(&self) -> &'static str {
        SUPERUSER
    }

    /// Returns the superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Returns a URL that logs into `database` as the superuser over TCP.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{}",
            self.password,
            self.port,
            percent_encode(database)
        )
    }

    /// Returns `PGHOST`, `PGPORT`, `PGUSER` and `PGPASSWORD` for child tools (`pg_restore`, …).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", "127.0.0.1".to_owned()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", SUPERUSER.to_owned()),
            ("PGPASSWORD", self.password.clone()),
        ]
    }

    /// Returns connection options for `database`, independent of the agent's `PG*` environment.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .password(&self.password)
            .database(database)
            .ssl_mode(PgSslMode::Disable)
            .application_name("lifeboat-agent")
    }

    /// Opens a connection to `database` as the superuser.
    pub async fn connect(&self, database: &str) -> Result<PgConnection, SandboxError> {
        PgConnection::connect_with(&self.connect_options(database))
            .await
            .map_err(|source| SandboxError::Sql {
                action: "connect",
                source,
            })
    }

    /// Creates an empty database `name` (any name: it is quoted).
    pub async fn create_database(&self, name: &str) -> Result<(), SandboxError> {
        let mut connection = self.connect("postgres").await?;
        // The name is quoted as an identifier, so it cannot inject SQL.
        let statement = format!("CREATE DATABASE {}", quote_identifier(name));
        let created = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut connection)
            .await
            .map_err(|source| SandboxError::Sql {
                action: "create database",
                source,
            });
        // Closing politely is best effort: the database exists (or not) either way.
        let _closed = connection.close().await;
        created.map(|_| ())
    }

    /// Stops the server and removes the sandbox; when `failed` and `keep_on_failure` is set,
    /// stops the server but keeps the directory (see the module docs on inspecting it), and the
    /// janitor removes it after the TTL.
    ///
    /// Runs on a blocking thread; once started it completes even if the returned future is
    /// dropped. On error the handle's `Drop` still stops and removes what it can.
    pub async fn cleanup(
        mut self,
        failed: bool,
        keep_on_failure: Option<Duration>,
    ) -> Result<CleanupOutcome, SandboxError> {
        tokio::task::spawn_blocking(move || {
            self.stop_server(&[StopMode::Fast, StopMode::Immediate])?;
            if failed && keep_on_failure.is_some() {
                self.write_password_file()?;
            }
            self.sandbox.release(failed, keep_on_failure)
        })
        .await
        .map_err(SandboxError::Worker)?
    }

    /// `initdb` with the password in a private file that is removed right after.
    async fn init(&mut self) -> Result<(), SandboxError> {
        self.may_be_running = true;
        let password_file = self.sandbox.dir().join("pwfile");
        self.write_private_file(&password_file, self.password.as_bytes())?;
        let mut result = Ok(());
        for locale in LOCALES {
            result = self.initdb(&password_file, locale).await;
            let locale_missing =
                matches!(&result, Err(SandboxError::Command { output, .. }) if output.contains("locale"));
            if !locale_missing {
                break;
            }
            // initdb removes what it created on failure; make sure before retrying.
            let _gone = fs::remove_dir_all(&self.data_dir);
        }
        let removed = fs::remove_file(&password_file).map_err(SandboxError::io("remove", &password_file));
        result?;
        removed?;
        self.write_inspection_settings()
    }

    async fn initdb(&self, password_file: &Path, locale: &str) -> Result<(), SandboxError> {
        let mut command = self.command("initdb");
        command
            .arg("--pgdata")
            .arg(&self.data_dir)
            .arg("--username")
            .arg(SUPERUSER)
            .arg(format!("--pwfile={}", password_file.display()))
            .args([
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg(format!("--locale={locale}"));
        let output = self.output("initdb", &mut command).await?;
        check("initdb", &output, "")
    }

    /// Makes a server started by hand (to inspect a kept sandbox) listen only on the Unix socket
    /// in the sandbox directory; the options `start` passes override this while a run uses it.
    fn write_inspection_settings(&self) -> Result<(), SandboxError> {
        let config = self.data_dir.join("postgresql.conf");
        let socket_dir = self.socket_dir().display().to_string().replace('\'', "''");
        let settings = format!(
            "\n# Lifeboat sandbox: started by hand, listen only on the socket in the sandbox directory.\n\
             listen_addresses = ''\nunix_socket_directories = '{socket_dir}'\n"
        );
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&config)
            .map_err(SandboxError::io("open", &config))?;
        file.write_all(settings.as_bytes())
            .map_err(SandboxError::io("write", &config))
    }

    /// `pg_ctl start` on a free port; a new port when another process took it meanwhile.
    async fn start(&mut self) -> Result<(), SandboxError> {
        let log = self.sandbox.dir().join("postgres.log");
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let log_offset = fs::metadata(&log).map(|meta| meta.len()).unwrap_or(0);
            self.port = port;
            let mut command = self.command("pg_ctl");
            command
                .arg("start")
                .arg("--pgdata")
                .arg(&self.data_dir)
                .arg("--log")
                .arg(&log)
                .arg("--wait")
                .arg(format!("--timeout={START_TIMEOUT_SECS}"))
                .arg("--options")
                .arg(self.server_options(port));
            let output = self.output("pg_ctl", &mut command).await?;
            if output.status.success() {
                return Ok(());
            }
            let new_log = read_from(&log, log_offset);
            let port_taken = new_log.contains("could not bind") || new_log.contains("Address already in use");
            if port_taken && attempt < START_ATTEMPTS {
                tracing::debug!(port, attempt, "sandbox port was taken; retrying on another");
                attempt += 1;
                continue;
            }
            return check("pg_ctl start", &output, &new_log);
        }
    }

    /// Server settings for a run: loopback and the sandbox's own socket only, no durability
    /// (the cluster is thrown away), modest resources. The rest overrides what a restored base
    /// backup's own configuration may say about paths and programs outside the sandbox (another
    /// `hba_file`, archiving, production's pid file, log directory or certificates).
    fn server_options(&self, port: u16) -> String {
        // The sandbox path was checked to need no quoting (`check_usable_path`).
        format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB \
             -c checkpoint_timeout=30min -c shared_buffers=128MB -c max_connections=40 \
             -c log_min_messages=warning -c hba_file={data}/pg_hba.conf -c ident_file={data}/pg_ident.conf \
             -c archive_mode=off -c ssl=off -c logging_collector=off -c external_pid_file=''",
            self.socket_dir().display(),
            data = self.data_dir.display()
        )
    }

    async fn wait_until_ready(&self) -> Result<(), SandboxError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match PgConnection::connect_with(&self.connect_options("postgres")).await {
                Ok(connection) => {
                    let _closed = connection.close().await;
                    return Ok(());
                }
                Err(err) if Instant::now() >= deadline => return Err(SandboxError::NotReady(err)),
                Err(_) => tokio::time::sleep(READY_POLL).await,
            }
        }
    }

    /// Stops the server, trying `modes` in order and then SIGKILL; blocking (also used by `Drop`).
    fn stop_server(&mut self, modes: &[StopMode]) -> Result<(), SandboxError> {
        if !self.may_be_running {
            return Ok(());
        }
        for mode in modes {
            if !self.server_may_run() {
                break;
            }
            let mut command = std::process::Command::new(self.bin_dir.join("pg_ctl"));
            configure(&mut command, self.sandbox.dir(), self.run_as);
            command
                .arg("stop")
                .arg("--pgdata")
                .arg(&self.data_dir)
                .arg(format!("--mode={}", mode.as_str()))
                .arg("--wait")
                .arg(format!("--timeout={STOP_TIMEOUT_SECS}"));
            match command.output() {
                Ok(output) if !output.status.success() => tracing::debug!(
                    dir = %self.sandbox.dir().display(),
                    mode = mode.as_str(),
                    output = %tail(&String::from_utf8_lossy(&output.stderr)),
                    "pg_ctl stop failed"
                ),
                Ok(_) => {}
                Err(err) => tracing::warn!(dir = %self.sandbox.dir().display(), error = %err, "cannot run pg_ctl stop"),
            }
        }
        // Whatever still serves this data directory gets SIGKILL.
        process::stop_servers_of(&self.data_dir, None, Duration::ZERO).map_err(|errno| SandboxError::Stop {
            dir: self.sandbox.dir().to_owned(),
            errno,
        })?;
        self.may_be_running = false;
        Ok(())
    }

    /// Whether a server may still run: its pid file exists, or a process serves the data dir.
    fn server_may_run(&self) -> bool {
        self.data_dir.join("postmaster.pid").exists() || !process::processes_mentioning(&self.data_dir).is_empty()
    }

    /// Leaves the password next to a kept sandbox, readable only by the directory's owner.
    fn write_password_file(&self) -> Result<(), SandboxError> {
        let path = self.sandbox.dir().join(PASSWORD_FILE);
        self.write_private_file(&path, format!("{}\n", self.password).as_bytes())
    }

    /// Writes a new 0600 file owned by the server's user.
    fn write_private_file(&self, path: &Path, contents: &[u8]) -> Result<(), SandboxError> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(SandboxError::io("create", path))?;
        file.write_all(contents).map_err(SandboxError::io("write", path))?;
        if let Some(user) = &self.run_as {
            user.chown(path)?;
        }
        Ok(())
    }

    /// A command for one of this major's binaries, run as the server's user.
    fn command(&self, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.bin_dir.join(program));
        configure(command.as_std_mut(), self.sandbox.dir(), self.run_as);
        command.kill_on_drop(true);
        command
    }

    /// Runs `command` (one of this major's `tool`s) to completion, capturing its output.
    async fn output(&self, tool: &str, command: &mut tokio::process::Command) -> Result<Output, SandboxError> {
        command
            .output()
            .await
            .map_err(SandboxError::io("run", &self.bin_dir.join(tool)))
    }
}

impl Drop for PostgresSandbox {
    fn drop(&mut self) {
        if !self.may_be_running {
            return;
        }
        tracing::debug!(dir = %self.sandbox.dir().display(), "stopping sandbox server on drop");
        if let Err(err) = self.stop_server(&[StopMode::Immediate]) {
            tracing::warn!(
                dir = %self.sandbox.dir().display(),
                error = %err,
                "cannot stop sandbox server; the janitor will at the next agent start"
            );
        }
        // The `sandbox` field's Drop removes the directory after this.
    }
}

/// Refuses sandbox paths that `pg_ctl` (which passes options through `/bin/sh`) or the
/// comma-separated `unix_socket_directories` would misread, and paths too long for a socket.
fn check_usable_path(dir: &Path) -> Result<(), SandboxError> {
    let plain = dir
        .as_os_str()
        .as_bytes()
        .iter()
        .all(|byte| byte.is_ascii_alphanumeric() || b"/._-+@:".contains(byte));
    if !plain {
        return Err(SandboxError::UnsafePath(dir.to_owned()));
    }
    if dir.join(LONGEST_SOCKET_NAME).as_os_str().len() > SOCKET_PATH_MAX {
        return Err(SandboxError::SocketPathTooLong(dir.to_owned()));
    }
    Ok(())
}

fn random_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// Returns a TCP port of 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, SandboxError> {
    let probe = Path::new("127.0.0.1:0");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(SandboxError::io("bind", probe))?;
    let port = listener
        .local_addr()
        .map_err(SandboxError::io("inspect", probe))?
        .port();
    Ok(port)
}

/// Quotes an SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encodes a URL path segment (everything but RFC 3986 unreserved characters).
fn percent_encode(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _infallible = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use sqlx::Row as _;

    use super::*;
    use crate::sandbox::janitor;

    /// The highest installed major: tests use the real binaries of this machine.
    fn installed_major() -> u32 {
        crate::capabilities::postgres_majors().last().copied().expect(
            "these tests need PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)",
        )
    }

    /// A work directory the `postgres` user can traverse when the tests run as root.
    fn work_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("lb-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .tempdir()
            .unwrap()
    }

    fn assert_server_gone(data_dir: &Path) {
        assert!(
            process::processes_mentioning(data_dir).is_empty(),
            "a process still serves {}",
            data_dir.display()
        );
    }

    #[test]
    fn pick_major_prefers_the_lowest_compatible_and_names_both_versions_otherwise() {
        assert_eq!(pick_major(Some(13), &[12, 14, 16]).unwrap(), 14);
        assert_eq!(pick_major(Some(14), &[12, 14, 16]).unwrap(), 14);
        assert_eq!(pick_major(None, &[12, 16, 14]).unwrap(), 16);

        let err = pick_major(Some(17), &[16, 15]).unwrap_err();
        assert!(matches!(&err, SandboxError::NoCompatibleMajor { needed: 17, installed } if installed == &[15, 16]));
        let message = err.to_string();
        assert!(
            message.contains("postgresql 17") && message.contains("15, 16"),
            "{message}"
        );

        assert!(matches!(
            pick_major(Some(15), &[]),
            Err(SandboxError::NoPostgresInstalled)
        ));
        assert!(matches!(pick_major(None, &[]), Err(SandboxError::NoPostgresInstalled)));
    }

    #[test]
    fn paths_that_would_need_quoting_or_are_too_long_are_refused() {
        assert!(check_usable_path(Path::new("/var/lib/lifeboat-agent/work/sandboxes/x-postgres")).is_ok());
        for bad in ["/tmp/a b", "/tmp/a'b", "/tmp/a\"b", "/tmp/$x", "/tmp/a,b", "/tmp/a;b"] {
            assert!(
                matches!(check_usable_path(Path::new(bad)), Err(SandboxError::UnsafePath(_))),
                "{bad}"
            );
        }
        let long = format!("/{}", "x".repeat(100));
        assert!(matches!(
            check_usable_path(Path::new(&long)),
            Err(SandboxError::SocketPathTooLong(_))
        ));
    }

    #[test]
    fn urls_encode_the_database_and_identifiers_are_quoted() {
        assert_eq!(percent_encode("restored"), "restored");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
        let password = random_password();
        assert_eq!(password.len(), PASSWORD_LEN);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[tokio::test]
    async fn a_major_that_is_not_installed_is_refused_without_leaving_anything() {
        let work_dir = work_dir();
        let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
        let err = root.create_postgres(RunId::new(), 99).await.unwrap_err();
        assert!(
            matches!(err, SandboxError::MajorNotInstalled { major: 99, .. }),
            "{err}"
        );
        assert!(fs::read_dir(root.dir()).unwrap().next().is_none());
    }

    #[tokio::test]
    async fn a_sandbox_accepts_only_its_password_on_loopback_and_cleanup_removes_it() {
        let work_dir = work_dir();
        let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
        let sandbox = root.create_postgres(RunId::new(), installed_major()).await.unwrap();
        let dir = sandbox.sandbox().dir().to_owned();
        let data_dir = sandbox.data_dir().to_owned();
        assert!(!dir.join("pwfile").exists(), "the password file outlived initdb");
        assert_eq!(sandbox.socket_dir(), dir);
        assert!(dir.join(format!(".s.PGSQL.{}", sandbox.port())).exists());
        assert!(sandbox.bin_dir().join("pg_restore").is_file());
        assert!(!format!("{sandbox:?}").contains(sandbox.password()));

        // The right password works over TCP, through the URL too.
        let mut connection = PgConnection::connect(&sandbox.url("postgres")).await.unwrap();
        let listen: String = sqlx::query("SHOW listen_addresses")
            .fetch_one(&mut connection)
            .await
            .unwrap()
            .get(0);
        assert_eq!(listen, "127.0.0.1");
        let encoding: String = sqlx::query("SHOW server_encoding")
            .fetch_one(&mut connection)
            .await
            .unwrap()
            .get(0);
        assert_eq!(encoding, "UTF8");
        let rules_without_password: i64 =
            sqlx::query("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method <> 'scram-sha-256'")
                .fetch_one(&mut connection)
                .await
                .unwrap()
                .get(0);
        assert_eq!(rules_without_password, 0, "every pg_hba rule must require a password");
        connection.close().await.unwrap();

        // A wrong password does not.
        let wrong = sandbox.connect_options("postgres").password("not-the-password");
        assert!(PgConnection::connect_with(&wrong).await.is_err());

        sandbox.create_database("restored db").await.unwrap();
        let mut restored = sandbox.connect("restored db").await.unwrap();
        let one: i32 = sqlx::query("SELECT 1").fetch_one(&mut restored).await.unwrap().get(0);
        assert_eq!(one, 1);
        restored.close().await.unwrap();
        let env = sandbox.env();
        assert!(env.contains(&("PGPASSWORD", sandbox.password().to_owned())));
        assert!(env.contains(&("PGPORT", sandbox.port().to_string())));

        assert_eq!(sandbox.cleanup(false, None).await.unwrap(), CleanupOutcome::Removed);
        assert!(!dir.exists());
        assert_server_gone(&data_dir);
    }

    #[tokio::test]
    async fn cancelling_the_creation_leaves_nothing_behind() {
        let work_dir = work_dir();
        let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
        // Cancel during initdb, then (probably) during pg_ctl start; wherever it lands, nothing
        // may survive the dropped future.
        for delay in [Duration::from_millis(150), Duration::from_millis(900)] {
            let run_id = RunId::new();
            let data_dir = root.dir().join(format!("{run_id}-postgres")).join(DATA_DIR);
            let created = tokio::time::timeout(delay, root.create_postgres(run_id, installed_major())).await;
            drop(created);
            assert!(
                fs::read_dir(root.dir()).unwrap().next().is_none(),
                "left behind after {delay:?}"
            );
            assert_server_gone(&data_dir);
        }
    }

    #[tokio::test]
    async fn dropping_a_sandbox_stops_and_removes_it() {
        let work_dir = work_dir();
        let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
        let sandbox = root.create_postgres(RunId::new(), installed_major()).await.unwrap();
        let dir = sandbox.sandbox().dir().to_owned();
        let data_dir = sandbox.data_dir().to_owned();
        let postmaster = process::postmaster_of(&data_dir).expect("a running postmaster");
        drop(sandbox);
        assert!(!dir.exists());
        assert!(!postmaster.is_running());
        assert_server_gone(&data_dir);
    }

    #[tokio::test]
    async fn a_kept_sandbox_is_stopped_and_the_janitor_removes_it_after_its_ttl() {
        let work_dir = work_dir();
        let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
        let sandbox = root.create_postgres(RunId::new(), installed_major()).await.unwrap();
        let password = sandbox.password().to_owned();
        let dir = sandbox.sandbox().dir().to_owned();
        let data_dir = sandbox.data_dir().to_owned();

        let outcome = sandbox.cleanup(true, Some(Duration::from_secs(3600))).await.unwrap();
        let CleanupOutcome::Kept {
            dir: kept_dir,
            keep_until,
        } = outcome
        else {
            panic!("expected the sandbox to be kept, got {outcome:?}");
        };
        assert_eq!(kept_dir, dir);
        assert!(data_dir.join("PG_VERSION").exists());
        assert_eq!(fs::read_to_string(dir.join(PASSWORD_FILE)).unwrap().trim(), password);
        assert_eq!(
            crate::sandbox::SandboxMarker::read(&dir).unwrap().keep_until,
            Some(keep_until)
        );
        assert!(!data_dir.join("postmaster.pid").exists());
        assert_server_gone(&data_dir);

        // Before the TTL, even with its owner alive, the janitor keeps it; after, it removes it.
        let report = janitor::sweep(&root, keep_until - chrono::TimeDelta::minutes(1));
        assert!(report.removed.is_empty() && report.failed.is_empty(), "{report:?}");
        assert!(dir.exists());
        let report = janitor::sweep(&root, keep_until + chrono::TimeDelta::minutes(1));
        assert_eq!(report.removed, vec![dir.clone()], "{report:?}");
        assert!(!dir.exists());
    }
}
