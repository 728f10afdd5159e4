//! The restore-test runner: for each test of an asset, the recovery points to restore (see
//! [`test_plan`]), a sandbox for each, the restore with the real tools in the sandbox's jail, the
//! declared checks, the measurements (restore time, time to checks passed, data loss), the
//! cleanup that always happens; then [`crate::verdict`] judges.
//!
//! # Layout
//!
//! - [`test_plan`]: which points one test restores, in which order.
//! - [`attempt`]: one restore attempt, from sandbox to cleanup.
//! - [`freshness`]: the real data loss of a restored copy.
//! - [`drift`]: production's shape at each good test, and what changed since.
//! - [`psql`]: SQL through the real `psql` client; read-only production connections.
//! - [`plain_dump`]: plain SQL dumps fed to a `psql` that runs none of their meta-commands.
//! - [`runbook`]: quoting for runbook lines.
//! - [`sqlite_cli`]: SQL on a restored SQLite file through the jailed `sqlite3` shell.
//! - [`restore`]: restores per backup format, with their runbooks.
//! - [`restore_basebackup`]: base backups, verified and started in a sandbox.
//! - [`restore_restic`]: restic snapshots into a files sandbox.
//! - [`checks`]: the declared business checks.
//! - [`service`]: the `service` + `http` check.

mod attempt;
pub mod checks;
pub mod drift;
pub mod freshness;
pub mod plain_dump;
pub mod psql;
pub mod restore;
pub mod restore_basebackup;
pub mod restore_restic;
pub mod runbook;
pub mod service;
pub mod sqlite_cli;
mod test_plan;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::backups::{self, RecoveryPoint, SourceSpec};
use crate::config::{AgentConfig, AssetConfig, BackupConfig};
use crate::posture::{Assessment, AssetPosture};
use crate::sandbox::{self, SandboxRoot};
pub use crate::verdict::SourceProblem;
use crate::verdict::{self, AssetReport};

/// Older recovery points tried after the picked one fails to restore.
pub const MAX_WALK_BACK: usize = 3;

/// Progress of a run, for the `check` command's display and the session's RunProgress.
#[derive(Debug, Clone)]
pub struct Progress {
    pub asset: String,
    pub phase: String,
    pub elapsed: Duration,
    /// Bytes of the recovery point restored so far (0 at the start of a restore, all of them
    /// once it is restored); `bytes_total` is the recovery point's size.
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Runs restore tests for the assets of one agent configuration.
pub struct Runner {
    pub config: AgentConfig,
    pub sandboxes: SandboxRoot,
    /// Called with progress as runs advance.
    pub on_progress: Box<dyn Fn(Progress) + Send + Sync>,
    /// Serialises posture scans and updates of the posture state file.
    posture_state: tokio::sync::Mutex<()>,
}

/// A recovery point and the backup source it came from.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub backup: String,
    pub point: RecoveryPoint,
}

impl Runner {
    /// Creates a runner; sweeps orphaned sandboxes of a previous, killed agent first.
    pub fn new(
        config: AgentConfig,
        on_progress: Box<dyn Fn(Progress) + Send + Sync>,
    ) -> Result<Self, sandbox::SandboxError> {
        let sandboxes = SandboxRoot::open(&config.agent.work_dir.join("sandboxes"))?;
        let swept = sandbox::janitor::sweep(&sandboxes, Utc::now());
        if !swept.removed.is_empty() {
            tracing::info!(
                removed = swept.removed.len(),
                "removed orphaned sandboxes of a previous run"
            );
        }
        Ok(Self {
            config,
            sandboxes,
            on_progress,
            posture_state: tokio::sync::Mutex::new(()),
        })
    }

    fn progress(&self, asset: &str, phase: impl Into<String>, started: Instant) {
        self.progress_bytes(asset, phase, started, 0, 0);
    }

    fn progress_bytes(&self, asset: &str, phase: impl Into<String>, started: Instant, done: u64, total: u64) {
        (self.on_progress)(Progress {
            asset: asset.to_owned(),
            phase: phase.into(),
            elapsed: started.elapsed(),
            bytes_done: done,
            bytes_total: total,
        });
    }

    /// A posture scan (locations, credentials, blast radius, history), remembered for the next.
    pub async fn posture(&self) -> Assessment {
        let discovery = crate::posture::credentials::Discovery::from_config(&self.config);
        let key = crate::posture::fingerprint_key(&self.config);
        let _state = self.posture_state.lock().await;
        crate::posture::scan_and_remember(&self.config, &discovery, &key, Utc::now()).await
    }

    /// Runs a posture scan, then every declared test once; returns one report per asset (an
    /// asset without a test is reported as such: nothing proves it recovers).
    pub async fn run_all(&self) -> (Vec<AssetReport>, Assessment) {
        let started = Instant::now();
        for asset in &self.config.asset {
            self.progress(asset.name.get_ref(), "scanning locations and credentials", started);
        }
        let assessment = self.posture().await;
        let mut reports = Vec::new();
        for asset in &self.config.asset {
            reports.push(self.run_asset(asset, assessment.asset(asset.name.get_ref())).await);
        }
        (reports, assessment)
    }

    /// Carries out every `[[test]]` of `asset` and merges their reports: recoverable when every
    /// test says so (an asset without a test is reported as such: nothing proves it recovers).
    pub async fn run_asset(&self, asset: &AssetConfig, posture: Option<&AssetPosture>) -> AssetReport {
        let mut reports = Vec::new();
        for test in self.config.tests_of(asset.name.get_ref()) {
            reports.push(self.run_test(test, posture).await);
        }
        verdict::merge(reports).unwrap_or_else(|| verdict::untested(asset, posture))
    }

    fn asset(&self, name: &str) -> Option<&AssetConfig> {
        self.config.asset.iter().find(|asset| asset.name.get_ref() == name)
    }

    fn backups_of(&self, asset: &str) -> Vec<&BackupConfig> {
        self.config
            .backup
            .iter()
            .filter(|backup| backup.asset.get_ref() == asset)
            .collect()
    }

    /// Discovers the recovery points of every backup source of `asset`, newest first.
    pub async fn candidates(&self, asset: &str) -> (Vec<Candidate>, Vec<SourceProblem>) {
        let mut candidates = Vec::new();
        let mut problems = Vec::new();
        let jail = match self.sandboxes.jail_context() {
            Ok(context) => context.jail(&crate::jail::StrayLog::default()),
            Err(err) => {
                let problem = SourceProblem {
                    message: format!("cannot inspect backups: {err}"),
                    agent_problem: err.is_agent_problem(),
                };
                return (candidates, vec![problem]);
            }
        };
        for backup in self.backups_of(asset) {
            let spec = SourceSpec {
                kind: backup.kind,
                path: PathBuf::from(&backup.path.value),
                restic_password: restic_password(backup),
                jail: jail.clone(),
            };
            match backups::discover(&spec).await {
                Ok(points) => candidates.extend(points.into_iter().map(|point| Candidate {
                    backup: backup.name.get_ref().clone(),
                    point,
                })),
                Err(err) => problems.push(SourceProblem {
                    message: format!("{}: {err}", backup.name.get_ref()),
                    agent_problem: err.is_agent_problem(),
                }),
            }
        }
        candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.point.created_at));
        (candidates, problems)
    }
}

/// The recovery points a posture scan found, newest first, and the sources it could not read.
fn candidates_of(posture: &AssetPosture) -> (Vec<Candidate>, Vec<SourceProblem>) {
    let mut candidates: Vec<Candidate> = posture
        .sources
        .iter()
        .flat_map(|source| {
            source.points.iter().map(|point| Candidate {
                backup: source.backup.clone(),
                point: point.clone(),
            })
        })
        .collect();
    candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.point.created_at));
    let problems = posture
        .sources
        .iter()
        .filter_map(|source| {
            source.error.as_ref().map(|error| SourceProblem {
                message: format!("{}: {error}", source.backup),
                agent_problem: source.agent_problem,
            })
        })
        .collect();
    (candidates, problems)
}

pub(crate) fn restic_password(backup: &BackupConfig) -> Option<String> {
    if let Some(variable) = &backup.password_env {
        return std::env::var(variable).ok();
    }
    backup
        .password_file
        .as_ref()
        .and_then(|file| std::fs::read_to_string(&file.value).ok())
        .map(|password| password.trim_end_matches('\n').to_owned())
}

/// Seconds between a recovery point and `now`.
pub fn age_seconds(created_at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - created_at).num_seconds().max(0)
}
