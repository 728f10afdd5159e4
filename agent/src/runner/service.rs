//! The `service` + `http` check: start the operator's application against the sandbox
//! (`SANDBOX_DATABASE_URL`), wait until it answers, assert the HTTP status (and body), stop it.
//!
//! `{port}` in `service` and `http` is replaced by a free loopback port. The application runs in
//! its own process group, which is killed afterwards whatever happened.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::CheckConfig;
use crate::runner::checks::{Target, sandbox_env};

/// Runs a service check; returns (passed, message, drift).
pub async fn check(check: &CheckConfig, target: &Target, timeout: Duration) -> (bool, String, Vec<String>) {
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()) {
        Ok(address) => address.port(),
        Err(err) => return (false, format!("no free port: {err}"), vec![]),
    };
    let Some(url) = check
        .http
        .as_deref()
        .map(|url| url.replace("{port}", &port.to_string()))
    else {
        return (
            false,
            "a service check needs http = \"http://127.0.0.1:{port}/...\"".into(),
            vec![],
        );
    };
    let expect_status = check.expect_status.unwrap_or(200);
    let mut child = None;
    if let Some(service) = &check.service {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(service.replace("{port}", &port.to_string()))
            .envs(sandbox_env(target))
            .env("PORT", port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        match command.spawn() {
            Ok(spawned) => child = Some(spawned),
            Err(err) => return (false, format!("cannot start {service:?}: {err}"), vec![]),
        }
    }
    let deadline = Instant::now() + timeout.min(Duration::from_secs(120));
    let mut last_error;
    let outcome = loop {
        if let Some(child) = child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let mut stderr = String::new();
            if let Some(pipe) = child.stderr.as_mut() {
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            let last_line = stderr.lines().last().unwrap_or("").to_owned();
            break (
                false,
                format!("the service exited with {status} before answering: {last_line}"),
            );
        }
        match get(&url).await {
            Ok((status, body)) => {
                if status != expect_status {
                    break (
                        false,
                        format!("GET {url}: expected status {expect_status}, got {status}"),
                    );
                }
                if let Some(expected) = &check.expect_body
                    && !body.contains(expected.as_str())
                {
                    break (false, format!("GET {url}: the body does not contain {expected:?}"));
                }
                break (true, format!("GET {url} answered {status}"));
            }
            Err(err) => last_error = err,
        }
        if Instant::now() >= deadline {
            break (false, format!("GET {url} never answered: {last_error}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(mut child) = child {
        if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = child.wait().await;
    }
    (outcome.0, outcome.1, vec![])
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
