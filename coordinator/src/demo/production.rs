//! The demo's "production": a throw-away PostgreSQL cluster with the rental business in it, run
//! with the installed server binaries (as the `postgres` user when the demo runs as root, since
//! initdb refuses root), plus its backups — fresh dumps beside the data directory, and an old,
//! good dump elsewhere, dated 92 days back in its own header.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};
use tokio::process::Command;

/// The generated rental business.
pub const RENTALS_SQL: &str = include_str!("rentals.sql");

/// A running cluster; stopped (immediately) and its directory left to the caller on drop.
pub struct Production {
    bin: PathBuf,
    data: PathBuf,
    socket: PathBuf,
    pub port: u16,
    /// `(uid, gid)` the server runs as, when not the current user.
    owner: Option<(u32, u32)>,
}

/// Lifeboat's read-only role in the demo production database.
pub const READER: &str = "lifeboat_ro";
const ADMIN: &str = "demo_admin";

fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries are needed (/usr/lib/postgresql/*/bin): apt-get install postgresql")?
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors
        .pop()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: apt-get install postgresql")
}

impl Production {
    /// Creates and starts a cluster in `dir` on a free loopback port.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let owner = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")?
                .context("running as root, the demo needs the 'postgres' user (created by the postgresql package)")?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };
        let data = dir.join("data");
        let socket = dir.join("socket");
        for path in [dir, socket.as_path()] {
            std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
            if let Some((uid, gid)) = owner {
                nix::unistd::chown(path, Some(uid.into()), Some(gid.into()))?;
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let production = Self {
            bin,
            data,
            socket,
            port,
            owner,
        };
        production
            .run(
                "initdb",
                &["-A", "trust", "-U", ADMIN, "--no-sync", "-E", "UTF8", "-D"],
                Some(&production.data),
            )
            .await?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            production.socket.display()
        );
        let log = dir.join("postgres.log");
        production
            .run(
                "pg_ctl",
                &[
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    &options,
                    "-l",
                    &log.display().to_string(),
                    "start",
                    "-D",
                ],
                Some(&production.data),
            )
            .await?;
        Ok(production)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.stdin(Stdio::null()).env("PGTZ", "UTC").env("TZ", "UTC");
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    async fn run(&self, program: &str, args: &[&str], last: Option<&Path>) -> anyhow::Result<String> {
        let mut command = self.command(program);
        command.args(args);
        if let Some(last) = last {
            command.arg(last);
        }
        let output = command.output().await.with_context(|| format!("run {program}"))?;
        if !output.status.success() {
            bail!("{program} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs SQL as the cluster's admin.
    pub async fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let port = self.port.to_string();
        self.run(
            "psql",
            &[
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                ADMIN,
                "-d",
                database,
                "-c",
                sql,
            ],
            None,
        )
        .await
    }

    /// The URL Lifeboat reads production with (its read-only role).
    pub fn reader_url(&self, database: &str) -> String {
        format!("postgres://{READER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates the rental business and Lifeboat's read-only role.
    pub async fn load_rentals(&self) -> anyhow::Result<()> {
        self.psql("postgres", "CREATE DATABASE rentals").await?;
        self.psql("rentals", RENTALS_SQL).await?;
        self.psql(
            "postgres",
            &format!("CREATE ROLE {READER} LOGIN; GRANT pg_read_all_data, pg_read_all_settings TO {READER};"),
        )
        .await?;
        Ok(())
    }

    /// Writes `pg_dump -Fc` of `database` to `out` (a path the server user may not own: the dump
    /// is written by this process from pg_dump's output).
    pub async fn dump(&self, database: &str, out: &Path) -> anyhow::Result<()> {
        let port = self.port.to_string();
        let bytes = self
            .command("pg_dump")
            .args(["-Fc", "-h", "127.0.0.1", "-p", &port, "-U", ADMIN, database])
            .output()
            .await
            .context("run pg_dump")?;
        if !bytes.status.success() {
            bail!("pg_dump failed: {}", String::from_utf8_lossy(&bytes.stderr).trim());
        }
        std::fs::write(out, bytes.stdout).with_context(|| format!("write {}", out.display()))
    }

    /// Writes a plain, verbose `pg_dump` of `database` to `out` whose own header says it was
    /// started `days_ago` days ago (the demo cannot wait three months for a stale backup).
    pub async fn dump_dated(&self, database: &str, out: &Path, days_ago: i64) -> anyhow::Result<()> {
        let port = self.port.to_string();
        let output = self
            .command("pg_dump")
            .args([
                "-Fp",
                "--verbose",
                "--no-owner",
                "--no-privileges",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                ADMIN,
                database,
            ])
            .output()
            .await
            .context("run pg_dump")?;
        if !output.status.success() {
            bail!("pg_dump failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        let then = chrono::Utc::now() - chrono::Duration::days(days_ago);
        let text = String::from_utf8(output.stdout).context("pg_dump output is not UTF-8")?;
        let mut dated = String::with_capacity(text.len());
        let mut found = false;
        for line in text.split_inclusive('\n') {
            if !found && line.starts_with("-- Started on ") {
                dated.push_str(&format!("-- Started on {}\n", then.format("%Y-%m-%d %H:%M:%S UTC")));
                found = true;
            } else {
                dated.push_str(line);
            }
        }
        if !found {
            bail!("pg_dump --verbose wrote no \"Started on\" line");
        }
        std::fs::write(out, dated).with_context(|| format!("write {}", out.display()))?;
        let file = std::fs::File::options().write(true).open(out)?;
        file.set_modified(then.into())?;
        Ok(())
    }

    /// Stops the server at once.
    pub async fn stop(&self) {
        let _stopped = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-w", "stop", "-D"])
            .arg(&self.data)
            .output()
            .await;
    }
}

impl Drop for Production {
    fn drop(&mut self) {
        // Best effort when the demo fails before `stop`: pg_ctl is synchronous enough.
        let mut command = std::process::Command::new(self.bin.join("pg_ctl"));
        command.args(["-m", "immediate", "-w", "stop", "-D"]).arg(&self.data);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            std::os::unix::process::CommandExt::uid(&mut command, uid);
            std::os::unix::process::CommandExt::gid(&mut command, gid);
        }
        let _stopped = command.status();
    }
}
