//! One restore attempt: a sandbox for the recovery point, the restore with the real tools in the
//! sandbox's jail, the declared checks, the measurements (restore time, time to checks passed,
//! data loss), and the cleanup that always happens — under the test's timeout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use lifeboat_shared::protocol::Outcome;

use super::checks::{self, Production, Target};
use super::{Candidate, Runner, freshness, psql, restic_password, restore, restore_basebackup, restore_restic};
use crate::backups::BackupFormat;
use crate::config::{AssetConfig, AssetKind, TestConfig};
use crate::sandbox::{self, CleanupOutcome, DirKind, SandboxError};
use crate::verdict::{CheckReport, RunReport, RunRole};

impl Runner {
    /// One attempt: sandbox, restore, checks, cleanup — under the test's timeout.
    pub(super) async fn attempt(
        &self,
        asset: &AssetConfig,
        test: &TestConfig,
        candidate: &Candidate,
        role: RunRole,
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
        let attempt = self.restore_and_check(asset, test, candidate, role, run_id, timeout);
        let mut run = match tokio::time::timeout(timeout, attempt).await {
            Ok(run) => run,
            Err(_) => {
                // The attempt's future was dropped: its sandbox handles cleaned up on drop.
                let mut run = RunReport::new(&candidate.backup, &candidate.point, role, run_started_at);
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
        role: RunRole,
        run_id: lifeboat_shared::ids::RunId,
        timeout: Duration,
    ) -> RunReport {
        let mut run = RunReport::new(&candidate.backup, &candidate.point, role, Utc::now());
        let step = Step {
            asset,
            test,
            candidate,
            run_id,
            timeout,
            production: production(asset),
            started: Instant::now(),
        };
        match asset.kind {
            AssetKind::Postgres => self.postgres_attempt(&step, &mut run).await,
            AssetKind::Sqlite | AssetKind::Files => self.directory_attempt(&step, &mut run).await,
        }
        run
    }

    /// A PostgreSQL sandbox for the point (a fresh cluster for a dump, the restored cluster for
    /// a base backup), the restore, the data loss, the checks.
    async fn postgres_attempt(&self, step: &Step<'_>, run: &mut RunReport) {
        let point = &step.candidate.point;
        // A base backup runs only on its own major; a dump restores into the same or newer.
        let base_backup = matches!(
            point.format,
            BackupFormat::PgBaseBackupPlain | BackupFormat::PgBaseBackupTar
        );
        let major = match (base_backup, point.server_major) {
            (true, Some(major)) => Ok(major),
            _ => sandbox::postgres::pick_major(point.server_major, &crate::capabilities::postgres_majors()),
        };
        let major = match major {
            Ok(major) => major,
            Err(err) => return run.fail_agent(err.to_string()),
        };
        let created = if base_backup {
            self.sandboxes.create_postgres_for_base_backup(step.run_id, major)
        } else {
            self.sandboxes.create_postgres(step.run_id, major).await
        };
        let mut sandbox = match created {
            Ok(sandbox) => sandbox,
            Err(err) => {
                return run.fail(
                    format!("cannot create a PostgreSQL {major} sandbox: {err}"),
                    err.is_agent_problem(),
                );
            }
        };
        let mut signs = Vec::new();
        let (restored, database) = if base_backup {
            let url = step.asset.url.as_ref().map(|url| url.value.as_str());
            (
                restore_basebackup::restore_base_backup(point, &mut sandbox, step.timeout, &mut signs).await,
                restore_basebackup::database_of(url),
            )
        } else {
            (
                restore::restore_postgres(point, &sandbox, step.timeout, &mut signs).await,
                restore::RESTORED_DATABASE.to_owned(),
            )
        };
        match restored {
            Ok(runbook) => {
                run.restored(runbook, step.started.elapsed());
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
                freshness::measure(run, step.asset, &target, step.production.as_ref(), step.timeout).await;
                self.run_checks(run, step, &target).await;
            }
            Err(err) => run.fail(err.to_string(), err.is_agent_problem()),
        }
        run.record_hostility(signs, sandbox.sandbox().strays());
        let failed = run.outcome != Outcome::Passed;
        run.sandbox_kept = kept(sandbox.cleanup(failed, step.keep()).await);
    }

    /// A directory sandbox for a SQLite copy, a files snapshot or archive, or a restic snapshot.
    async fn directory_attempt(&self, step: &Step<'_>, run: &mut RunReport) {
        let kind = if step.asset.kind == AssetKind::Sqlite {
            DirKind::Sqlite
        } else {
            DirKind::Files
        };
        let sandbox = match self.sandboxes.create_dir(step.run_id, kind) {
            Ok(sandbox) => sandbox,
            Err(err) => return run.fail(format!("cannot create a sandbox: {err}"), err.is_agent_problem()),
        };
        let mut signs = Vec::new();
        match self.restore_into_directory(step, &sandbox, &mut signs).await {
            Ok((runbook, target)) => {
                // A copied SQLite file that is not a database only shows when opened.
                if let Target::Sqlite { .. } = &target
                    && let Some(problem) = sqlite_unreadable(&target).await
                {
                    run.fail_restore(problem);
                } else {
                    run.restored(runbook, step.started.elapsed());
                    freshness::measure(run, step.asset, &target, step.production.as_ref(), step.timeout).await;
                    self.run_checks(run, step, &target).await;
                }
            }
            Err(err) => run.fail(err.to_string(), err.is_agent_problem()),
        }
        run.record_hostility(signs, sandbox.sandbox().strays());
        let failed = run.outcome != Outcome::Passed;
        run.sandbox_kept = kept(sandbox.cleanup(failed, step.keep()).await);
    }

    /// Restores the point into a directory sandbox; returns the runbook and what checks target.
    async fn restore_into_directory(
        &self,
        step: &Step<'_>,
        sandbox: &sandbox::DirSandbox,
        signs: &mut Vec<String>,
    ) -> Result<(Vec<String>, Target), restore::RestoreError> {
        let point = &step.candidate.point;
        let jail = sandbox.sandbox().jail();
        if point.format == BackupFormat::ResticSnapshot {
            let password = self
                .config
                .backup
                .iter()
                .find(|backup| backup.name.get_ref() == &step.candidate.backup)
                .and_then(restic_password);
            let repository = checks::ResticRepository {
                path: point.path.clone(),
                password: password.clone(),
            };
            let (runbook, dir) =
                restore_restic::restore_restic(point, password.as_deref(), sandbox, step.timeout, signs).await?;
            return Ok((
                runbook,
                Target::Files {
                    dir,
                    restic: Some(repository),
                    jail,
                },
            ));
        }
        if step.asset.kind == AssetKind::Sqlite {
            let (runbook, path) = restore::restore_sqlite(point, sandbox, step.timeout).await?;
            return Ok((runbook, Target::Sqlite { path, jail }));
        }
        let (runbook, dir) = restore::restore_files(point, sandbox, step.timeout, signs).await?;
        Ok((
            runbook,
            Target::Files {
                dir,
                restic: None,
                jail,
            },
        ))
    }

    async fn run_checks(&self, run: &mut RunReport, step: &Step<'_>, target: &Target) {
        let mut reports: Vec<CheckReport> = Vec::new();
        for check in &step.test.check {
            reports.push(checks::run(check, target, step.production.as_ref(), step.timeout).await);
        }
        let passed = reports.iter().all(|report| report.passed);
        run.checks = reports;
        run.rto_seconds = step.started.elapsed().as_secs_f64();
        run.outcome = if passed { Outcome::Passed } else { Outcome::Failed };
    }
}

/// What one attempt works with.
struct Step<'a> {
    asset: &'a AssetConfig,
    test: &'a TestConfig,
    candidate: &'a Candidate,
    run_id: lifeboat_shared::ids::RunId,
    timeout: Duration,
    /// The read-only production side, for comparisons.
    production: Option<Production>,
    /// When the attempt started: the RTO is measured from here.
    started: Instant,
}

impl Step<'_> {
    fn keep(&self) -> Option<Duration> {
        self.test.keep_on_failure.map(Duration::from)
    }
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

/// The read-only production side of an asset, when it declares one.
pub(super) fn production(asset: &AssetConfig) -> Option<Production> {
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

/// Why a copied SQLite file is not a readable database, if it is not.
async fn sqlite_unreadable(target: &Target) -> Option<String> {
    let check = crate::config::CheckSpec {
        name: "open".into(),
        kind: crate::config::CheckKind::Sql {
            sql: "select count(*) >= 0 from sqlite_master".into(),
            min: None,
            max: None,
        },
        paths: Vec::new(),
    };
    let report = checks::run(&check, target, None, Duration::from_secs(60)).await;
    (!report.passed).then(|| format!("not a readable SQLite database: {}", report.message))
}
