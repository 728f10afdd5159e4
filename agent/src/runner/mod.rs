//! The restore-test runner: pick a recovery point, create a sandbox, restore it with the real
//! tools, run the declared checks, measure restore time and data age, always clean up, and turn
//! what happened into findings and a verdict (DESIGN.md §1, §4).
//!
//! When the picked recovery point does not restore, the runner walks back to older points until
//! one does (bounded), so the finding can name the newest backup that actually restores.
//!
//! # Layout
//!
//! - [`psql`]: SQL through the real `psql` client; read-only production connections.
//! - [`plain_dump`]: plain SQL dumps fed to a `psql` that runs none of their meta-commands.
//! - [`runbook`]: quoting for runbook lines.
//! - [`sqlite_cli`]: SQL on a restored SQLite file through the jailed `sqlite3` shell.
//! - [`restore`]: restores per backup format, with their runbooks.
//! - [`restore_basebackup`]: base backups, verified and started in a sandbox.
//! - [`restore_restic`]: restic snapshots into a files sandbox.
//! - [`checks`]: the declared business checks.
//! - [`service`]: the `service` + `http` check.
//! - [`report`]: findings, verdicts and the `check` output.

pub mod checks;
pub mod plain_dump;
pub mod psql;
pub mod report;
pub mod restore;
pub mod restore_basebackup;
pub mod restore_restic;
pub mod runbook;
pub mod service;
pub mod sqlite_cli;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat_shared::protocol::Outcome;

use crate::backups::{self, BackupFormat, Pick, RecoveryPoint, SourceSpec};
use crate::config::{AgentConfig, AssetConfig, AssetKind, BackupConfig, TestConfig};
use crate::posture::{Assessment, AssetPosture};
use crate::runner::checks::{CheckReport, Production, Target};
use crate::runner::report::{AssetReport, RunReport};
use crate::sandbox::{self, CleanupOutcome, DirKind, SandboxError, SandboxRoot};

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
            let name = asset.name.get_ref();
            let posture = assessment.asset(name);
            let tests: Vec<&TestConfig> = self
                .config
                .test
                .iter()
                .filter(|test| test.asset.get_ref() == name)
                .collect();
            match tests.first() {
                Some(test) => reports.push(self.run_test(test, posture).await),
                None => reports.push(report::untested(asset, posture)),
            }
        }
        (reports, assessment)
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

    /// Runs one test plan: pick, restore, check, walk back on failure; then, if what restored
    /// lies inside the asset's blast radius, the newest point of a safe source too; judge.
    pub async fn run_test(&self, test: &TestConfig, posture: Option<&AssetPosture>) -> AssetReport {
        let asset_name = test.asset.get_ref().clone();
        let Some(asset) = self.asset(&asset_name) else {
            return AssetReport::error(&asset_name, "the test names an undeclared asset");
        };
        let started = Instant::now();
        self.progress(&asset_name, "discovering recovery points", started);
        let (candidates, problems) = match posture {
            Some(posture) => candidates_of(posture),
            None => self.candidates(&asset_name).await,
        };
        let now = Utc::now();
        if candidates.is_empty() {
            let mut report = report::no_backup(asset, &self.backups_of(&asset_name), &problems);
            if let Some(posture) = posture {
                report.findings.extend(posture.findings.iter().cloned());
                report
                    .findings
                    .sort_by_key(|finding| std::cmp::Reverse(finding.severity));
            }
            return report;
        }
        let pick: Pick = test.pick.parse().unwrap_or(Pick::Latest);
        let points: Vec<RecoveryPoint> = candidates.iter().map(|candidate| candidate.point.clone()).collect();
        let picked = backups::pick(&points, &pick, now, &mut rand::rng())
            .and_then(|chosen| {
                points
                    .iter()
                    .position(|point| point.id == chosen.id && point.path == chosen.path)
            })
            .unwrap_or(0);

        let mut runs = Vec::new();
        for candidate in candidates.iter().skip(picked).take(1 + MAX_WALK_BACK) {
            let run = self.attempt(asset, test, candidate, started).await;
            // An older backup restores no better on an agent that cannot restore.
            let stop = run.restored || run.agent_problem;
            runs.push(run);
            if stop {
                break;
            }
        }
        if let Some(posture) = posture {
            let safe = posture.safe_sources();
            let safe_passed = runs
                .iter()
                .any(|run| run.outcome == Outcome::Passed && safe.contains(&run.backup));
            if !safe_passed {
                let tried: Vec<(String, String)> = runs
                    .iter()
                    .map(|run| (run.backup.clone(), run.recovery_point.clone()))
                    .collect();
                let safe_candidates = candidates.iter().filter(|candidate| {
                    safe.contains(&candidate.backup)
                        && !tried.contains(&(candidate.backup.clone(), candidate.point.id.clone()))
                });
                for candidate in safe_candidates.take(1 + MAX_WALK_BACK) {
                    self.progress(
                        &asset_name,
                        format!(
                            "trying the newest point outside the blast radius: {}",
                            candidate.point.id
                        ),
                        started,
                    );
                    let run = self.attempt(asset, test, candidate, started).await;
                    let restored = run.restored;
                    runs.push(run);
                    if restored {
                        break;
                    }
                }
            }
        }
        let report = report::judge(asset, runs, posture, now);
        if let Some(posture) = posture {
            let safe = posture.safe_sources();
            if let Some(run) = report
                .runs
                .iter()
                .filter(|run| run.outcome == Outcome::Passed && safe.contains(&run.backup))
                .max_by_key(|run| run.recovery_point_created_at)
            {
                let _state = self.posture_state.lock().await;
                crate::posture::remember_good_run(
                    &self.config.agent.work_dir,
                    &asset_name,
                    crate::posture::history::LastGood {
                        backup: run.backup.clone(),
                        recovery_point: run.recovery_point.clone(),
                        recovery_point_created_at: run.recovery_point_created_at,
                        tested_at: run.finished_at,
                        rto_seconds: run.rto_seconds,
                        runbook: run.runbook.clone(),
                    },
                );
            }
        }
        report
    }

    /// One attempt: sandbox, restore, checks, cleanup — under the test's timeout.
    async fn attempt(
        &self,
        asset: &AssetConfig,
        test: &TestConfig,
        candidate: &Candidate,
        started: Instant,
    ) -> RunReport {
        let asset_name = asset.name.get_ref().as_str();
        let run_id = lifeboat_shared::ids::RunId::new();
        let run_started_at = Utc::now();
        let size = candidate.point.size_bytes;
        self.progress_bytes(
            asset_name,
            format!(
                "restoring {} from {} ({})",
                candidate.point.id,
                candidate.backup,
                format_name(&candidate.point.format)
            ),
            started,
            0,
            size,
        );
        let timeout: Duration = test.timeout.into();
        let attempt = self.restore_and_check(asset, test, candidate, run_id, timeout);
        let mut run = match tokio::time::timeout(timeout, attempt).await {
            Ok(run) => run,
            Err(_) => {
                // The attempt's future was dropped: its sandbox handles cleaned up on drop.
                let mut run = RunReport::new(candidate, run_started_at);
                run.outcome = Outcome::TimedOut;
                run.error = Some(format!("did not finish within {}", test.timeout));
                run
            }
        };
        run.started_at = run_started_at;
        run.finished_at = Utc::now();
        let restored_bytes = if run.restored { size } else { 0 };
        self.progress_bytes(
            asset_name,
            format!("{} ({})", run.outcome.as_str(), candidate.point.id),
            started,
            restored_bytes,
            size,
        );
        run
    }

    async fn restore_and_check(
        &self,
        asset: &AssetConfig,
        test: &TestConfig,
        candidate: &Candidate,
        run_id: lifeboat_shared::ids::RunId,
        timeout: Duration,
    ) -> RunReport {
        let mut run = RunReport::new(candidate, Utc::now());
        let restore_started = Instant::now();
        let production = production(asset);
        let keep = test.keep_on_failure.map(Duration::from);
        match asset.kind {
            AssetKind::Postgres => {
                // A base backup runs only on its own major; a dump restores into the same or newer.
                let base_backup = matches!(
                    candidate.point.format,
                    BackupFormat::PgBaseBackupPlain | BackupFormat::PgBaseBackupTar
                );
                let major = match (base_backup, candidate.point.server_major) {
                    (true, Some(major)) => Ok(major),
                    _ => sandbox::postgres::pick_major(
                        candidate.point.server_major,
                        &crate::capabilities::postgres_majors(),
                    ),
                };
                let major = match major {
                    Ok(major) => major,
                    Err(err) => {
                        run.fail_agent(err.to_string());
                        return run;
                    }
                };
                let created = if base_backup {
                    self.sandboxes.create_postgres_for_base_backup(run_id, major)
                } else {
                    self.sandboxes.create_postgres(run_id, major).await
                };
                let mut sandbox = match created {
                    Ok(sandbox) => sandbox,
                    Err(err) => {
                        run.fail_sandbox(format!("cannot create a PostgreSQL {major} sandbox: {err}"), &err);
                        return run;
                    }
                };
                let mut signs = Vec::new();
                let (restored, database) = if base_backup {
                    let url = asset.url.as_ref().map(|url| url.value.as_str());
                    (
                        restore_basebackup::restore_base_backup(&candidate.point, &mut sandbox, timeout, &mut signs)
                            .await,
                        restore_basebackup::database_of(url),
                    )
                } else {
                    (
                        restore::restore_postgres(&candidate.point, &sandbox, timeout, &mut signs).await,
                        restore::RESTORED_DATABASE.to_owned(),
                    )
                };
                match restored {
                    Ok(runbook) => {
                        run.restored(runbook, restore_started.elapsed());
                        let target = Target::Postgres {
                            connection: psql::Connection::sandbox(&sandbox, &database),
                            bin_dir: sandbox.bin_dir().to_owned(),
                            url: format!(
                                "postgresql://{}@/{database}?host={}&port={}",
                                sandbox.user(),
                                sandbox.socket_dir().display(),
                                sandbox.port()
                            ),
                            database,
                            jail: sandbox.client_jail(),
                        };
                        run.data_age_seconds = data_age(asset, &target, timeout).await;
                        self.run_checks(&mut run, test, &target, production.as_ref(), timeout, restore_started)
                            .await;
                    }
                    Err(err) => run.fail_restore_error(&err),
                }
                run.record_hostility(signs, sandbox.sandbox().strays());
                let failed = run.outcome != Outcome::Passed;
                run.sandbox_kept = kept(sandbox.cleanup(failed, keep).await);
            }
            AssetKind::Sqlite | AssetKind::Files => {
                let kind = if asset.kind == AssetKind::Sqlite {
                    DirKind::Sqlite
                } else {
                    DirKind::Files
                };
                let sandbox = match self.sandboxes.create_dir(run_id, kind) {
                    Ok(sandbox) => sandbox,
                    Err(err) => {
                        run.fail_sandbox(format!("cannot create a sandbox: {err}"), &err);
                        return run;
                    }
                };
                let mut signs = Vec::new();
                let jail = sandbox.sandbox().jail();
                let restored = if candidate.point.format == BackupFormat::ResticSnapshot {
                    let password = self
                        .config
                        .backup
                        .iter()
                        .find(|backup| backup.name.get_ref() == &candidate.backup)
                        .and_then(restic_password);
                    let repository = checks::ResticRepository {
                        path: candidate.point.path.clone(),
                        password: password.clone(),
                    };
                    restore_restic::restore_restic(&candidate.point, password.as_deref(), &sandbox, timeout, &mut signs)
                        .await
                        .map(|(runbook, dir)| {
                            let target = Target::Files {
                                dir,
                                restic: Some(repository),
                                jail: jail.clone(),
                            };
                            (runbook, target)
                        })
                } else if asset.kind == AssetKind::Sqlite {
                    restore::restore_sqlite(&candidate.point, &sandbox, timeout)
                        .await
                        .map(|(runbook, path)| {
                            (
                                runbook,
                                Target::Sqlite {
                                    path,
                                    jail: jail.clone(),
                                },
                            )
                        })
                } else {
                    restore::restore_files(&candidate.point, &sandbox, timeout, &mut signs)
                        .await
                        .map(|(runbook, dir)| {
                            (
                                runbook,
                                Target::Files {
                                    dir,
                                    restic: None,
                                    jail: jail.clone(),
                                },
                            )
                        })
                };
                match restored {
                    Ok((runbook, target)) => {
                        // A copied SQLite file that is not a database only shows when opened.
                        if let Target::Sqlite { .. } = &target
                            && let Some(problem) = sqlite_unreadable(&target).await
                        {
                            run.fail_restore(problem);
                        } else {
                            run.restored(runbook, restore_started.elapsed());
                            self.run_checks(&mut run, test, &target, production.as_ref(), timeout, restore_started)
                                .await;
                        }
                    }
                    Err(err) => run.fail_restore_error(&err),
                }
                run.record_hostility(signs, sandbox.sandbox().strays());
                let failed = run.outcome != Outcome::Passed;
                run.sandbox_kept = kept(sandbox.cleanup(failed, keep).await);
            }
        }
        run
    }

    async fn run_checks(
        &self,
        run: &mut RunReport,
        test: &TestConfig,
        target: &Target,
        production: Option<&Production>,
        timeout: Duration,
        restore_started: Instant,
    ) {
        let mut reports: Vec<CheckReport> = Vec::new();
        for check in &test.check {
            reports.push(checks::run(check, target, production, timeout).await);
        }
        let passed = reports.iter().all(|report| report.passed);
        run.checks = reports;
        run.rto_seconds = restore_started.elapsed().as_secs_f64();
        run.outcome = if passed { Outcome::Passed } else { Outcome::Failed };
    }
}

/// A backup source that could not be read, and whether that is the agent's set-up.
#[derive(Debug, Clone)]
pub struct SourceProblem {
    pub message: String,
    pub agent_problem: bool,
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

/// The kept sandbox directory, if any; a failed cleanup is logged (the janitor retries it).
fn kept(outcome: Result<CleanupOutcome, SandboxError>) -> Option<String> {
    match outcome {
        Ok(outcome) => outcome.kept_dir().map(|dir| dir.display().to_string()),
        Err(err) => {
            tracing::warn!(error = %err, "sandbox cleanup failed; the janitor will retry");
            None
        }
    }
}

fn format_name(format: &BackupFormat) -> String {
    serde_json::to_value(format)
        .ok()
        .and_then(|value| {
            value
                .as_str()
                .map(str::to_owned)
                .or_else(|| value.as_object().and_then(|o| o.keys().next().cloned()))
        })
        .unwrap_or_else(|| format!("{format:?}"))
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

/// The read-only production side of an asset, when it declares one.
fn production(asset: &AssetConfig) -> Option<Production> {
    match asset.kind {
        AssetKind::Postgres => asset
            .url
            .as_ref()
            .map(|url| Production::Postgres(psql::Connection::production(&url.value))),
        AssetKind::Sqlite => asset
            .path
            .as_ref()
            .map(|path| Production::Sqlite(PathBuf::from(&path.value))),
        AssetKind::Files => None,
    }
}

async fn sqlite_unreadable(target: &Target) -> Option<String> {
    let check = crate::config::CheckConfig {
        name: "open".into(),
        sql: Some("select count(*) >= 0 from sqlite_master".into()),
        row_counts: None,
        schema: None,
        transaction: None,
        command: None,
        service: None,
        http: None,
        expect_status: None,
        expect_body: None,
        integrity: None,
        min: None,
        max: None,
        paths: Vec::new(),
    };
    let report = checks::run(&check, target, None, Duration::from_secs(60)).await;
    (!report.passed).then(|| format!("not a readable SQLite database: {}", report.message))
}

/// The real data age: now minus the newest value of the asset's `freshness` column.
async fn data_age(asset: &AssetConfig, target: &Target, timeout: Duration) -> Option<i64> {
    let freshness = asset.freshness.as_deref()?;
    let (table, column) = freshness.rsplit_once('.')?;
    let sql = format!(
        "select extract(epoch from (now() - max({})))::bigint from {}",
        psql::quote_identifier(column),
        psql::quote_identifier(table)
    );
    match target {
        Target::Postgres { connection, .. } => connection.scalar(&sql, timeout).await.ok().flatten()?.parse().ok(),
        _ => None,
    }
}

/// Seconds between a recovery point and `now`.
pub fn age_seconds(created_at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - created_at).num_seconds().max(0)
}
