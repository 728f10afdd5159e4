//! Throw-away PostgreSQL clusters for tests: `initdb` into a temporary directory, `pg_ctl start`
//! on a free port of 127.0.0.1, `pg_ctl stop -m immediate` and removal on drop.
//!
//! Every cluster has its own directory, port and Unix socket directory, so tests in parallel
//! processes (nextest) do not meet. Nothing is shared with a system PostgreSQL service.
//!
//! The binaries come from `/usr/lib/postgresql/<highest major>/bin`, or from the directory named
//! by `LIFEBOAT_PG_BIN`. When they are missing, [`PgCluster::start`] fails and names the package
//! to install: a test that needs PostgreSQL never silently skips.
//!
//! `initdb` refuses to run as root, so when the tests run as root the cluster's directory is
//! given to the `postgres` system user and `initdb`/`pg_ctl` run as that user.
//!
//! A test process killed outright (SIGKILL) cannot run `Drop`, so its cluster keeps running;
//! find it with `ps -C postgres -o pid,args` (its data directory is under the temp dir, named
//! `lifeboat-pg-*`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use anyhow::{Context, bail};
use nix::unistd::{Gid, Uid, User};
use sqlx::Connection;
use tempfile::TempDir;

/// The superuser every cluster is created with.
const SUPERUSER: &str = "lifeboat";
/// Debian package that provides the binaries, named when they are missing.
const PACKAGE_HINT: &str = "postgresql-15";
/// Start attempts, each on a fresh port, before giving up (another process may take the port
/// between our probe and the postmaster's bind).
const START_ATTEMPTS: u32 = 5;
/// How long `pg_ctl start` waits for the server to accept connections.
const START_TIMEOUT_SECS: u32 = 60;

/// A running, throw-away PostgreSQL cluster. Stopped and deleted when dropped.
pub struct PgCluster {
    bin_dir: PathBuf,
    /// Owns the directory holding the data directory, the socket and the server log.
    root: TempDir,
    data_dir: PathBuf,
    port: u16,
    password: String,
    /// The user `initdb`/`pg_ctl` run as, when the tests run as root.
    run_as: Option<(Uid, Gid)>,
}

impl PgCluster {
    /// Creates and starts a cluster; returns once it accepts connections.
    ///
    /// Runs `initdb` and `pg_ctl` as child processes without blocking the runtime. The cluster has
    /// a superuser `lifeboat` with a random password (TCP connections use scram-sha-256, the
    /// Unix socket trusts local users), `fsync=off` and small memory settings.
    pub async fn start() -> anyhow::Result<PgCluster> {
        let bin_dir = find_bin_dir()?;
        let run_as = postgres_user_if_root()?;
        let root = tempfile::Builder::new()
            .prefix("lifeboat-pg-")
            .tempdir()
            .context("create a directory for the cluster")?;
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(root.path(), Some(uid), Some(gid))
                .with_context(|| format!("give {} to the postgres user", root.path().display()))?;
        }
        let mut cluster = PgCluster {
            bin_dir,
            data_dir: root.path().join("data"),
            root,
            port: 0,
            password: uuid::Uuid::new_v4().simple().to_string(),
            run_as,
        };
        cluster.init().await?;
        cluster.start_on_free_port().await?;
        Ok(cluster)
    }

    /// Returns a URL for `database` that logs in as the superuser over TCP.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Returns the TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        self.root.path()
    }

    /// Returns the cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Returns the directory of the PostgreSQL binaries this cluster runs (for `pg_dump` & co).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Returns the superuser's name.
    pub fn user(&self) -> &str {
        SUPERUSER
    }

    /// Returns the superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Creates an empty database. `name` must be a plain identifier (`[a-z0-9_]`, not starting
    /// with a digit).
    /// The server log (`log_statement = 'all'` makes it the record of every statement run).
    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("postgres.log")
    }

    /// Runs SQL (one or more statements) in `database` with `psql` as the superuser.
    pub async fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let output = tokio::process::Command::new(self.bin_dir.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(database),
                "-c",
                sql,
            ])
            .output()
            .await
            .context("run psql")?;
        if !output.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Runs an SQL file in `database` with `psql` as the superuser.
    pub async fn psql_file(&self, database: &str, file: &Path) -> anyhow::Result<()> {
        let output = tokio::process::Command::new(self.bin_dir.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &self.url(database), "-f"])
            .arg(file)
            .output()
            .await
            .context("run psql")?;
        if !output.status.success() {
            bail!(
                "psql -f {} failed: {}",
                file.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    pub async fn create_database(&self, name: &str) -> anyhow::Result<()> {
        let plain = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if name.is_empty() || name.len() > 63 || !plain || name.starts_with(|c: char| c.is_ascii_digit()) {
            bail!("database name {name:?} is not a plain identifier");
        }
        let mut connection = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .context("connect to the cluster")?;
        // The name was checked above to be a plain identifier, so it cannot inject SQL.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut connection)
            .await
            .with_context(|| format!("create database {name}"))?;
        connection.close().await.context("disconnect from the cluster")?;
        Ok(())
    }

    async fn init(&self) -> anyhow::Result<()> {
        let password_file = self.root.path().join("password");
        std::fs::write(&password_file, &self.password).context("write the password file")?;
        self.give_to_postgres(&password_file)?;

        let output = self
            .command("initdb")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .arg("--username")
            .arg(SUPERUSER)
            .arg("--pwfile")
            .arg(&password_file)
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .await
            .context("run initdb")?;
        check("initdb", &output)?;
        std::fs::remove_file(&password_file).context("remove the password file")?;

        let mut settings = String::from("\n# Added by lifeboat-tests: a throw-away cluster.\n");
        let socket_dir = self.socket_dir().display().to_string().replace('\'', "''");
        for line in [
            "listen_addresses = '127.0.0.1'".to_owned(),
            format!("unix_socket_directories = '{socket_dir}'"),
            "fsync = off".to_owned(),
            "synchronous_commit = off".to_owned(),
            "full_page_writes = off".to_owned(),
            "shared_buffers = 16MB".to_owned(),
            "max_connections = 50".to_owned(),
            "logging_collector = off".to_owned(),
        ] {
            let _infallible = writeln!(settings, "{line}");
        }
        let config_path = self.data_dir.join("postgresql.conf");
        let mut config = std::fs::read_to_string(&config_path).context("read postgresql.conf")?;
        config.push_str(&settings);
        std::fs::write(&config_path, config).context("write postgresql.conf")?;
        Ok(())
    }

    async fn start_on_free_port(&mut self) -> anyhow::Result<()> {
        let log_path = self.root.path().join("postgres.log");
        for attempt in 1..=START_ATTEMPTS {
            self.port = free_port()?;
            let output = self
                .command("pg_ctl")
                .arg("start")
                .arg("--pgdata")
                .arg(&self.data_dir)
                .arg("--log")
                .arg(&log_path)
                .arg("--wait")
                .arg(format!("--timeout={START_TIMEOUT_SECS}"))
                .arg(format!("--options=-p {}", self.port))
                .output()
                .await
                .context("run pg_ctl start")?;
            if output.status.success() {
                return Ok(());
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let port_taken = log.contains("could not bind") || log.contains("Address already in use");
            if !(port_taken && attempt < START_ATTEMPTS) {
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                return check("pg_ctl start", &output).with_context(|| format!("server log:\n{}", tail.join("\n")));
            }
        }
        bail!("could not start PostgreSQL on a free port in {START_ATTEMPTS} attempts")
    }

    /// A command for one of the cluster's binaries, run as the postgres user when we are root.
    fn command(&self, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.bin_dir.join(program));
        command
            .current_dir(self.root.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    fn give_to_postgres(&self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("give {} to the postgres user", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port == 0 {
            return; // never started
        }
        let mut command = std::process::Command::new(self.bin_dir.join("pg_ctl"));
        command
            .arg("stop")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .args(["--mode=immediate", "--wait", "--timeout=30"])
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::process::CommandExt::uid(&mut command, uid.as_raw());
            std::os::unix::process::CommandExt::gid(&mut command, gid.as_raw());
        }
        if let Err(err) = command.status() {
            eprintln!(
                "cannot stop the test PostgreSQL cluster in {}: {err}",
                self.data_dir.display()
            );
        }
        // The TempDir removes the directory when it drops, after this.
    }
}

/// Finds the directory of the PostgreSQL binaries: `LIFEBOAT_PG_BIN`, else the highest major
/// version under `/usr/lib/postgresql`.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LIFEBOAT_PG_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
            return Ok(dir);
        }
        bail!("LIFEBOAT_PG_BIN={} has no initdb and pg_ctl", dir.display());
    }
    let base = Path::new("/usr/lib/postgresql");
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((major, bin))
        })
        .collect();
    majors.sort();
    match majors.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under {}: install the Debian package {PACKAGE_HINT} \
             (apt-get install {PACKAGE_HINT}) or set LIFEBOAT_PG_BIN",
            base.display()
        ),
    }
}

/// Returns the postgres system user's ids when we run as root (initdb refuses root).
fn postgres_user_if_root() -> anyhow::Result<Option<(Uid, Gid)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .context("look up the postgres user")?
        .with_context(|| {
            format!("running as root, and there is no postgres user to run initdb as: install {PACKAGE_HINT}")
        })?;
    Ok(Some((user.uid, user.gid)))
}

/// Returns a TCP port of 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr().context("read the free port")?.port())
}

fn check(what: &str, output: &Output) -> anyhow::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
