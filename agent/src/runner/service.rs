//! The `service` + `http` check: start the operator's application against the sandbox
//! (`SANDBOX_DATABASE_URL`), wait until it answers, assert the HTTP status (and body), stop it.
//!
//! The application reads restored data, so it runs in the sandbox's jail, whose network is a
//! loopback of its own: the agent cannot reach it there, so the HTTP probe runs in the jail too.
//! The jail's program is this very executable's hidden `service-probe` command ([`probe`]): it
//! starts the service, polls the URL, prints its verdict as one JSON line and exits, and the
//! jail, with the service in it, dies. `{port}` in `service` and `http` is replaced by a port of
//! that private loopback.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{CheckKind, CheckSpec};
use crate::runner::checks::{Target, sandbox_env};

/// The port the service gets inside its jail (nothing else listens there).
const SERVICE_PORT: u16 = 8080;
/// Longest wait for the service to answer.
const MAX_WAIT: Duration = Duration::from_secs(120);

/// What the probe asks and answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProbeVerdict {
    pub passed: bool,
    pub message: String,
}

/// The probe's instructions, given to it as arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// The URL to GET.
    #[arg(long)]
    pub url: String,
    /// The status it must answer.
    #[arg(long, default_value_t = 200)]
    pub expect_status: u16,
    /// Text the body must contain.
    #[arg(long)]
    pub expect_body: Option<String>,
    /// Longest wait for an answer, in seconds.
    #[arg(long, default_value_t = 120)]
    pub wait_seconds: u64,
    /// The service to start (`sh -c`), if any.
    #[arg(long)]
    pub service: Option<String>,
}

/// Runs a service check; returns (passed, message, drift).
pub async fn check(check: &CheckSpec, target: &Target, timeout: Duration) -> (bool, String, Vec<String>) {
    let CheckKind::Service {
        service,
        http,
        expect_status,
        expect_body,
    } = &check.kind
    else {
        return (false, "not a service check".into(), vec![]);
    };
    let port = SERVICE_PORT.to_string();
    let url = http.replace("{port}", &port);
    let jail = crate::runner::checks::operator_jail(check, target);
    let Some(agent) = jail.agent_executable() else {
        return (
            false,
            "a service check runs its probe in the sandbox's jail, from the lifeboat-agent executable, which the sandbox user cannot read: install the agent where every user can run it (e.g. /usr/bin)".into(),
            vec![],
        );
    };
    let wait = timeout.min(MAX_WAIT);
    let mut command = jail
        .readable_unchecked(&agent)
        .command(&agent)
        .arg("service-probe")
        .arg("--url")
        .arg(&url)
        .arg("--expect-status")
        .arg(expect_status.to_string())
        .arg("--wait-seconds")
        .arg(wait.as_secs().max(1).to_string())
        .envs(sandbox_env(target))
        .env("PORT", port.clone());
    if let Some(body) = expect_body {
        command = command.arg("--expect-body").arg(body);
    }
    command = command.arg("--service").arg(service.replace("{port}", &port));
    match command.output(wait + Duration::from_secs(10)).await {
        Ok(output) => match output
            .stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<ProbeVerdict>(line).ok())
        {
            Some(verdict) => (verdict.passed, verdict.message, vec![]),
            None => (
                false,
                format!(
                    "the service probe gave no verdict ({}): {}",
                    output.status,
                    output.stderr.lines().last().unwrap_or_default()
                ),
                vec![],
            ),
        },
        Err(err) => (false, format!("the service check could not run: {err}"), vec![]),
    }
}

/// The probe, inside the jail: starts the service, waits for the URL to answer, prints the
/// verdict as one JSON line on stdout, stops the service.
pub async fn probe(args: &ProbeArgs) -> ProbeVerdict {
    let mut child = None;
    if let Some(service) = &args.service {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(service)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        match command.spawn() {
            Ok(spawned) => child = Some(spawned),
            Err(err) => {
                return ProbeVerdict {
                    passed: false,
                    message: format!("cannot start {service:?}: {err}"),
                };
            }
        }
    }
    let verdict = wait_for_answer(args, child.as_mut()).await;
    if let Some(mut child) = child {
        if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _gone = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _reaped = child.wait().await;
    }
    verdict
}

async fn wait_for_answer(args: &ProbeArgs, mut child: Option<&mut tokio::process::Child>) -> ProbeVerdict {
    let verdict = |passed: bool, message: String| ProbeVerdict { passed, message };
    let url = &args.url;
    let deadline = Instant::now() + Duration::from_secs(args.wait_seconds);
    let mut last_error;
    loop {
        if let Some(child) = child.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let mut stderr = String::new();
            if let Some(pipe) = child.stderr.as_mut() {
                let _partial = pipe.read_to_string(&mut stderr).await;
            }
            let last_line = stderr.lines().last().unwrap_or("").to_owned();
            return verdict(
                false,
                format!("the service exited with {status} before answering: {last_line}"),
            );
        }
        match get(url).await {
            Ok((status, body)) => {
                if status != args.expect_status {
                    return verdict(
                        false,
                        format!("GET {url}: expected status {}, got {status}", args.expect_status),
                    );
                }
                if let Some(expected) = &args.expect_body
                    && !body.contains(expected.as_str())
                {
                    return verdict(false, format!("GET {url}: the body does not contain {expected:?}"));
                }
                return verdict(true, format!("GET {url} answered {status}"));
            }
            Err(err) => last_error = err,
        }
        if Instant::now() >= deadline {
            return verdict(false, format!("GET {url} never answered: {last_error}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A minimal HTTP/1.1 GET to a loopback URL; returns status and body.
async fn get(url: &str) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(authority))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|err| err.to_string())?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: lifeboat-agent\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| err.to_string())?;
    let mut response = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.take(1024 * 1024).read_to_end(&mut response),
    )
    .await
    .map_err(|_| "response timed out".to_owned())?
    .map_err(|err| err.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "not an HTTP response".to_owned())?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    Ok((status, body))
}
