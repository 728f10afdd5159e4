//! Building and running one command inside a jail: the `bwrap` command line, the cleared
//! environment, the uid switch, and a watcher on the jail's process tree.
//!
//! The command line holds paths and options only: values such as `PGPASSWORD` travel in the
//! environment of `bwrap`, which hands it to the jailed program unchanged, so no secret is ever
//! visible in `ps`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::process::{Child, ChildStdin};

use super::watch::{self, Watcher};
use super::{BWRAP, Jail, JailError, Shells, tripwire};

/// Variables every jailed program gets.
const BASE_ENVIRONMENT: [(&str, &str); 4] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("LC_ALL", "C"),
    ("LANG", "C"),
    ("TZ", "UTC"),
];
/// Top-level directories that may be links into `/usr` (merged /usr) or directories of their own.
const SYSTEM_DIRS: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Files of the host's `/etc` a jail may see: the dynamic loader's cache and the alternatives
/// links some tools are called through. Nothing secret.
const PUBLIC_ETC: [&str; 4] = [
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
];
/// What a jail that keeps the network needs of `/etc` to resolve names and check certificates.
const NETWORK_ETC: [&str; 5] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
];
/// Longest output of a jailed command kept in memory (the rest is dropped).
const MAX_OUTPUT: u64 = 64 * 1024 * 1024;

/// A command to run in a jail.
#[derive(Debug)]
pub struct JailCommand {
    jail: Jail,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    current_dir: Option<PathBuf>,
    stdin: Option<std::fs::File>,
    piped_stdin: bool,
    /// Where stdout and stderr go instead of pipes (a long-running server's log).
    log: Option<std::fs::File>,
}

/// What a finished jailed command did.
#[derive(Debug)]
pub struct JailOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl JailOutput {
    /// Whether the program exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl JailCommand {
    pub(super) fn new(jail: Jail, program: PathBuf) -> Self {
        Self {
            jail,
            program,
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            stdin: None,
            piped_stdin: false,
            log: None,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the jailed program (the only way secrets go in).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets environment variables.
    pub fn envs(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(vars);
        self
    }

    /// Sets the working directory inside the jail (default: `/tmp`).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Gives the program a file opened by the agent as its standard input (the file's path need
    /// not be visible in the jail).
    pub fn stdin_file(mut self, file: std::fs::File) -> Self {
        self.stdin = Some(file);
        self
    }

    /// Gives the program a pipe the agent writes into ([`JailedProcess::take_stdin`]).
    pub fn stdin_piped(mut self) -> Self {
        self.piped_stdin = true;
        self
    }

    /// Sends the program's output (stdout and stderr) to `file` instead of pipes.
    pub fn log_to(mut self, file: std::fs::File) -> Self {
        self.log = Some(file);
        self
    }

    /// The program's name, for messages.
    fn program_name(&self) -> String {
        self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        )
    }

    /// The `bwrap` command: isolation options, the file system view, then the program.
    fn build(&mut self) -> tokio::process::Command {
        let jail = &self.jail;
        let mut command = tokio::process::Command::new(BWRAP);
        command.args([
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "lifeboat-sandbox",
        ]);
        if jail.network {
            for path in NETWORK_ETC {
                command.args(["--ro-bind-try", path, path]);
            }
        } else {
            command.arg("--unshare-net");
        }
        command.args(["--ro-bind", "/usr", "/usr"]);
        for name in SYSTEM_DIRS {
            let host = Path::new("/").join(name);
            match std::fs::symlink_metadata(&host) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(&host) {
                        command.arg("--symlink").arg(target).arg(&host);
                    }
                }
                Ok(meta) if meta.is_dir() => {
                    command.arg("--ro-bind").arg(&host).arg(&host);
                }
                _ => {}
            }
        }
        for path in PUBLIC_ETC {
            command.args(["--ro-bind-try", path, path]);
        }
        command
            .arg("--ro-bind")
            .arg(jail.context.etc_dir.join("passwd"))
            .arg("/etc/passwd")
            .arg("--ro-bind")
            .arg(jail.context.etc_dir.join("group"))
            .arg("/etc/group");
        command.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        for (path, _) in &jail.readable {
            command.arg("--ro-bind").arg(path).arg(path);
        }
        for path in &jail.writable {
            command.arg("--bind").arg(path).arg(path);
        }
        if jail.shells == Shells::Tripwire {
            for shell in tripwire::shell_paths() {
                command.arg("--ro-bind").arg(jail.context.tripwire()).arg(shell);
            }
        }
        let cwd = self.current_dir.clone().unwrap_or_else(|| PathBuf::from("/tmp"));
        command
            .arg("--chdir")
            .arg(cwd)
            .arg("--")
            .arg(&self.program)
            .args(&self.args);

        command
            .env_clear()
            .envs(BASE_ENVIRONMENT)
            .envs(self.env.iter().cloned());
        command
            .uid(jail.context.user.uid())
            .gid(jail.context.user.gid())
            .kill_on_drop(true);
        match self.log.take() {
            Some(file) => {
                let stderr = file.try_clone().map_or_else(|_| Stdio::null(), Stdio::from);
                command.stdout(Stdio::from(file)).stderr(stderr);
            }
            None => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        match self.stdin.take() {
            Some(file) => command.stdin(Stdio::from(file)),
            None if self.piped_stdin => command.stdin(Stdio::piped()),
            None => command.stdin(Stdio::null()),
        };
        command
    }

    /// Starts the command; the returned process is watched until it is waited for or dropped.
    pub fn spawn(mut self) -> Result<JailedProcess, JailError> {
        let program = self.program_name();
        let mut command = self.build();
        let child = command.spawn().map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                JailError::NoBubblewrap
            } else {
                JailError::Io {
                    action: "start the jail for",
                    path: self.program.clone(),
                    source: err,
                }
            }
        })?;
        let root = child.id().unwrap_or_default();
        let allowed = self.jail.allowed.clone();
        let watcher = Watcher::start(root, allowed.clone(), self.jail.strays.clone());
        Ok(JailedProcess {
            child,
            root,
            program,
            watcher: Some(watcher),
            allowed,
            jail: self.jail,
        })
    }

    /// Runs the command to completion within `timeout`; on timeout the whole jail is killed.
    pub async fn output(self, timeout: Duration) -> Result<JailOutput, JailError> {
        self.spawn()?.wait_with_output(timeout).await
    }
}

/// A running jailed command.
#[derive(Debug)]
pub struct JailedProcess {
    child: Child,
    /// The `bwrap` process's pid: the root of the jail's process tree.
    root: u32,
    program: String,
    watcher: Option<Watcher>,
    allowed: Vec<&'static str>,
    jail: Jail,
}

impl JailedProcess {
    /// Takes the pipe to the program's standard input (see [`JailCommand::stdin_piped`]).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Takes the program's standard output (to feed it to another jail).
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Takes the program's standard error (to follow it while it runs).
    pub fn take_stderr(&mut self) -> Option<tokio::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// The pid of the jail's `bwrap` process, while it runs.
    pub fn root_pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The pid (outside the jail) of the program itself, once it runs.
    pub fn program_pid(&self) -> Option<u32> {
        watch::main_process(self.root)
    }

    /// Whether the jail is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the program to finish within `timeout`, collecting its output; on timeout the
    /// whole jail is killed and [`JailError::Timeout`] returned.
    pub async fn wait_with_output(mut self, timeout: Duration) -> Result<JailOutput, JailError> {
        let stdout = self.child.stdout.take();
        let stderr = self.child.stderr.take();
        let read_all = async {
            let (out, err) = tokio::join!(read_capped(stdout), read_capped(stderr));
            let status = self.child.wait().await;
            (out, err, status)
        };
        let (stdout, stderr, status) = match tokio::time::timeout(timeout, read_all).await {
            Ok(done) => done,
            Err(_) => {
                self.kill().await;
                return Err(JailError::Timeout {
                    program: self.program.clone(),
                    timeout,
                });
            }
        };
        let status = status.map_err(JailError::io("wait for", Path::new(&self.program)))?;
        self.finish_watching();
        let output = JailOutput { status, stdout, stderr };
        check_setup(&output, &self.jail)?;
        Ok(output)
    }

    /// Sends `signal` to the program itself (not to bubblewrap), if it runs.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.program_pid().and_then(|pid| i32::try_from(pid).ok()) {
            let _gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// Waits up to `grace` for the jail to end by itself; returns whether it did.
    pub async fn wait_for_exit(&mut self, grace: Duration) -> bool {
        tokio::time::timeout(grace, self.child.wait()).await.is_ok()
    }

    /// Kills the whole jail (bubblewrap, and with it its PID namespace) and reaps it.
    pub async fn kill(&mut self) {
        let _gone = self.child.kill().await;
        self.finish_watching();
    }

    /// Kills the whole jail without waiting (for `Drop` paths).
    pub fn start_kill(&mut self) {
        let _gone = self.child.start_kill();
    }

    fn finish_watching(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.finish(self.root, &self.allowed, &self.jail.strays);
        }
    }
}

/// Reads a pipe to its end, keeping at most [`MAX_OUTPUT`] bytes.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> String {
    let Some(pipe) = pipe else {
        return String::new();
    };
    let mut bytes = Vec::new();
    let mut limited = pipe.take(MAX_OUTPUT);
    let _partial = limited.read_to_end(&mut bytes).await;
    // Drain what is over the cap so the program is not blocked on a full pipe.
    let mut rest = limited.into_inner();
    let _drained = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Turns bubblewrap's own failures (it exits 1 and says `bwrap: …`) into jail errors: a bind
/// source the sandbox user cannot reach is [`JailError::Unreadable`].
fn check_setup(output: &JailOutput, jail: &Jail) -> Result<(), JailError> {
    if output.status.success() {
        return Ok(());
    }
    let Some(line) = output.stderr.lines().find(|line| line.starts_with("bwrap: ")) else {
        return Ok(());
    };
    if line.contains("Permission denied") || line.contains("Can't find source path") {
        for (path, grant) in jail.readable_with_grants() {
            if line.contains(&*path.to_string_lossy()) {
                return Err(jail.context.user.unreadable(&path, &grant));
            }
        }
    }
    Err(JailError::Setup(line.trim_start_matches("bwrap: ").to_owned()))
}
