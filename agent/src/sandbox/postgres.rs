//! PostgreSQL sandboxes: a private, throw-away cluster per run that dumps are restored into.
//!
//! [`SandboxRoot::create_postgres`] runs `initdb` into `<sandbox>/data` (scram-sha-256 for every
//! connection, superuser `lifeboat_sandbox` with a random 32-character password handed over in a
//! 0600 file that is deleted right after) and starts the server, both in the sandbox's jail as
//! the sandbox user. The server listens on a Unix socket in a short private directory only
//! (`listen_addresses` is empty: no TCP port at all), with durability turned off (the cluster is
//! thrown away). Clients — the agent itself, `pg_restore`, `psql` — log in with the password taken
//! from their environment, never from a command line.
//!
//! The server is stopped (SIGINT, PostgreSQL's fast shutdown, then the whole jail killed) by
//! [`PostgresSandbox::cleanup`], or by `Drop` when cleanup was not reached.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use lifeboat_shared::ids::RunId;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{Connection as _, PgConnection};

use super::pg_tools::check;
use super::socket_dir::SocketDir;
use super::{CleanupOutcome, DATA_DIR, PRIVATE_DIR, Sandbox, SandboxError, SandboxKind, SandboxRoot};
use crate::jail::{Jail, JailedProcess, Shells};

mod restored;
mod server;

/// Where Debian and Ubuntu install PostgreSQL server binaries, one directory per major.
const POSTGRES_LIB_DIR: &str = "/usr/lib/postgresql";
/// The superuser every sandbox cluster is created with.
pub const SUPERUSER: &str = "lifeboat_sandbox";
/// Length of the random superuser password (alphanumeric: no quoting needed anywhere).
const PASSWORD_LEN: usize = 32;
/// The port in the socket's name (`.s.PGSQL.5432`); nothing listens on TCP.
pub const PORT: u16 = 5432;
/// Locales tried for `initdb`, best first (C.UTF-8 is missing from some older systems).
const LOCALES: [&str; 2] = ["C.UTF-8", "C"];
/// How long `initdb` may take.
const INITDB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// File holding a kept sandbox's password, for whoever inspects it.
pub const PASSWORD_FILE: &str = "password";
/// Settings every client connection to a sandbox sets: whatever a restored database or role says,
/// no library is loaded into the session on login.
const CLIENT_OPTIONS: &str = "-c session_preload_libraries= -c local_preload_libraries=";

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
    /// Checks that `tools` of PostgreSQL `major` are installed and the jail is usable, then
    /// creates the sandbox directory, its marker and its socket directory for `run_id`.
    fn prepare_postgres(&self, run_id: RunId, major: u32, tools: &[&str]) -> Result<PostgresSandbox, SandboxError> {
        let bin_dir = Path::new(POSTGRES_LIB_DIR).join(major.to_string()).join("bin");
        if !tools.iter().all(|tool| bin_dir.join(tool).is_file()) {
            return Err(SandboxError::MajorNotInstalled {
                major,
                installed: crate::capabilities::postgres_majors(),
            });
        }
        let context = self.jail_context()?;
        let socket_dir = SocketDir::create(context.user())?;
        let sandbox = self.create_sandbox(run_id, SandboxKind::Postgres, context)?;
        sandbox.give_to_jail(PRIVATE_DIR)?;
        let data_dir = sandbox.dir().join(DATA_DIR);
        Ok(PostgresSandbox {
            sandbox,
            socket_dir,
            major,
            bin_dir,
            data_dir,
            password: random_password(),
            server: None,
        })
    }

    /// Creates a sandbox for `run_id` running a fresh PostgreSQL `major` cluster; returns once it
    /// accepts connections.
    ///
    /// Fails with [`SandboxError::MajorNotInstalled`] when `/usr/lib/postgresql/<major>/bin`
    /// lacks the server binaries (see [`pick_major`]). If this future is dropped midway, whatever
    /// was created is stopped and removed.
    pub async fn create_postgres(&self, run_id: RunId, major: u32) -> Result<PostgresSandbox, SandboxError> {
        let mut postgres = self.prepare_postgres(run_id, major, &["initdb", "postgres"])?;
        postgres.init().await?;
        postgres.start().await?;
        tracing::debug!(
            dir = %postgres.sandbox.dir().display(),
            socket = %postgres.socket_dir.path().display(),
            major,
            "postgresql sandbox started"
        );
        Ok(postgres)
    }
}

/// A running, private PostgreSQL cluster for one run: restores target it through this handle.
///
/// Listens only on a Unix socket in [`socket_dir`](Self::socket_dir); every login needs the
/// random [`password`](Self::password). Stopped and removed by [`cleanup`](Self::cleanup), or on
/// drop if cleanup was not reached.
pub struct PostgresSandbox {
    /// The running server's jail. Declared first: fields drop in order, so the server is killed
    /// before its socket directory and sandbox directory are removed.
    server: Option<JailedProcess>,
    socket_dir: SocketDir,
    sandbox: Sandbox,
    major: u32,
    bin_dir: PathBuf,
    data_dir: PathBuf,
    password: String,
}

impl fmt::Debug for PostgresSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSandbox")
            .field("dir", &self.sandbox.dir())
            .field("socket_dir", &self.socket_dir.path())
            .field("major", &self.major)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl PostgresSandbox {
    /// Returns the sandbox itself (directory, run, kind, jail).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Returns the PostgreSQL major the cluster runs.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// Returns the port in the socket's name (nothing listens on TCP).
    pub fn port(&self) -> u16 {
        PORT
    }

    /// Returns the directory holding the server's Unix socket (`.s.PGSQL.5432`).
    pub fn socket_dir(&self) -> &Path {
        self.socket_dir.path()
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

    /// Returns the libpq environment that logs a client into `database` as the superuser over
    /// the socket (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGOPTIONS`): the
    /// way every tool is pointed at the sandbox, so the password is never on a command line.
    pub fn env(&self, database: &str) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), self.socket_dir().display().to_string()),
            ("PGPORT".into(), PORT.to_string()),
            ("PGUSER".into(), SUPERUSER.into()),
            ("PGPASSWORD".into(), self.password.clone()),
            ("PGDATABASE".into(), database.into()),
            ("PGOPTIONS".into(), CLIENT_OPTIONS.into()),
            ("PGCONNECT_TIMEOUT".into(), "10".into()),
            ("PGAPPNAME".into(), "lifeboat-agent".into()),
        ]
    }

    /// A jail for a client of this sandbox: its data directory and socket, nothing else.
    pub fn client_jail(&self) -> Jail {
        self.sandbox.jail().writable(self.socket_dir.path())
    }

    /// Returns connection options for `database`, independent of the agent's `PG*` environment.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .socket(self.socket_dir.path())
            .port(PORT)
            .username(SUPERUSER)
            .password(&self.password)
            .database(database)
            .ssl_mode(PgSslMode::Disable)
            .application_name("lifeboat-agent")
            .options([("session_preload_libraries", ""), ("local_preload_libraries", "")])
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
    /// Once started it completes even if the returned future is dropped. On error the handle's
    /// `Drop` still stops and removes what it can.
    pub async fn cleanup(
        mut self,
        failed: bool,
        keep_on_failure: Option<std::time::Duration>,
    ) -> Result<CleanupOutcome, SandboxError> {
        self.stop().await;
        tokio::task::spawn_blocking(move || {
            if failed && keep_on_failure.is_some() {
                self.write_password_file()?;
            }
            self.sandbox.release(failed, keep_on_failure)
        })
        .await
        .map_err(SandboxError::Worker)?
    }

    /// `initdb` in the jail, with the password in a private file that is removed right after.
    async fn init(&mut self) -> Result<(), SandboxError> {
        let private = self.sandbox.dir().join(PRIVATE_DIR);
        let password_file = private.join("pwfile");
        self.write_jail_file(&password_file, self.password.as_bytes())?;
        let mut result = Ok(());
        for locale in LOCALES {
            result = self.initdb(&password_file, locale).await;
            let locale_missing =
                matches!(&result, Err(SandboxError::Command { output, .. }) if output.contains("locale"));
            if !locale_missing {
                break;
            }
        }
        let removed = fs::remove_file(&password_file).map_err(SandboxError::io("remove", &password_file));
        result?;
        removed?;
        self.write_inspection_settings()
    }

    async fn initdb(&self, password_file: &Path, locale: &str) -> Result<(), SandboxError> {
        let private = self.sandbox.dir().join(PRIVATE_DIR);
        // initdb runs the bootstrap backend through /bin/sh: real shells, and no backup content
        // exists yet.
        let output = self
            .sandbox
            .jail()
            .writable(&private)
            .shells(Shells::Real)
            .command(self.bin_dir.join("initdb"))
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
            .arg(format!("--locale={locale}"))
            .output(INITDB_TIMEOUT)
            .await?;
        let result = check("initdb", &output, "");
        if result.is_err() {
            // initdb leaves the (emptied) data directory when it did not create it.
            let _emptied = self.empty_data_dir();
        }
        result
    }

    /// Removes whatever a failed `initdb` left in the data directory (as the agent).
    fn empty_data_dir(&self) -> std::io::Result<()> {
        for entry in fs::read_dir(&self.data_dir)? {
            let path = entry?.path();
            if fs::symlink_metadata(&path)?.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Makes a server started by hand (to inspect a kept sandbox) listen only on a Unix socket
    /// in its data directory; the options `start` passes override this while a run uses it.
    fn write_inspection_settings(&self) -> Result<(), SandboxError> {
        let config = self.data_dir.join("postgresql.conf");
        let data_dir = self.data_dir.display().to_string().replace('\'', "''");
        let settings = format!(
            "\n# Lifeboat sandbox: started by hand, listen only on a socket in the data directory.\n\
             listen_addresses = ''\nunix_socket_directories = '{data_dir}'\n"
        );
        let mut file = fs::OpenOptions::new()
            .append(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&config)
            .map_err(SandboxError::io("open", &config))?;
        file.write_all(settings.as_bytes())
            .map_err(SandboxError::io("write", &config))
    }

    /// Leaves the password next to a kept sandbox, readable only by the agent's user.
    fn write_password_file(&self) -> Result<(), SandboxError> {
        let path = self.sandbox.dir().join(PASSWORD_FILE);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(SandboxError::io("create", &path))?;
        file.write_all(format!("{}\n", self.password).as_bytes())
            .map_err(SandboxError::io("write", &path))
    }

    /// Writes a new 0600 file for the sandbox user in a directory of the jail, replacing what is
    /// there without following a link a restore may have planted.
    fn write_jail_file(&self, path: &Path, contents: &[u8]) -> Result<(), SandboxError> {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(SandboxError::io("replace", path)(err)),
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(SandboxError::io("create", path))?;
        file.write_all(contents).map_err(SandboxError::io("write", path))?;
        nix::unistd::fchown(
            &file,
            Some(nix::unistd::Uid::from_raw(self.sandbox.jail_user().uid())),
            Some(nix::unistd::Gid::from_raw(self.sandbox.jail_user().gid())),
        )
        .map_err(|errno| SandboxError::io("give to the sandbox user", path)(errno.into()))
    }
}

impl Drop for PostgresSandbox {
    fn drop(&mut self) {
        if let Some(server) = self.server.as_mut() {
            tracing::debug!(dir = %self.sandbox.dir().display(), "killing the sandbox server's jail on drop");
            server.start_kill();
            server::wait_until_gone(server);
        }
        // The remaining fields' Drop removes the socket directory, then the sandbox directory.
    }
}

fn random_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// Quotes an SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests;
