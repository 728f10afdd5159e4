//! What the operator commands print: `posture` (exit 0 recoverable, 1 not),
//! `runs`, `findings`, and `run-now`. Each is a serialisable value with a text rendering.

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::Finding;
use lifeboat_shared::protocol::ResultKind;
use serde::Serialize;

use crate::config::Config;
use crate::store::{NewRun, RunRecord, Store, StoreError, TestRecord};

/// One run of a posture report.
#[derive(Debug, Clone, Serialize)]
pub struct PostureRun {
    pub backup: String,
    pub recovery_point: String,
    pub outcome: String,
    pub restore_seconds: f64,
    pub rto_seconds: f64,
    pub recovery_point_age_seconds: i64,
    pub finished_at: DateTime<Utc>,
}

/// One asset of a posture report.
#[derive(Debug, Clone, Serialize)]
pub struct PostureAsset {
    pub environment: String,
    pub asset: String,
    pub recoverable: bool,
    pub since: DateTime<Utc>,
    pub findings: Vec<Finding>,
    pub runs: Vec<PostureRun>,
}

/// `posture` output.
#[derive(Debug, Clone, Serialize)]
pub struct PostureReport {
    pub recoverable: bool,
    pub assets: Vec<PostureAsset>,
}

impl PostureReport {
    pub fn render(&self) -> String {
        let mut text = String::new();
        for asset in &self.assets {
            text.push_str(&format!(
                "{}/{}: {} (since {})\n",
                asset.environment,
                asset.asset,
                if asset.recoverable {
                    "RECOVERABLE"
                } else {
                    "NOT RECOVERABLE"
                },
                asset.since.format("%Y-%m-%d %H:%M UTC")
            ));
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
        if self.assets.is_empty() {
            text.push_str("No asset has a verdict yet.\n");
        }
        text.push_str(if self.recoverable {
            "\nEvery asset is recoverable.\n"
        } else {
            "\nNOT every asset is recoverable.\n"
        });
        text
    }
}

/// The posture of every asset (or one environment's): verdicts with their reasons and the
/// latest restore run of each.
pub async fn posture(store: &Store, environment: Option<&str>) -> Result<PostureReport, StoreError> {
    let verdicts = store.verdicts(environment).await?;
    let mut assets = Vec::new();
    for verdict in verdicts {
        let latest = store
            .latest_result(&verdict.environment, &verdict.asset, ResultKind::Restore)
            .await?;
        let runs = latest
            .map(|stored| {
                let result = stored.result;
                vec![PostureRun {
                    backup: result.backup,
                    recovery_point: result.recovery_point,
                    outcome: result.outcome.as_str().to_owned(),
                    restore_seconds: result.restore_seconds,
                    rto_seconds: result.rto_seconds,
                    recovery_point_age_seconds: result.recovery_point_age_seconds,
                    finished_at: result.finished_at,
                }]
            })
            .unwrap_or_default();
        assets.push(PostureAsset {
            environment: verdict.environment,
            asset: verdict.asset,
            recoverable: verdict.recoverable,
            since: verdict.since,
            findings: verdict.reasons,
            runs,
        });
    }
    Ok(PostureReport {
        recoverable: !assets.is_empty() && assets.iter().all(|asset| asset.recoverable),
        assets,
    })
}

/// Text table of runs.
pub fn runs_table(runs: &[RunRecord]) -> String {
    let mut text = format!(
        "{:<38} {:<20} {:<24} {:<10} {:<8} {}\n",
        "RUN", "DUE", "ASSET", "STATE", "TRIES", "OUTCOME"
    );
    for run in runs {
        text.push_str(&format!(
            "{:<38} {:<20} {:<24} {:<10} {:<8} {}\n",
            run.run_id,
            run.due_at.format("%Y-%m-%d %H:%M:%S"),
            format!("{}/{}", run.environment, run.asset),
            run.state,
            format!("{}/{}", run.attempts, run.max_attempts),
            run.outcome.as_deref().or(run.last_error.as_deref()).unwrap_or("")
        ));
    }
    text
}

/// One open finding, with the asset it belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct OpenFinding {
    pub environment: String,
    pub asset: String,
    #[serde(flatten)]
    pub finding: Finding,
}

/// Open findings: the reasons of every verdict (worst first).
pub async fn findings(store: &Store, environment: Option<&str>) -> Result<Vec<OpenFinding>, StoreError> {
    let mut open: Vec<OpenFinding> = store
        .verdicts(environment)
        .await?
        .into_iter()
        .flat_map(|verdict| {
            let (environment, asset) = (verdict.environment, verdict.asset);
            verdict.reasons.into_iter().map(move |finding| OpenFinding {
                environment: environment.clone(),
                asset: asset.clone(),
                finding,
            })
        })
        .collect();
    open.sort_by_key(|open| std::cmp::Reverse(open.finding.severity));
    Ok(open)
}

pub fn findings_text(findings: &[OpenFinding]) -> String {
    let mut text = String::new();
    for open in findings {
        text.push_str(&format!(
            "{} {}/{} {}: {}\n",
            open.finding.severity.as_str().to_uppercase(),
            open.environment,
            open.asset,
            open.finding.kind,
            open.finding.message
        ));
    }
    if findings.is_empty() {
        text.push_str("No open findings.\n");
    }
    text
}

/// Errors of `run-now`.
#[derive(Debug, thiserror::Error)]
pub enum RunNowError {
    #[error("no test of an asset named {0:?} is scheduled (an agent declares it in its inventory)")]
    Unknown(String),
    #[error("asset {asset:?} is tested in several environments ({environments}): pass --environment")]
    Ambiguous { asset: String, environments: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A central override of a test.
#[derive(Debug, Clone, Default)]
pub struct ScheduleOverride {
    pub cron: Option<String>,
    pub timeout_seconds: Option<i64>,
    pub paused: bool,
}

/// Finds the one test of `asset` (in `environment` when given).
async fn find_test(store: &Store, asset: &str, environment: Option<&str>) -> Result<TestRecord, RunNowError> {
    let tests: Vec<TestRecord> = store
        .tests()
        .await?
        .into_iter()
        .filter(|test| test.asset == asset && environment.is_none_or(|environment| test.environment == environment))
        .collect();
    match tests.as_slice() {
        [] => Err(RunNowError::Unknown(asset.to_owned())),
        [test] => Ok(test.clone()),
        many => Err(RunNowError::Ambiguous {
            asset: asset.to_owned(),
            environments: many
                .iter()
                .map(|test| test.environment.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Sets the central override of an asset's test; returns the test as it now is.
pub async fn set_schedule(
    store: &Store,
    asset: &str,
    environment: Option<&str>,
    change: ScheduleOverride,
) -> Result<TestRecord, RunNowError> {
    let test = find_test(store, asset, environment).await?;
    store
        .set_test_override(
            &test.environment,
            &test.asset,
            change.cron.as_deref(),
            change.timeout_seconds,
            change.paused,
        )
        .await?;
    find_test(store, &test.asset, Some(&test.environment)).await
}

/// Queues a run of `asset` due now; the scheduler leases it to a connected agent.
pub async fn run_now(
    store: &Store,
    config: &Config,
    asset: &str,
    environment: Option<&str>,
    now: DateTime<Utc>,
) -> Result<NewRun, RunNowError> {
    let test = find_test(store, asset, environment).await?;
    let deadline = chrono::Duration::from_std(config.schedule.start_deadline.into()).unwrap_or_default();
    let run = NewRun {
        environment: test.environment.clone(),
        asset: test.asset.clone(),
        due_at: now,
        start_deadline: now + deadline,
        timeout_seconds: test.effective_timeout_seconds(),
        max_attempts: i64::from(config.schedule.max_attempts.max(1)),
        manual: true,
    };
    store
        .materialise_runs(&test.environment, &test.asset, std::slice::from_ref(&run), None, now)
        .await?;
    Ok(run)
}
