//! What a restore test found, in the words of DESIGN.md §4 and §7: runs with their measurements
//! and runbooks, findings with evidence and remediation, and the binary verdict per asset.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_shared::protocol::Outcome;
use serde::Serialize;
use serde_json::json;

use crate::config::{AssetConfig, BackupConfig};
use crate::posture::blast::Safety;
use crate::posture::credentials::PublicCredential;
use crate::posture::{Assessment, AssetPosture};
use crate::runner::checks::CheckReport;
use crate::runner::{Candidate, age_seconds};

/// One restore attempt.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub backup: String,
    pub recovery_point: String,
    pub recovery_point_created_at: DateTime<Utc>,
    /// Where the timestamp came from (archive header, backup label, ... or file mtime).
    pub timestamp_source: String,
    pub outcome: Outcome,
    /// Whether the restore itself succeeded (checks may still have failed).
    #[serde(skip)]
    pub restored: bool,
    /// Sandbox creation + restore.
    pub restore_seconds: f64,
    /// Sandbox creation until every check passed: the measured RTO.
    pub rto_seconds: f64,
    pub recovery_point_age_seconds: i64,
    /// With `freshness`: age of the newest row in the restored data (the real data loss).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_age_seconds: Option<i64>,
    pub checks: Vec<CheckReport>,
    /// The exact commands that restored this point, in order, secrets as `${VAR}`.
    pub runbook: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_kept: Option<String>,
    /// Signs that the backup was tampered with: programs the jail saw that the restore did not
    /// start, content no backup needs (`restore.hostile`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostile: Vec<String>,
    /// Whether the attempt failed because of the agent's set-up, not the backup
    /// (`agent.misconfigured`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub agent_problem: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

impl RunReport {
    pub fn new(candidate: &Candidate, now: DateTime<Utc>) -> Self {
        Self {
            backup: candidate.backup.clone(),
            recovery_point: candidate.point.id.clone(),
            recovery_point_created_at: candidate.point.created_at,
            timestamp_source: serde_json::to_value(candidate.point.timestamp_source)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default(),
            outcome: Outcome::Failed,
            restored: false,
            restore_seconds: 0.0,
            rto_seconds: 0.0,
            recovery_point_age_seconds: age_seconds(candidate.point.created_at, now),
            data_age_seconds: None,
            checks: Vec::new(),
            runbook: Vec::new(),
            error: None,
            sandbox_kept: None,
            hostile: Vec::new(),
            agent_problem: false,
            started_at: now,
            finished_at: now,
        }
    }

    /// Records a failed restore.
    pub fn fail_restore(&mut self, error: String) {
        self.outcome = Outcome::Failed;
        self.restored = false;
        self.error = Some(error);
    }

    /// Records a restore that failed, telling the agent's set-up from the backup.
    pub fn fail_restore_error(&mut self, error: &crate::runner::restore::RestoreError) {
        self.fail_restore(error.to_string());
        self.agent_problem = error.is_agent_problem();
    }

    /// Records a sandbox that could not be made.
    pub fn fail_sandbox(&mut self, message: String, error: &crate::sandbox::SandboxError) {
        self.fail_restore(message);
        self.agent_problem = error.is_agent_problem();
    }

    /// Records a failure of the agent's set-up (no backup was tried).
    pub fn fail_agent(&mut self, message: String) {
        self.fail_restore(message);
        self.agent_problem = true;
    }

    /// Records the signs of tampering of this attempt and the programs its jails saw; any makes
    /// the attempt fail, whatever its checks said.
    pub fn record_hostility(&mut self, signs: Vec<String>, strays: Vec<crate::jail::Stray>) {
        self.hostile.extend(signs);
        self.hostile.extend(strays.into_iter().map(|stray| {
            format!(
                "it started a program the sandbox did not start (`{}`), killed with the jail",
                if stray.command_line.is_empty() {
                    stray.name
                } else {
                    stray.command_line
                }
            )
        }));
        if !self.hostile.is_empty() {
            self.outcome = Outcome::Failed;
        }
    }

    /// Records a successful restore.
    pub fn restored(&mut self, runbook: Vec<String>, took: Duration) {
        self.restored = true;
        self.runbook = runbook;
        self.restore_seconds = took.as_secs_f64();
        self.rto_seconds = self.restore_seconds;
    }
}

/// The verdict of one asset.
#[derive(Debug, Clone, Serialize)]
pub struct AssetReport {
    pub asset: String,
    pub recoverable: bool,
    /// Worst first.
    pub findings: Vec<Finding>,
    pub runs: Vec<RunReport>,
}

impl AssetReport {
    pub fn error(asset: &str, message: &str) -> Self {
        Self {
            asset: asset.to_owned(),
            recoverable: false,
            findings: vec![Finding::new(FindingKind::BackupMissing, asset, message)],
            runs: Vec::new(),
        }
    }
}

/// `check` / `posture` output (DESIGN.md §7).
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutput {
    pub recoverable: bool,
    pub assets: Vec<AssetReport>,
    /// Every credential known to the agent, by fingerprint and preview only.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub credentials: Vec<PublicCredential>,
    /// Findings that concern no declared asset (e.g. an exposed token that reaches nothing
    /// Lifeboat protects).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub findings: Vec<Finding>,
}

impl CheckOutput {
    /// The verdict of a whole configuration: recoverable when every asset is (and there is one).
    pub fn new(assets: Vec<AssetReport>, assessment: Option<&Assessment>) -> Self {
        Self {
            recoverable: !assets.is_empty() && assets.iter().all(|asset| asset.recoverable),
            assets,
            credentials: assessment
                .map(|assessment| {
                    assessment
                        .credentials
                        .iter()
                        .map(|credential| credential.public.clone())
                        .collect()
                })
                .unwrap_or_default(),
            findings: assessment
                .map(|assessment| assessment.unattached.clone())
                .unwrap_or_default(),
        }
    }
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

/// Formats a duration for people: `47 min`, `3 h`, `92 days`.
pub fn human(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 2.0 * 3600.0 {
        format!("{:.0} min", seconds / 60.0)
    } else if seconds < 2.0 * 86_400.0 {
        format!("{:.0} h", seconds / 3600.0)
    } else {
        format!("{:.0} days", seconds / 86_400.0)
    }
}

fn when(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M").to_string()
}

/// The finding for an asset without any recovery point.
pub fn no_backup(
    asset: &AssetConfig,
    backups: &[&BackupConfig],
    problems: &[crate::runner::SourceProblem],
) -> AssetReport {
    let name = asset.name.get_ref();
    if !problems.is_empty() && problems.iter().all(|problem| problem.agent_problem) {
        let messages: Vec<&str> = problems.iter().map(|problem| problem.message.as_str()).collect();
        let finding = Finding::new(
            FindingKind::AgentMisconfigured,
            name.as_str(),
            format!(
                "The agent could not look at the backups of {name}: {}. This is the agent's set-up, not the backups; no backup was judged.",
                messages.join("; ")
            ),
        )
        .with_evidence(json!({"problems": messages}))
        .with_remediation(
            "Fix the agent's machine as the message says (`lifeboat-agent doctor` checks every prerequisite), then run the test again.",
        );
        return AssetReport {
            asset: name.clone(),
            recoverable: false,
            findings: vec![finding],
            runs: Vec::new(),
        };
    }
    let problems: Vec<&str> = problems.iter().map(|problem| problem.message.as_str()).collect();
    let sources: Vec<&str> = backups.iter().map(|backup| backup.name.get_ref().as_str()).collect();
    let message = match (sources.as_slice(), problems.is_empty()) {
        ([], _) => format!("No backup source is declared for {name}."),
        (_, true) => format!("No backup of {name} was found in {}.", sources.join(", ")),
        (_, false) => format!("No backup of {name} could be read: {}.", problems.join("; ")),
    };
    let finding = Finding::new(FindingKind::BackupMissing, name.as_str(), message)
        .with_evidence(json!({"sources": sources, "problems": problems}))
        .with_remediation(format!(
            "Check that the backup job of {name} runs and writes to the declared path, and that the agent can read it."
        ));
    AssetReport {
        asset: name.clone(),
        recoverable: false,
        findings: vec![finding],
        runs: Vec::new(),
    }
}

/// Turns the runs of one test and the asset's posture into findings and the verdict (DESIGN.md
/// §1). Without a posture every backup source counts as outside the blast radius.
pub fn judge(
    asset: &AssetConfig,
    runs: Vec<RunReport>,
    posture: Option<&AssetPosture>,
    now: DateTime<Utc>,
) -> AssetReport {
    let name = asset.name.get_ref().clone();
    let rpo = asset.rpo.as_secs() as f64;
    let rto = asset.rto.as_secs() as f64;
    let mut findings = Vec::new();

    let good = runs.iter().find(|run| run.restored);
    let first = runs.first();
    findings.extend(hostile_findings(&name, &runs));
    if let Some(first) = first.filter(|run| run.agent_problem) {
        findings.push(agent_misconfigured(&name, first));
    }
    if let Some(first) = first.filter(|run| !run.restored && run.outcome != Outcome::TimedOut && !run.agent_problem) {
        let newest_that_restores = good.map(|run| (run.recovery_point.clone(), run.recovery_point_created_at));
        let good_within_rpo = good.is_some_and(|run| (run.recovery_point_age_seconds as f64) <= rpo);
        let tail = match &newest_that_restores {
            Some((point, created)) => format!(
                " The newest backup that does restore is {point} from {} ({} old).",
                when(*created),
                human(age_seconds(*created, now) as f64)
            ),
            None => format!(" None of the {} older backups tried restores either.", runs.len() - 1),
        };
        let severity = if good_within_rpo {
            Severity::High
        } else {
            Severity::Critical
        };
        findings.push(
            Finding::new(
                FindingKind::BackupUnrecoverable,
                name.as_str(),
                format!(
                    "The newest backup ({}, {}) did not restore: {}.{tail}",
                    first.recovery_point,
                    when(first.recovery_point_created_at),
                    first.error.as_deref().unwrap_or("unknown error")
                ),
            )
            .with_severity(severity)
            .with_evidence(json!({
                "failed": runs.iter().filter(|run| !run.restored).map(|run| json!({
                    "recovery_point": run.recovery_point, "backup": run.backup, "error": run.error,
                })).collect::<Vec<_>>(),
                "newest_that_restores": newest_that_restores.as_ref().map(|(point, created)| json!({"recovery_point": point, "created_at": created})),
            }))
            .with_remediation(format!(
                "Run the backup job of {name} by hand and restore its output with the runbook of the last passing run; \
                 fix the job before its older good backups expire."
            )),
        );
    }
    if let Some(timed_out) = runs.iter().find(|run| run.outcome == Outcome::TimedOut) {
        findings.push(
            Finding::new(
                FindingKind::RestoreTimedOut,
                name.as_str(),
                format!(
                    "The restore test of {name} did not finish: {}.",
                    timed_out.error.as_deref().unwrap_or("timed out")
                ),
            )
            .with_evidence(json!({"recovery_point": timed_out.recovery_point}))
            .with_remediation("Raise the test's timeout if the data grew, or find what makes the restore hang."),
        );
    }
    if let Some(run) = good {
        for check in run.checks.iter().filter(|check| !check.passed) {
            findings.push(
                Finding::new(
                    FindingKind::RestoreCheckFailed,
                    name.as_str(),
                    format!("Restored {name}, but check \"{}\" failed: {}.", check.name, check.message),
                )
                .with_evidence(json!({"check": check.name, "kind": check.kind, "recovery_point": run.recovery_point}))
                .with_remediation(
                    "Compare the backup's contents with production: a backup that restores but lacks the data is not a backup.",
                ),
            );
        }
        if run.outcome == Outcome::Passed && run.rto_seconds > rto {
            findings.push(
                Finding::new(
                    FindingKind::RestoreRtoExceeded,
                    name.as_str(),
                    format!("Restoring {name} took {}; its RTO is {}.", human(run.rto_seconds), human(rto)),
                )
                .with_evidence(json!({"rto_seconds": run.rto_seconds, "rto_limit_seconds": rto}))
                .with_remediation("Use a parallel-restorable format (custom or directory), restore on faster storage, or agree on a longer RTO."),
            );
        }
        let drift: Vec<&String> = run.checks.iter().flat_map(|check| check.drift.iter()).collect();
        if !drift.is_empty() {
            let severity = if run.outcome == Outcome::Passed {
                Severity::Info
            } else {
                Severity::High
            };
            findings.push(
                Finding::new(
                    FindingKind::DriftDetected,
                    name.as_str(),
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
            );
        }
    }
    let safe_sources = posture.map(AssetPosture::safe_sources);
    let is_safe = |run: &RunReport| safe_sources.as_ref().is_none_or(|safe| safe.contains(&run.backup));
    let passed = |run: &&RunReport| run.outcome == Outcome::Passed;
    let recoverable_point = runs
        .iter()
        .filter(passed)
        .filter(|run| is_safe(run))
        .max_by_key(|run| run.recovery_point_created_at);
    let unsafe_newer = runs
        .iter()
        .filter(passed)
        .filter(|run| !is_safe(run))
        .filter(|run| {
            recoverable_point.is_none_or(|safe| run.recovery_point_created_at > safe.recovery_point_created_at)
        })
        .max_by_key(|run| run.recovery_point_created_at);
    let blast_note = match unsafe_newer {
        Some(run) => format!(
            " (Fresher backups exist, e.g. {}/{}, but inside its blast radius: {}.)",
            run.backup,
            run.recovery_point,
            posture
                .and_then(|posture| posture.sources.iter().find(|source| source.backup == run.backup))
                .map(|source| unsafe_reason(&source.safety))
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    match recoverable_point {
        Some(run) if (run.recovery_point_age_seconds as f64) > rpo => findings.push(
            Finding::new(
                FindingKind::BackupStale,
                name.as_str(),
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
                "fresher_inside_blast_radius": unsafe_newer.map(|run| json!({"backup": run.backup, "recovery_point": run.recovery_point})),
            }))
            .with_remediation(format!(
                "Make the backup job of {name} write at least every {} to a place outside its blast radius (another \
                 volume, host and provider account than {name}).",
                human(rpo)
            )),
        ),
        None if unsafe_newer.is_some() => findings.push(
            Finding::new(
                FindingKind::BackupStale,
                name.as_str(),
                format!("No recoverable backup of {name} lies outside its blast radius.{blast_note}"),
            )
            .with_evidence(json!({"rpo_seconds": rpo}))
            .with_remediation(format!(
                "Copy {name}'s backups to another volume, host and provider account, declare that copy as a \
                 [[backup]], and let Lifeboat test it."
            )),
        ),
        _ => {}
    }
    if let Some(posture) = posture {
        findings.extend(posture.findings.iter().cloned());
    }
    findings.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    let recoverable = recoverable_point
        .is_some_and(|run| (run.recovery_point_age_seconds as f64) <= rpo && run.rto_seconds <= rto)
        && !findings.iter().any(|finding| finding.severity == Severity::Critical);
    AssetReport {
        asset: name,
        recoverable,
        findings,
        runs,
    }
}

/// `restore.hostile` for every attempt whose jail saw what a backup should never do.
fn hostile_findings(name: &str, runs: &[RunReport]) -> Vec<Finding> {
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
                "Do not restore {}/{} anywhere outside a sandbox. Find out who could write to {}: compare the                  backup with its job's logs and checksums, rotate the credentials that reach it, and restore from                  an older point that tests clean.",
                run.backup, run.recovery_point, run.backup
            ))
        })
        .collect()
}

/// `agent.misconfigured`: no backup was judged, because the agent could not restore at all.
fn agent_misconfigured(name: &str, run: &RunReport) -> Finding {
    let error = run.error.as_deref().unwrap_or("unknown error");
    Finding::new(
        FindingKind::AgentMisconfigured,
        name,
        format!(
            "The agent could not restore {name}: {error}. This is the agent's set-up, not the backup; no backup was judged."
        ),
    )
    .with_evidence(json!({"backup": run.backup, "recovery_point": run.recovery_point, "error": error}))
    .with_remediation(
        "Fix the agent's machine as the message says (`lifeboat-agent doctor` checks every prerequisite), then run the test again.",
    )
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

/// Renders the report for a terminal.
pub fn render(output: &CheckOutput) -> String {
    let mut text = String::new();
    for asset in &output.assets {
        let verdict = if asset.recoverable {
            "RECOVERABLE"
        } else {
            "NOT RECOVERABLE"
        };
        text.push_str(&format!("\n{}: {verdict}\n", asset.asset));
        for run in &asset.runs {
            text.push_str(&format!(
                "  {} {}/{} ({} old): restore {}, checks passed after {}\n",
                run.outcome.as_str(),
                run.backup,
                run.recovery_point,
                human(run.recovery_point_age_seconds as f64),
                human(run.restore_seconds),
                human(run.rto_seconds),
            ));
            if let Some(error) = &run.error {
                text.push_str(&format!("    error: {error}\n"));
            }
            for check in &run.checks {
                text.push_str(&format!(
                    "    [{}] {}: {}\n",
                    if check.passed { "ok" } else { "FAIL" },
                    check.name,
                    check.message
                ));
            }
        }
        for finding in &asset.findings {
            text.push_str(&format!(
                "  {} {}: {}\n",
                finding.severity.as_str().to_uppercase(),
                finding.kind,
                finding.message
            ));
            if !finding.remediation.is_empty() {
                text.push_str(&format!("    fix: {}\n", finding.remediation));
            }
        }
    }
    for finding in &output.findings {
        text.push_str(&format!(
            "\n{} {}: {}\n",
            finding.severity.as_str().to_uppercase(),
            finding.kind,
            finding.message
        ));
    }
    text.push_str(&format!(
        "\n{}\n",
        if output.recoverable {
            "Every asset is recoverable."
        } else {
            "NOT every asset is recoverable."
        }
    ));
    text
}

impl AssetReport {
    /// The result sent to the coordinator for this report (through the spool).
    pub fn to_result(&self, run_id: Option<lifeboat_shared::ids::RunId>) -> lifeboat_shared::protocol::RunResult {
        let now = Utc::now();
        let main = self
            .runs
            .iter()
            .find(|run| run.outcome == Outcome::Passed)
            .or_else(|| self.runs.first());
        lifeboat_shared::protocol::RunResult {
            result_id: lifeboat_shared::ids::ResultId::new(),
            kind: lifeboat_shared::protocol::ResultKind::Restore,
            run_id,
            asset: self.asset.clone(),
            backup: main.map(|run| run.backup.clone()).unwrap_or_default(),
            recovery_point: main.map(|run| run.recovery_point.clone()).unwrap_or_default(),
            outcome: if self.recoverable {
                Outcome::Passed
            } else {
                main.map_or(Outcome::Failed, |run| {
                    if run.outcome == Outcome::Passed {
                        Outcome::Failed
                    } else {
                        run.outcome
                    }
                })
            },
            started_at: self.runs.first().map_or(now, |run| run.started_at),
            finished_at: self.runs.last().map_or(now, |run| run.finished_at),
            restore_seconds: main.map_or(0.0, |run| run.restore_seconds),
            rto_seconds: main.map_or(0.0, |run| run.rto_seconds),
            recovery_point_age_seconds: main.map_or(0, |run| run.recovery_point_age_seconds),
            findings: self.findings.clone(),
            detail: json!({"recoverable": self.recoverable, "runs": self.runs}),
        }
    }
}
