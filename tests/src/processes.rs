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
        "{} is not built: run the tests with `cargo nextest run --workspace` (or cargo build --workspace first)",
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
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let mut command = Command::new(binary(binary_name));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .env("RUST_LOG", "info")
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
    let output = Command::new(binary(binary_name))
        .args(args)
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
