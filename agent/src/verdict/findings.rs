//! The findings a restore test raises, one builder each, with their evidence and remediation in
//! the words an operator reads at 3 a.m. The verdict ([`super::judge`]) decides which apply.

use chrono::{DateTime, Utc};
use lifeboat_shared::durations::human;
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use serde_json::json;

use super::report::{AssetReport, DataLoss, RunReport, SourceProblem};
use crate::config::{AssetConfig, BackupConfig};
use crate::posture::AssetPosture;
use crate::posture::blast::Safety;

/// The fix every `agent.misconfigured` finding gives.
const FIX_THE_AGENT: &str = "Fix the agent's machine as the message says (`lifeboat-agent doctor` checks every prerequisite), then run the test again.";

fn when(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M").to_string()
}

/// An asset without a restore test: nothing proves it recovers.
pub fn untested(asset: &AssetConfig, posture: Option<&AssetPosture>) -> AssetReport {
    let name = asset.name.get_ref();
    let mut findings = vec![
        Finding::new(
            FindingKind::TestOverdue,
            name.as_str(),
            format!("{name} has no restore test: nothing proves it can be recovered."),
        )
        .with_severity(Severity::Critical)
        .with_remediation(format!(
            "Declare a [[test]] for {name} with the checks that prove its data is whole."
        )),
    ];
    if let Some(posture) = posture {
        findings.extend(posture.findings.iter().cloned());
    }
    findings.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    AssetReport {
        asset: name.clone(),
        recoverable: false,
        findings,
        runs: Vec::new(),
    }
}

/// An asset without any recovery point: `backup.missing`, or `agent.misconfigured` when every
/// source failed because of the agent's set-up.
pub fn no_backup(asset: &AssetConfig, backups: &[&BackupConfig], problems: &[SourceProblem]) -> AssetReport {
    let name = asset.name.get_ref();
    let messages: Vec<&str> = problems.iter().map(|problem| problem.message.as_str()).collect();
    let finding = if !problems.is_empty() && problems.iter().all(|problem| problem.agent_problem) {
        Finding::new(
            FindingKind::AgentMisconfigured,
            name.as_str(),
            format!(
                "The agent could not look at the backups of {name}: {}. This is the agent's set-up, not the backups; no backup was judged.",
                messages.join("; ")
            ),
        )
        .with_evidence(json!({"problems": messages}))
        .with_remediation(FIX_THE_AGENT)
    } else {
        let sources: Vec<&str> = backups.iter().map(|backup| backup.name.get_ref().as_str()).collect();
        let message = match (sources.as_slice(), messages.is_empty()) {
            ([], _) => format!("No backup source is declared for {name}."),
            (_, true) => format!("No backup of {name} was found in {}.", sources.join(", ")),
            (_, false) => format!("No backup of {name} could be read: {}.", messages.join("; ")),
        };
        Finding::new(FindingKind::BackupMissing, name.as_str(), message)
            .with_evidence(json!({"sources": sources, "problems": messages}))
            .with_remediation(format!(
                "Check that the backup job of {name} runs and writes to the declared path, and that the agent can read it."
            ))
    };
    AssetReport {
        asset: name.clone(),
        recoverable: false,
        findings: vec![finding],
        runs: Vec::new(),
    }
}

/// `agent.misconfigured`: no backup was judged, because the agent could not restore at all.
pub fn misconfigured(name: &str, run: &RunReport) -> Finding {
    let error = run.error.as_deref().unwrap_or("unknown error");
    Finding::new(
        FindingKind::AgentMisconfigured,
        name,
        format!(
            "The agent could not restore {name}: {error}. This is the agent's set-up, not the backup; no backup was judged."
        ),
    )
    .with_evidence(json!({"backup": run.backup, "recovery_point": run.recovery_point, "error": error}))
    .with_remediation(FIX_THE_AGENT)
}

/// `backup.unrecoverable` for the newest safe point: which failed, and the newest that restores.
pub fn unrecoverable(name: &str, verdict_runs: &[&RunReport], rpo: f64, now: DateTime<Utc>) -> Option<Finding> {
    let first = verdict_runs.first()?;
    let good = verdict_runs.iter().find(|run| run.restored);
    let tail = match good {
        Some(run) => format!(
            " The newest backup that does restore is {} from {} ({} old).",
            run.recovery_point,
            when(run.recovery_point_created_at),
            human((now - run.recovery_point_created_at).num_seconds() as f64)
        ),
        None => format!(
            " None of the {} older backups tried restores either.",
            verdict_runs.len() - 1
        ),
    };
    let severity = if good.is_some_and(|run| (run.recovery_point_age_seconds as f64) <= rpo) {
        Severity::High
    } else {
        Severity::Critical
    };
    Some(
        Finding::new(
            FindingKind::BackupUnrecoverable,
            name,
            format!(
                "The newest backup ({}, {}) did not restore: {}.{tail}",
                first.recovery_point,
                when(first.recovery_point_created_at),
                first.error.as_deref().unwrap_or("unknown error")
            ),
        )
        .with_severity(severity)
        .with_evidence(json!({
            "failed": verdict_runs.iter().filter(|run| !run.restored).map(|run| json!({
                "recovery_point": run.recovery_point, "backup": run.backup, "error": run.error,
            })).collect::<Vec<_>>(),
            "newest_that_restores": good.map(|run| json!({"recovery_point": run.recovery_point, "created_at": run.recovery_point_created_at})),
        }))
        .with_remediation(format!(
            "Find out why the backup job of {name} wrote a backup that does not restore (its log, disk space, a changed \
             format), fix it, and let Lifeboat test its next output; keep the older good backups until then."
        )),
    )
}

/// `backup.unrecoverable` (high) for a point restored besides the verdict's: an older one the
/// test picked for coverage, or the newest one inside the blast radius.
pub fn other_point_failed(name: &str, run: &RunReport) -> Finding {
    let why = match run.role {
        super::RunRole::Coverage => "An older backup picked at random",
        _ => "The newest backup, inside the blast radius,",
    };
    Finding::new(
        FindingKind::BackupUnrecoverable,
        name,
        format!(
            "{why} ({}/{}, {}) did not restore: {}.",
            run.backup,
            run.recovery_point,
            when(run.recovery_point_created_at),
            run.error.as_deref().unwrap_or("unknown error")
        ),
    )
    .with_severity(Severity::High)
    .with_evidence(
        json!({"backup": run.backup, "recovery_point": run.recovery_point, "role": run.role, "error": run.error}),
    )
    .with_remediation(format!(
        "A backup of {name} that does not restore is no backup: find out what damaged {}/{} (storage, the job, an \
         edit), and do not count on it.",
        run.backup, run.recovery_point
    ))
}

/// `restore.hostile` for every attempt whose jail saw what a backup should never do.
pub fn hostile(name: &str, runs: &[RunReport]) -> Vec<Finding> {
    runs.iter()
        .filter(|run| !run.hostile.is_empty())
        .map(|run| {
            Finding::new(
                FindingKind::RestoreHostile,
                name,
                format!(
                    "Restoring {}/{} showed signs of tampering: {}. Treat this backup as tampered.",
                    run.backup,
                    run.recovery_point,
                    run.hostile.join("; ")
                ),
            )
            .with_evidence(json!({"backup": run.backup, "recovery_point": run.recovery_point, "signs": run.hostile}))
            .with_remediation(format!(
                "Do not restore {}/{} anywhere outside a sandbox. Find out who could write to {}: compare the \
                 backup with its job's logs and checksums, rotate the credentials that reach it, and restore from \
                 an older point that tests clean.",
                run.backup, run.recovery_point, run.backup
            ))
        })
        .collect()
}

/// `restore.timed_out`.
pub fn timed_out(name: &str, run: &RunReport) -> Finding {
    Finding::new(
        FindingKind::RestoreTimedOut,
        name,
        format!(
            "The restore test of {name} did not finish: {}.",
            run.error.as_deref().unwrap_or("timed out")
        ),
    )
    .with_evidence(json!({"recovery_point": run.recovery_point}))
    .with_remediation("Raise the test's timeout if the data grew, or find what makes the restore hang.")
}

/// `restore.check_failed` for each failed check of a restored point.
pub fn failed_checks(name: &str, run: &RunReport) -> Vec<Finding> {
    run.checks
        .iter()
        .filter(|check| !check.passed)
        .map(|check| {
            Finding::new(
                FindingKind::RestoreCheckFailed,
                name,
                format!("Restored {name}, but check \"{}\" failed: {}.", check.name, check.message),
            )
            .with_evidence(json!({"check": check.name, "kind": check.kind, "recovery_point": run.recovery_point}))
            .with_remediation(
                "Compare the backup's contents with production: a backup that restores but lacks the data is not a backup.",
            )
        })
        .collect()
}

/// `restore.rto_exceeded`.
pub fn rto_exceeded(name: &str, run: &RunReport, rto: f64) -> Finding {
    Finding::new(
        FindingKind::RestoreRtoExceeded,
        name,
        format!(
            "Restoring {name} took {}; its RTO is {}.",
            human(run.rto_seconds),
            human(rto)
        ),
    )
    .with_evidence(json!({"rto_seconds": run.rto_seconds, "rto_limit_seconds": rto}))
    .with_remediation(
        "Use a parallel-restorable format (custom or directory), restore on faster storage, or agree on a longer RTO.",
    )
}

/// `drift.detected` from a `schema` check: the restored schema differs from production's.
pub fn schema_drift(name: &str, run: &RunReport) -> Option<Finding> {
    let drift: Vec<&String> = run.checks.iter().flat_map(|check| check.drift.iter()).collect();
    if drift.is_empty() {
        return None;
    }
    let severity = if run.outcome == lifeboat_shared::protocol::Outcome::Passed {
        Severity::Medium
    } else {
        Severity::High
    };
    Some(
        Finding::new(
            FindingKind::DriftDetected,
            name,
            format!(
                "Since the backup {}: {}.",
                run.recovery_point,
                drift
                    .iter()
                    .take(5)
                    .map(|line| line.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
        .with_severity(severity)
        .with_evidence(json!({"differences": drift}))
        .with_remediation("Expected after a migration; otherwise find who changed production."),
    )
}

/// `restore.data_loss`: what a recovery from this point would lose; critical beyond the RPO.
pub fn data_loss(name: &str, run: &RunReport, loss: &DataLoss, rpo: f64) -> Finding {
    let severity = if loss.seconds as f64 > rpo {
        Severity::Critical
    } else {
        Severity::Info
    };
    let production = match loss.production_newest {
        Some(newest) => format!("production's is {}", when(newest)),
        None => "production does not answer, so the loss is counted up to now".to_owned(),
    };
    Finding::new(
        FindingKind::RestoreDataLoss,
        name,
        format!(
            "Restoring {}/{} would lose {} of data: its newest row is {}, {production}; the RPO is {}.",
            run.backup,
            run.recovery_point,
            human(loss.seconds as f64),
            when(loss.restored_newest),
            human(rpo)
        ),
    )
    .with_severity(severity)
    .with_evidence(json!({
        "recovery_point": run.recovery_point, "restored_newest": loss.restored_newest,
        "production_newest": loss.production_newest, "loss_seconds": loss.seconds, "rpo_seconds": rpo,
    }))
    .with_remediation(format!(
        "The backup is fresh but its data is not: check that the backup job of {name} dumps the live database (not a \
         replica that stopped replaying, not a stale copy), and that writes still reach production."
    ))
}

/// `backup.stale`: the newest recoverable point outside the blast radius is older than the RPO,
/// or there is none.
pub fn stale(
    name: &str,
    verdict: Option<&RunReport>,
    fresher_inside: Option<&RunReport>,
    posture: Option<&AssetPosture>,
    rpo: f64,
) -> Option<Finding> {
    let blast_note = fresher_inside.map_or_else(String::new, |run| {
        format!(
            " (Fresher backups exist, e.g. {}/{}, but inside its blast radius: {}.)",
            run.backup,
            run.recovery_point,
            posture
                .and_then(|posture| posture.sources.iter().find(|source| source.backup == run.backup))
                .map(|source| unsafe_reason(&source.safety))
                .unwrap_or_default()
        )
    });
    match verdict {
        Some(run) if (run.recovery_point_age_seconds as f64) > rpo => Some(
            Finding::new(
                FindingKind::BackupStale,
                name,
                format!(
                    "The newest recoverable backup of {name}{} is {} old; its RPO is {}.{blast_note}",
                    if posture.is_some() { " outside its blast radius" } else { "" },
                    human(run.recovery_point_age_seconds as f64),
                    human(rpo)
                ),
            )
            .with_evidence(json!({
                "recovery_point": run.recovery_point, "backup": run.backup,
                "age_seconds": run.recovery_point_age_seconds, "rpo_seconds": rpo,
                "fresher_inside_blast_radius": fresher_inside.map(|run| json!({"backup": run.backup, "recovery_point": run.recovery_point})),
            }))
            .with_remediation(format!(
                "Make the backup job of {name} write at least every {} to a place outside its blast radius (another \
                 volume, host and provider account than {name}).",
                human(rpo)
            )),
        ),
        None if fresher_inside.is_some() => Some(
            Finding::new(
                FindingKind::BackupStale,
                name,
                format!("No recoverable backup of {name} lies outside its blast radius.{blast_note}"),
            )
            .with_evidence(json!({"rpo_seconds": rpo}))
            .with_remediation(format!(
                "Copy {name}'s backups to another volume, host and provider account, declare that copy as a \
                 [[backup]], and let Lifeboat test it."
            )),
        ),
        _ => None,
    }
}

/// Why a source is inside the blast radius, in a few words.
fn unsafe_reason(safety: &Safety) -> String {
    let mut reasons = Vec::new();
    if let Some(shares) = safety.shares.filter(|shares| shares.same_machine()) {
        reasons.push(format!("on the same {}", shares.as_str()));
    }
    if !safety.destroyed_with_asset_by.is_empty() {
        reasons.push("one credential can destroy both".to_owned());
    }
    reasons.join(", ")
}
