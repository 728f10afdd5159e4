//! The verdict: can this asset be recovered right now? (`docs/verdict.md`)
//!
//! An asset is **recoverable** if and only if:
//!
//! 1. its newest recovery point *outside the blast radius* (not on the asset's volume or host,
//!    and not destroyable by one credential that can also destroy the asset) was restored into a
//!    sandbox and passed every check — the [`RunRole::Verdict`] run;
//! 2. that happened within the asset's test interval (this agent's run is now; the coordinator
//!    holds the interval over time);
//! 3. that point's age is within the RPO, and the measured restore within the RTO;
//! 4. no critical finding stands (a hostile backup, data loss beyond the RPO, a vanished backup,
//!    a shared blast radius, …).
//!
//! Other restores add facts, never a better verdict: the newest point inside the blast radius
//! ([`RunRole::Newest`], to tell "fresher backups exist, but where one bad call takes them"), and
//! an older point a `random_within` pick chose ([`RunRole::Coverage`], whose failure is
//! `backup.unrecoverable`, high). The coordinator applies the same definition to the results it
//! receives.
//!
//! # Layout
//!
//! - [`report`]: runs, checks, the asset's report and the `check` output.
//! - [`findings`]: one builder per finding a restore test raises.
//! - [`render`]: the `check` command's text.

mod findings;
mod render;
mod report;

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, Severity};
use lifeboat_shared::protocol::Outcome;

pub use findings::{no_backup, untested};
pub use render::render;
pub use report::{AssetReport, CheckOutput, CheckReport, DataLoss, RunReport, RunRole, SourceProblem};

use crate::config::AssetConfig;
use crate::posture::AssetPosture;

/// Turns the runs of one test and the asset's posture into findings and the verdict. Runs come
/// in the order they were made: the verdict's runs newest first (walking back after failures).
pub fn judge(
    asset: &AssetConfig,
    runs: Vec<RunReport>,
    posture: Option<&AssetPosture>,
    now: DateTime<Utc>,
) -> AssetReport {
    let name = asset.name.get_ref().clone();
    let rpo = asset.rpo.as_secs() as f64;
    let rto = asset.rto.as_secs() as f64;
    let verdict_runs: Vec<&RunReport> = runs.iter().filter(|run| run.role == RunRole::Verdict).collect();
    let recovered = verdict_runs.iter().copied().find(|run| run.outcome == Outcome::Passed);
    let restored = verdict_runs.iter().copied().find(|run| run.restored);
    let fresher_inside = runs
        .iter()
        .filter(|run| run.role == RunRole::Newest && run.outcome == Outcome::Passed)
        .find(|run| recovered.is_none_or(|safe| run.recovery_point_created_at > safe.recovery_point_created_at));

    let mut found = findings::hostile(&name, &runs);
    match verdict_runs.first() {
        Some(first) if first.agent_problem => found.push(findings::misconfigured(&name, first)),
        Some(first) if !first.restored && first.outcome != Outcome::TimedOut => {
            found.extend(findings::unrecoverable(&name, &verdict_runs, rpo, now));
        }
        _ => {}
    }
    found.extend(
        runs.iter()
            .filter(|run| run.role != RunRole::Verdict && !run.restored && !run.agent_problem)
            .filter(|run| run.outcome != Outcome::TimedOut)
            .map(|run| findings::other_point_failed(&name, run)),
    );
    // A check that fails on another restored point is a fact too (it decides nothing).
    for run in runs.iter().filter(|run| run.role != RunRole::Verdict && run.restored) {
        found.extend(findings::failed_checks(&name, run));
    }
    if let Some(run) = runs.iter().find(|run| run.outcome == Outcome::TimedOut) {
        found.push(findings::timed_out(&name, run));
    }
    if let Some(run) = restored {
        found.extend(findings::failed_checks(&name, run));
        if run.outcome == Outcome::Passed && run.rto_seconds > rto {
            found.push(findings::rto_exceeded(&name, run, rto));
        }
        found.extend(findings::schema_drift(&name, run));
        if let Some(loss) = &run.data_loss {
            found.push(findings::data_loss(&name, run, loss, rpo));
        }
    }
    found.extend(findings::stale(&name, recovered, fresher_inside, posture, rpo));
    if let Some(posture) = posture {
        found.extend(posture.findings.iter().cloned());
    }
    let findings = one_per_fact(found);
    let recoverable = recovered
        .is_some_and(|run| (run.recovery_point_age_seconds as f64) <= rpo && run.rto_seconds <= rto)
        && !findings.iter().any(|finding| finding.severity == Severity::Critical);
    AssetReport {
        asset: name,
        recoverable,
        findings,
        runs,
    }
}

/// The report of an asset with several `[[test]]`s: recoverable when every test says so; each
/// finding once; every run.
pub fn merge(reports: Vec<AssetReport>) -> Option<AssetReport> {
    let mut reports = reports.into_iter();
    let mut merged = reports.next()?;
    for report in reports {
        merged.recoverable &= report.recoverable;
        merged.findings.extend(report.findings);
        merged.runs.extend(report.runs);
    }
    merged.findings = one_per_fact(std::mem::take(&mut merged.findings));
    Some(merged)
}

/// Findings worst first, each fact (kind, subject, message) once.
fn one_per_fact(findings: Vec<Finding>) -> Vec<Finding> {
    let mut seen = std::collections::HashSet::new();
    let mut unique: Vec<Finding> = findings
        .into_iter()
        .filter(|finding| seen.insert((finding.kind, finding.subject.clone(), finding.message.clone())))
        .collect();
    unique.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    unique
}
