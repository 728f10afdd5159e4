//! The built binaries as child processes: found next to the test executable's `deps/`
//! directory, killed (SIGKILL) when dropped so a failing test leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Path of a workspace binary (`lifeboat-coordinator`, `lifeboat-agent`) built for this test run.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` before the tests (scripts/test does)",
        path.display()
    );
    path
}

/// A child process that is killed when dropped.
pub struct ChildProcess {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl ChildProcess {
    /// Starts `binary args…`, logging stdout and stderr to `log`.
    pub fn spawn(binary_name: &str, args: &[&str], log: &Path, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::spawn_with_open_files(binary_name, args, log, envs, None)
    }

    /// [`Self::spawn`], with the process's open-files limit (soft and hard) set to
    /// `open_files` when given (through util-linux's `prlimit`, which then execs the binary).
    pub fn spawn_with_open_files(
        binary_name: &str,
        args: &[&str],
        log: &Path,
        envs: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> anyhow::Result<Self> {
        Self::spawn_program_with_open_files(&binary(binary_name), args, log, envs, open_files)
    }

    /// Starts any `program args…` (a script, an interpreter), logging to `log`.
    pub fn spawn_program(program: &Path, args: &[&str], log: &Path, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::spawn_program_with_open_files(program, args, log, envs, None)
    }

    fn spawn_program_with_open_files(
        program: &Path,
        args: &[&str],
        log: &Path,
        envs: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> anyhow::Result<Self> {
        let binary_name = program.file_name().map_or_else(
            || program.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let mut command = match open_files {
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={limit}:{limit}")).arg("--").arg(program);
                command
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .env(
                "RUST_LOG",
                std::env::var("LIFEBOAT_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .kill_on_drop(true);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command.spawn().with_context(|| format!("start {binary_name}"))?;
        Ok(Self {
            name: binary_name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> Option<Pid> {
        self.child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw)
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = signal::kill(pid, signal);
        }
    }

    /// SIGKILL and reap.
    pub async fn kill(mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then wait (up to `timeout`) for the exit status.
    pub async fn terminate(mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        self.signal(Signal::SIGTERM);
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs a binary to completion; returns (exit code, stdout, stderr).
pub async fn run(binary_name: &str, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    run_with_env(binary_name, args, &[]).await
}

/// [`run`] with extra environment variables.
pub async fn run_with_env(
    binary_name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(i32, String, String)> {
    let output = Command::new(binary(binary_name))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("run {binary_name}"))?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests that restart a
/// server on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

/// A coordinator running as a child process, with its config and data directory.
pub struct CoordinatorProcess {
    pub port: u16,
    pub url: String,
    /// The port of `http_listen` (status page, API, metrics).
    pub http_port: u16,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub process: Option<ChildProcess>,
    /// The open-files limit to start the process with (`None`: inherited).
    pub open_files: Option<u64>,
}

impl CoordinatorProcess {
    /// Writes a config for `127.0.0.1:port` in `dir` and starts `serve`; waits until it listens.
    pub async fn start(dir: &Path, database_url: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(dir, database_url, "").await
    }

    /// [`Self::start`] with more config sections (channels, routes, schedule, alerts).
    pub async fn start_with(dir: &Path, database_url: Option<&str>, extra: &str) -> anyhow::Result<Self> {
        let mut coordinator = Self::configure(dir, database_url, extra)?;
        coordinator.restart().await?;
        Ok(coordinator)
    }

    /// Writes the config for `127.0.0.1:port` (and an `http_listen` port) in `dir` without
    /// starting anything.
    pub fn configure(dir: &Path, database_url: Option<&str>, extra: &str) -> anyhow::Result<Self> {
        let port = free_port();
        let http_port = free_port();
        let data_dir = dir.join("coordinator");
        std::fs::create_dir_all(&data_dir)?;
        let config_path = dir.join("coordinator.toml");
        let listen: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let mut text = crate::cluster::coordinator_config_text(listen, &data_dir, database_url, "1h").replace(
            "http_listen = \"127.0.0.1:0\"",
            &format!("http_listen = \"127.0.0.1:{http_port}\""),
        );
        text.push_str(extra);
        std::fs::write(&config_path, text)?;
        Ok(Self {
            port,
            url: format!("https://127.0.0.1:{port}"),
            http_port,
            config_path,
            data_dir,
            process: None,
            open_files: None,
        })
    }

    /// Starts (again) the serve process; waits until the port accepts connections.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let log = self.data_dir.join("coordinator.log");
        let config = self.config_path.display().to_string();
        let process = ChildProcess::spawn_with_open_files(
            "lifeboat-coordinator",
            &["serve", "--config", &config],
            &log,
            &[],
            self.open_files,
        )?;
        self.process = Some(process);
        let port = self.port;
        let up = crate::eventually(std::time::Duration::from_secs(30), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        if !up {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow::bail!("coordinator did not start listening on {port}:\n{log}");
        }
        Ok(())
    }

    /// SIGKILLs the serve process.
    pub async fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill().await;
        }
    }

    /// SIGTERMs the serve process and returns its exit status.
    pub async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        match self.process.take() {
            Some(process) => process.terminate(std::time::Duration::from_secs(30)).await,
            None => None,
        }
    }

    /// Runs an admin command with this coordinator's config; returns parsed JSON stdout.
    pub async fn admin_json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let config = self.config_path.display().to_string();
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--config", &config, "--output", "json"]);
        let (code, stdout, stderr) = run("lifeboat-coordinator", &full).await?;
        anyhow::ensure!(code == 0, "lifeboat-coordinator {args:?} exited {code}: {stderr}");
        Ok(serde_json::from_str(&stdout)?)
    }

    /// Creates a join token with the CLI; returns (token, ca_pin).
    pub async fn token(&self, environment: &str, uses: u32) -> anyhow::Result<(String, String)> {
        let uses = uses.to_string();
        let created = self
            .admin_json(&["token", "create", "--environment", environment, "--uses", &uses])
            .await?;
        let field = |name: &str| created[name].as_str().map(str::to_owned).context("token create output");
        Ok((field("token")?, field("ca_pin")?))
    }

    /// Enrolls an in-process agent (a fresh key) into `environment` with a token from the CLI.
    pub async fn enroll_in_memory(
        &self,
        environment: &str,
        name: &str,
    ) -> anyhow::Result<lifeboat_agent::identity::Identity> {
        let (token, pin) = self.token(environment, 1).await?;
        let request = lifeboat_agent::enroll::EnrollRequest {
            coordinator: self.url.clone(),
            token,
            ca_pin: lifeboat_shared::tls::CaPin::parse(&pin)?,
            name: name.to_owned(),
            environment: None,
        };
        Ok(lifeboat_agent::enroll::enroll_in_memory(&request).await?)
    }

    /// The SQLite store URL of this coordinator.
    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.data_dir.join("lifeboat.db").display())
    }
}

/// An enrolled `lifeboat-agent` with its config, ready to `run` as a process.
pub struct AgentProcess {
    pub config_path: PathBuf,
    pub work_dir: PathBuf,
    pub identity_dir: PathBuf,
    pub process: Option<ChildProcess>,
    log: PathBuf,
}

impl AgentProcess {
    /// Enrolls with the CLI (`lifeboat-agent enroll`) and writes agent.toml in `dir`.
    pub async fn enroll(dir: &Path, coordinator: &CoordinatorProcess, environment: &str) -> anyhow::Result<Self> {
        let (token, pin) = coordinator.token(environment, 1).await?;
        let identity_dir = dir.join("identity");
        let work_dir = dir.join("work");
        let identity = identity_dir.display().to_string();
        let (code, _stdout, stderr) = run(
            "lifeboat-agent",
            &[
                "enroll",
                "--coordinator",
                &coordinator.url,
                "--token",
                &token,
                "--ca-pin",
                &pin,
                "--identity-dir",
                &identity,
            ],
        )
        .await?;
        anyhow::ensure!(code == 0, "enroll failed ({code}): {stderr}");
        let config_path = dir.join("agent.toml");
        std::fs::write(
            &config_path,
            format!(
                "[agent]\ncoordinator = \"{}\"\nidentity_dir = \"{}\"\nwork_dir = \"{}\"\nname = \"crash-test-agent\"\n",
                coordinator.url,
                identity_dir.display(),
                work_dir.display()
            ),
        )?;
        Ok(Self {
            config_path,
            work_dir,
            identity_dir,
            process: None,
            log: dir.join("agent.log"),
        })
    }

    /// Starts `lifeboat-agent run`.
    pub fn start(&mut self) -> anyhow::Result<()> {
        self.start_with_env(&[])
    }

    /// Starts `lifeboat-agent run` with extra environment variables.
    pub fn start_with_env(&mut self, envs: &[(&str, &str)]) -> anyhow::Result<()> {
        let config = self.config_path.display().to_string();
        self.process = Some(ChildProcess::spawn(
            "lifeboat-agent",
            &["run", "--config", &config],
            &self.log,
            envs,
        )?);
        Ok(())
    }

    /// Appends sections (assets, backups, tests, `[scan]`) to the agent's config.
    pub fn append_config(&self, sections: &str) -> anyhow::Result<()> {
        let mut text = std::fs::read_to_string(&self.config_path)?;
        text.push('\n');
        text.push_str(sections);
        std::fs::write(&self.config_path, text)?;
        Ok(())
    }

    pub async fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill().await;
        }
    }

    /// Number of results in the spool directory (counted on disk; the agent owns the spool).
    pub fn spooled(&self) -> usize {
        std::fs::read_dir(self.work_dir.join("spool"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|entry| entry.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
