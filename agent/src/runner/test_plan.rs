//! One `[[test]]` carried out: which recovery points to restore, in which order, and what the
//! agent remembers afterwards.
//!
//! 1. **Verdict**: the newest point outside the blast radius (every point when there is no
//!    posture), walking back to older safe points while they fail to restore (at most
//!    [`MAX_WALK_BACK`] more), so a failure can name the newest backup that does restore.
//! 2. **Newest**: with `pick = "latest"`, the newest point of all when it lies inside the blast
//!    radius — the fresher data one bad call could take.
//! 3. **Coverage**: with `pick = "random_within:…"`, the older point it draws (when it is not
//!    one already restored): a pass adds confidence, a failure is reported.
//!
//! An attempt that failed because of the agent's set-up stops the plan: no other backup would
//! restore better on this machine. After a passing verdict run, the run is remembered (for
//! `asset.missing`'s runbook) and production's shape is compared with the last good test's
//! (`drift.detected`, see [`super::drift`]).

use std::collections::HashSet;
use std::time::Instant;

use chrono::Utc;
use lifeboat_shared::findings::Finding;
use lifeboat_shared::protocol::Outcome;

use super::{Candidate, MAX_WALK_BACK, Runner, candidates_of};
use crate::backups::{self, RecoveryPoint};
use crate::config::{AssetConfig, Pick, TestConfig};
use crate::posture::AssetPosture;
use crate::verdict::{self, AssetReport, RunReport, RunRole};

impl Runner {
    /// Carries out one test plan and judges it.
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
        if candidates.is_empty() {
            let mut report = verdict::no_backup(asset, &self.backups_of(&asset_name), &problems);
            if let Some(posture) = posture {
                report.findings.extend(posture.findings.iter().cloned());
                report
                    .findings
                    .sort_by_key(|finding| std::cmp::Reverse(finding.severity));
            }
            return report;
        }
        let safe = posture.map(AssetPosture::safe_sources);
        let is_safe = |candidate: &Candidate| safe.as_ref().is_none_or(|safe| safe.contains(&candidate.backup));
        let mut plan = Plan::default();

        let safe_points: Vec<&Candidate> = candidates.iter().filter(|candidate| is_safe(candidate)).collect();
        for candidate in safe_points.into_iter().take(1 + MAX_WALK_BACK) {
            let restored = plan
                .attempt(self, asset, test, candidate, RunRole::Verdict, started)
                .await;
            if restored || plan.stopped {
                break;
            }
        }
        if !plan.stopped {
            if let Some(newest) = candidates.first().filter(|candidate| !is_safe(candidate))
                && test.pick == Pick::Latest
            {
                plan.attempt(self, asset, test, newest, RunRole::Newest, started).await;
            }
            if let Some(drawn) = self.coverage_pick(&candidates, test.pick, &plan) {
                plan.attempt(self, asset, test, drawn, RunRole::Coverage, started).await;
            }
        }
        let mut report = verdict::judge(asset, plan.runs, posture, Utc::now());
        if let Some(drift) = self.remember(asset, &report).await {
            report.findings.push(drift);
            report
                .findings
                .sort_by_key(|finding| std::cmp::Reverse(finding.severity));
        }
        report
    }

    /// The point a `random_within` pick draws, when it is not one already restored.
    fn coverage_pick<'a>(&self, candidates: &'a [Candidate], pick: Pick, plan: &Plan) -> Option<&'a Candidate> {
        if pick == Pick::Latest {
            return None;
        }
        let points: Vec<RecoveryPoint> = candidates.iter().map(|candidate| candidate.point.clone()).collect();
        let chosen = backups::pick(&points, &pick, Utc::now(), &mut rand::rng())?;
        candidates
            .iter()
            .find(|candidate| candidate.point.id == chosen.id && candidate.point.path == chosen.path)
            .filter(|candidate| {
                !plan
                    .tried
                    .contains(&(candidate.backup.clone(), candidate.point.id.clone()))
            })
    }

    /// After a passing verdict run: remembers it, and compares production's shape with the last
    /// good test's (the drift finding, if anything changed).
    async fn remember(&self, asset: &AssetConfig, report: &AssetReport) -> Option<Finding> {
        let asset_name = asset.name.get_ref();
        let run = report
            .runs
            .iter()
            .find(|run| run.role == RunRole::Verdict && run.outcome == Outcome::Passed)?;
        {
            let _state = self.posture_state.lock().await;
            crate::posture::remember_good_run(
                &self.config.agent.work_dir,
                asset_name,
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
        let production = super::attempt::production(asset)?;
        super::drift::watch(&self.config.agent.work_dir, asset_name, &production, DRIFT_TIMEOUT).await
    }
}

/// How long reading production's shape may take.
const DRIFT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The attempts of one test so far.
#[derive(Default)]
struct Plan {
    runs: Vec<RunReport>,
    tried: HashSet<(String, String)>,
    /// An attempt failed because of the agent's set-up: nothing more is tried.
    stopped: bool,
}

impl Plan {
    /// Restores `candidate` for `role`; returns whether it restored.
    async fn attempt(
        &mut self,
        runner: &Runner,
        asset: &AssetConfig,
        test: &TestConfig,
        candidate: &Candidate,
        role: RunRole,
        started: Instant,
    ) -> bool {
        let run = runner.attempt(asset, test, candidate, role, started).await;
        self.tried
            .insert((candidate.backup.clone(), candidate.point.id.clone()));
        self.stopped |= run.agent_problem;
        let restored = run.restored;
        self.runs.push(run);
        restored
    }
}
