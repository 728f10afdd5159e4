//! What a restore test found: runs with their measurements and runbooks, the checks, and the
//! asset's report (verdict, findings worst first), as `check` prints them and results carry them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::Finding;
use lifeboat_shared::protocol::Outcome;
use serde::Serialize;
use serde_json::json;

use crate::backups::RecoveryPoint;
use crate::posture::Assessment;
use crate::posture::credentials::PublicCredential;

/// Why a recovery point was restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunRole {
    /// The newest point outside the blast radius (or an older one, walking back after it failed):
    /// the verdict rests on it.
    Verdict,
    /// The newest point of all, inside the blast radius: restored to say whether fresher data
    /// exists where one bad call could take it.
    Newest,
    /// An older point the test's `pick = "random_within:…"` chose: coverage; a pass never makes
    /// the verdict worse, a failure is reported.
    Coverage,
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub name: String,
    pub kind: &'static str,
    pub passed: bool,
    /// What happened, in words (`expected true, got false`).
    pub message: String,
    pub seconds: f64,
    /// Schema differences found by a `schema` check (drift), `+` in production, `-` gone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

/// One restore attempt.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub backup: String,
    pub recovery_point: String,
    pub recovery_point_created_at: DateTime<Utc>,
    /// Where the timestamp came from (archive header, backup label, ... or file mtime).
    pub timestamp_source: String,
    pub role: RunRole,
    pub outcome: Outcome,
    /// Whether the restore itself succeeded (checks may still have failed).
    #[serde(skip)]
    pub restored: bool,
    /// Sandbox creation + restore.
    pub restore_seconds: f64,
    /// Sandbox creation until every check passed: the measured RTO.
    pub rto_seconds: f64,
    pub recovery_point_age_seconds: i64,
    /// With `freshness`: age of the newest row in the restored data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_age_seconds: Option<i64>,
    /// With `freshness`: the newest value in the restored copy and in production, and the data
    /// a recovery from this point loses (production's newest − the copy's newest; now − the
    /// copy's newest when production is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<DataLoss>,
    pub checks: Vec<CheckReport>,
    /// The production recovery procedure this restore proved, in order, secrets as `${VAR}`.
    pub runbook: Vec<String>,
    /// What Lifeboat itself ran in its sandbox (settings a production recovery must not copy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sandbox_recipe: Vec<String>,
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

/// The data a recovery would lose, measured on the `freshness` column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataLoss {
    pub restored_newest: DateTime<Utc>,
    /// `None` when production did not answer (the loss is then counted up to now).
    pub production_newest: Option<DateTime<Utc>>,
    pub seconds: i64,
}

impl RunReport {
    /// A new attempt at restoring `point` of `backup`, for `role`.
    pub fn new(backup: &str, point: &RecoveryPoint, role: RunRole, now: DateTime<Utc>) -> Self {
        Self {
            backup: backup.to_owned(),
            recovery_point: point.id.clone(),
            recovery_point_created_at: point.created_at,
            timestamp_source: serde_json::to_value(point.timestamp_source)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default(),
            role,
            outcome: Outcome::Failed,
            restored: false,
            restore_seconds: 0.0,
            rto_seconds: 0.0,
            recovery_point_age_seconds: (now - point.created_at).num_seconds().max(0),
            data_age_seconds: None,
            data_loss: None,
            checks: Vec::new(),
            runbook: Vec::new(),
            sandbox_recipe: Vec::new(),
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

    /// Records a failure of the agent's set-up (no backup was judged).
    pub fn fail_agent(&mut self, message: String) {
        self.fail(message, true);
    }

    /// Records a failed restore, telling the agent's set-up (`agent_problem`) from the backup.
    pub fn fail(&mut self, message: String, agent_problem: bool) {
        self.fail_restore(message);
        self.agent_problem = agent_problem;
    }

    /// Records a successful restore.
    pub fn restored(&mut self, runbook: Vec<String>, took: Duration) {
        self.restored = true;
        self.runbook = runbook;
        self.restore_seconds = took.as_secs_f64();
        self.rto_seconds = self.restore_seconds;
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
}

/// A backup source that could not be read, and whether that is the agent's set-up.
#[derive(Debug, Clone)]
pub struct SourceProblem {
    pub message: String,
    pub agent_problem: bool,
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
    /// A report that could not be made (a test naming an undeclared asset).
    pub fn error(asset: &str, message: &str) -> Self {
        Self {
            asset: asset.to_owned(),
            recoverable: false,
            findings: vec![Finding::new(
                lifeboat_shared::findings::FindingKind::BackupMissing,
                asset,
                message,
            )],
            runs: Vec::new(),
        }
    }

    /// The run the verdict rests on: the first passing one of the verdict's own, else its first.
    pub fn verdict_run(&self) -> Option<&RunReport> {
        let verdict = || self.runs.iter().filter(|run| run.role == RunRole::Verdict);
        verdict()
            .find(|run| run.outcome == Outcome::Passed)
            .or_else(|| verdict().next())
            .or_else(|| self.runs.first())
    }

    /// The result sent to the coordinator for this report (through the spool).
    pub fn to_result(&self, run_id: Option<lifeboat_shared::ids::RunId>) -> lifeboat_shared::protocol::RunResult {
        let now = Utc::now();
        let main = self.verdict_run();
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

/// `check` / `posture` output (the contract of `check --output json`).
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
