//! A throw-away PostgreSQL cluster for the tests of this module, to make real dumps and base
//! backups from: `initdb` and `pg_ctl` of the highest major under `/usr/lib/postgresql`, listening
//! on a Unix socket in its own temporary directory only (no TCP port to collide on), trusting
//! local connections (replication included, as `initdb --auth-local=trust` sets up).
//!
//! `initdb` refuses root, so as root the cluster runs as the `postgres` user. A test that cannot
//! start a cluster fails and says what to install: it never skips.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The superuser every test cluster has.
pub const SUPERUSER: &str = "lifeboat";
/// Any port will do: the socket lives in the cluster's own directory.
const PORT: &str = "5432";

/// A running cluster, stopped and deleted on drop.
pub struct TestCluster {
    root: TempDir,
    bin_dir: PathBuf,
    major: u32,
    run_as: Option<(u32, u32)>,
    started: bool,
}

impl TestCluster {
    /// Creates and starts a cluster; panics with the reason if it cannot.
    pub fn start() -> TestCluster {
        let (major, bin_dir) = highest_postgres()
            .expect("PostgreSQL server binaries not found under /usr/lib/postgresql: apt-get install postgresql");
        let run_as = nix::unistd::geteuid().is_root().then(|| {
            let user = nix::unistd::User::from_name("postgres")
                .expect("look up the postgres user")
                .expect("running as root and there is no postgres user to run initdb as");
            (user.uid.as_raw(), user.gid.as_raw())
        });
        let root = tempfile::Builder::new()
            .prefix("lifeboat-backups-pg-")
            .tempdir()
            .unwrap();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(root.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut cluster = TestCluster {
            root,
            bin_dir,
            major,
            run_as,
            started: false,
        };
        let data_dir = cluster.data_dir();
        let output = cluster
            .server_command("initdb")
            .arg("--pgdata")
            .arg(&data_dir)
            .args(["--username", SUPERUSER, "--auth-local=trust", "--auth-host=reject"])
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"])
            .output()
            .unwrap();
        check("initdb", &output);
        let socket_dir = cluster.socket_dir().display().to_string().replace('\'', "''");
        let settings = format!(
            "\nlisten_addresses = ''\nunix_socket_directories = '{socket_dir}'\nfsync = off\n\
             shared_buffers = 16MB\nmax_connections = 20\nmax_wal_senders = 4\n"
        );
        let config = data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&settings);
        std::fs::write(&config, text).unwrap();
        let log = cluster.root.path().join("server.log");
        let output = cluster
            .server_command("pg_ctl")
            .arg("start")
            .arg("--pgdata")
            .arg(&data_dir)
            .arg("--log")
            .arg(&log)
            .args(["--wait", "--timeout=60", &format!("--options=-p {PORT}")])
            .output()
            .unwrap();
        if !output.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}\n{log}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        cluster.started = true;
        cluster
    }

    /// Returns the cluster's PostgreSQL major version.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// Returns a client program (`psql`, `pg_dump`, `pg_basebackup`) set up to reach the cluster;
    /// it runs as the current user, so its output files are ours.
    pub fn client(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command
            .env("PGHOST", self.socket_dir())
            .env("PGPORT", PORT)
            .env("PGUSER", SUPERUSER)
            .env("PGDATABASE", "postgres")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .stdin(Stdio::null());
        command
    }

    /// Runs SQL with psql, stopping at the first error.
    pub fn psql(&self, sql: &str) {
        let output = self
            .client("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        check("psql", &output);
    }

    /// Runs a client program with `args` and panics if it fails.
    pub fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let output = self.client(program).args(args).output().unwrap();
        check(program, &output);
    }

    fn socket_dir(&self) -> &Path {
        self.root.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command
            .current_dir(self.root.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        let data_dir = self.data_dir();
        let _ = self
            .server_command("pg_ctl")
            .arg("stop")
            .arg("--pgdata")
            .arg(&data_dir)
            .args(["--mode=immediate", "--wait", "--timeout=30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn highest_postgres() -> Option<(u32, PathBuf)> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors.pop()
}

fn check(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
