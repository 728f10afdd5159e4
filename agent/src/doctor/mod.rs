//! `lifeboat-agent doctor`: can this agent do its job here? Checks everything a drill needs,
//! without restoring anything, and says what to fix, one line per check.
//!
//! A check that fails means a drill would fail (or be reported as `agent.misconfigured`) for a
//! reason on this machine; a warning is something an operator should know but that does not stop
//! a drill. The command exits 0 when nothing failed, 1 otherwise.
//!
//! Doctor leaves no trace: it creates nothing in `work_dir` but a private directory for its one
//! trivial jail, which it removes; it does not create the work directory when it is missing, so a
//! doctor run by root cannot leave root-owned state behind for an agent that runs as another user.
//!
//! # Layout
//!
//! - [`tools`]: the tools each declared backup kind needs, and their versions.
//! - [`jail`]: bubblewrap, user namespaces, the sandbox user, the right to start jails, and one
//!   trivial jailed command actually started.
//! - [`state`]: `work_dir` and the identity (directory and key modes, certificate validity).
//! - [`sources`]: each backup source reachable and readable by the sandbox user.
//! - [`assets`]: read-only access to each asset's production side.
//! - [`coordinator`]: the coordinator reachable over mutual TLS, this agent known to it, and the
//!   clock within the coordinator's tolerance.

pub mod assets;
pub mod coordinator;
pub mod jail;
pub mod sources;
pub mod state;
pub mod tools;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::AgentConfig;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ready for drills.
    Ok,
    /// Worth knowing; drills still run.
    Warn,
    /// A drill would fail because of this machine.
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// One check: its group, what it looked at, the outcome and what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub group: &'static str,
    pub subject: String,
    pub status: Status,
    pub detail: String,
}

impl Check {
    pub fn ok(group: &'static str, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(group, subject, Status::Ok, detail)
    }

    pub fn warn(group: &'static str, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(group, subject, Status::Warn, detail)
    }

    pub fn fail(group: &'static str, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(group, subject, Status::Fail, detail)
    }

    fn new(group: &'static str, subject: impl Into<String>, status: Status, detail: impl Into<String>) -> Self {
        Self {
            group,
            subject: subject.into(),
            status,
            detail: detail.into(),
        }
    }
}

/// Every check of one doctor run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether no check failed: the exit status.
    pub ready: bool,
    pub checks: Vec<Check>,
    /// Wall time of the whole run.
    pub elapsed_ms: u64,
}

impl Report {
    fn new(checks: Vec<Check>, elapsed: Duration) -> Self {
        Self {
            ready: checks.iter().all(|check| check.status != Status::Fail),
            checks,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// One line per check, then a summary line.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let group_width = self.checks.iter().map(|check| check.group.len()).max().unwrap_or(0);
        for check in &self.checks {
            let _infallible = writeln!(
                text,
                "{:<4}  {:<group_width$}  {}: {}",
                check.status.label(),
                check.group,
                check.subject,
                check.detail
            );
        }
        let count = |status| self.checks.iter().filter(|check| check.status == status).count();
        let _infallible = writeln!(
            text,
            "{}: {} ok, {} warnings, {} failed ({} ms)",
            if self.ready {
                "ready for drills"
            } else {
                "NOT ready for drills"
            },
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail),
            self.elapsed_ms
        );
        text
    }
}

/// Runs every check for `config`. Local checks run first; the network ones (backup locations,
/// assets, the coordinator) run concurrently, each with its own deadline.
pub async fn run(config: &AgentConfig) -> Report {
    let started = Instant::now();
    let mut checks = tools::check(config).await;
    checks.extend(state::check(config));
    let mut jail = jail::check(config).await;
    checks.append(&mut jail.checks);
    let (sources, assets, coordinator) = tokio::join!(
        sources::check(config, jail.user.as_ref(), jail.context.as_ref()),
        assets::check(config),
        coordinator::check(config),
    );
    checks.extend(sources);
    checks.extend(assets);
    checks.extend(coordinator);
    Report::new(checks, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failed_check_makes_the_agent_not_ready() {
        let report = Report::new(
            vec![
                Check::ok("tools", "restic", "0.14.0"),
                Check::warn("state", "certificate", "renewal overdue"),
            ],
            Duration::from_millis(12),
        );
        assert!(report.ready);
        assert!(
            report
                .render()
                .contains("ready for drills: 1 ok, 1 warnings, 0 failed (12 ms)")
        );
        let report = Report::new(vec![Check::fail("jail", "bubblewrap", "not installed")], Duration::ZERO);
        assert!(!report.ready);
        let text = report.render();
        assert!(text.starts_with("FAIL  jail  bubblewrap: not installed\n"), "{text}");
        assert!(text.contains("NOT ready for drills"), "{text}");
    }
}
