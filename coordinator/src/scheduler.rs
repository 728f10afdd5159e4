//! The scheduler (`[schedule]` in `docs/coordinator-config.md`): tests come from the agents'
//! inventories (overridable centrally); each has a 5-field cron in UTC plus a fixed per-test
//! jitter; due runs are materialised idempotently (unique test + due time), leased to a connected
//! agent of the asset's environment that tests that asset, and re-queued when the lease expires or
//! the agent goes away, within a bounded number of attempts. A run not started before its deadline
//! is missed; the dead-man's switch in [`crate::posture`] turns that into `test.overdue`.
//!
//! One test's, environment's or agent's failure never blocks another's: each step of a tick
//! runs per test (materialising) and per agent (leasing), and a failure is logged and skipped.
//! The runs an agent's tests start are bounded by `limits.runs_per_minute`; a due run beyond it
//! waits for the next tick.
//!
//! Everything takes `now` as an argument, so the tests drive the clock.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_proto::v1 as pb;
use lifeboat_shared::ids::AgentId;
use lifeboat_shared::protocol::Inventory;
use tokio_util::sync::CancellationToken;

use crate::config::ScheduleConfig;
use crate::quota::RateQuota;
use crate::sessions::SessionRegistry;
use crate::store::{LeaseRequest, NewRun, RunRecord, Store, StoreError, TestRecord, TestSpec};

/// How often the scheduler looks for due runs and idle agents.
pub const TICK: Duration = Duration::from_secs(1);
/// How often tests are refreshed from the inventories.
const SYNC_EVERY: Duration = Duration::from_secs(3);
/// Least time between two warnings about runs deferred by the quota.
const QUOTA_WARNING_EVERY: chrono::Duration = chrono::Duration::minutes(1);

/// Parses a 5-field cron expression (UTC). Six or seven fields are refused: seconds and years
/// make user schedules ambiguous.
pub fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    let fields = expression.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day month weekday), got {fields}: {expression:?}"
        ));
    }
    croner::Cron::from_str(expression).map_err(|err| format!("{expression:?}: {err}"))
}

/// The fixed start offset of a test within the jitter window: the same for every run of the
/// test (so its interval stays regular), different between tests.
pub fn jitter_offset(environment: &str, asset: &str, window: Duration) -> Duration {
    let window_ms = window.as_millis() as u64;
    if window_ms == 0 {
        return Duration::ZERO;
    }
    let digest = sha2::Digest::finalize(sha2::Digest::chain_update(
        sha2::Sha256::default(),
        format!("{environment}\n{asset}").as_bytes(),
    ));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    Duration::from_millis(u64::from_be_bytes(bytes) % window_ms)
}

/// The first due time (cron time + offset) strictly after `after`.
pub fn next_due(cron: &croner::Cron, offset: Duration, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset = chrono::Duration::from_std(offset).ok()?;
    let cron_time = cron.find_next_occurrence(&(after - offset), false).ok()?;
    Some(cron_time + offset)
}

/// What to materialise for one test at `now`: the newest due time that has passed (older ones
/// are skipped, not run late in a burst after a coordinator outage) and the next one to wait for.
pub fn plan(
    test: &TestRecord,
    now: DateTime<Utc>,
    config: &ScheduleConfig,
    max_attempts: i64,
) -> Result<(Option<NewRun>, Option<DateTime<Utc>>), String> {
    let cron = parse_cron(test.effective_schedule())?;
    let offset = jitter_offset(&test.environment, &test.asset, config.jitter.into());
    let Some(mut due) = test.next_due_at else {
        // First sight of the test (or a new schedule): wait for its next time.
        return Ok((None, next_due(&cron, offset, now)));
    };
    if due > now {
        return Ok((None, Some(due)));
    }
    // Skip to the newest due time that has passed.
    while let Some(next) = next_due(&cron, offset, due) {
        if next > now {
            let start_deadline = chrono::Duration::from_std(config.start_deadline.into())
                .ok()
                .and_then(|deadline| due.checked_add_signed(deadline))
                .ok_or_else(|| format!("start_deadline {} overflows the calendar", config.start_deadline))?;
            let run = NewRun {
                environment: test.environment.clone(),
                asset: test.asset.clone(),
                due_at: due,
                start_deadline,
                timeout_seconds: test.effective_timeout_seconds(),
                max_attempts,
                manual: false,
            };
            return Ok((Some(run), Some(next)));
        }
        due = next;
    }
    Ok((None, None))
}

/// The tests the inventories declare, one per (environment, asset), each with the agent that
/// defines it: the first agent (in the given order, by id from the store) that declares a test
/// of an asset.
pub fn specs_from_inventories(inventories: &[(AgentId, String, Inventory)]) -> Vec<(AgentId, TestSpec)> {
    // Stored inventories may predate the protocol's bounds: a number that does not fit becomes
    // one that [`TestSpec::check`] refuses, never a wrapped negative.
    let seconds = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let mut specs: BTreeMap<(String, String), (AgentId, TestSpec)> = BTreeMap::new();
    for (agent, environment, inventory) in inventories {
        for test in &inventory.tests {
            let asset = inventory.assets.iter().find(|asset| asset.name == test.asset);
            specs
                .entry((environment.clone(), test.asset.clone()))
                .or_insert_with(|| {
                    let spec = TestSpec {
                        environment: environment.clone(),
                        asset: test.asset.clone(),
                        schedule: test.schedule.clone(),
                        timeout_seconds: seconds(test.timeout_seconds),
                        interval_seconds: asset
                            .map(|asset| seconds(asset.test_interval_seconds))
                            .filter(|seconds| *seconds > 0)
                            .unwrap_or(24 * 3600),
                        rpo_seconds: asset.map_or(24 * 3600, |asset| seconds(asset.rpo_seconds)),
                        rto_seconds: asset.map_or(3600, |asset| seconds(asset.rto_seconds)),
                    };
                    (*agent, spec)
                });
        }
    }
    specs.into_values().collect()
}

/// What one scheduler tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub materialised: u64,
    pub leased: Vec<RunRecord>,
    pub expired: u64,
    pub missed: u64,
    /// Due runs left for a later tick: their agent's `runs_per_minute` was used up.
    pub deferred: u64,
    /// Tests and agents whose step failed this tick (logged; the others went on).
    pub failed: u64,
}

/// The scheduler of one coordinator replica.
pub struct Scheduler {
    pub store: Store,
    pub sessions: SessionRegistry,
    pub config: ScheduleConfig,
    /// Agent → (environment, assets it tests), from the inventories.
    capable: HashMap<AgentId, (String, Vec<String>)>,
    /// (environment, asset) → the agent whose inventory defines the test, for its run quota.
    /// Tests no current inventory defines have no quota: no agent controls them any more.
    defined_by: HashMap<(String, String), AgentId>,
    run_quota: RateQuota<AgentId>,
    last_sync: Option<DateTime<Utc>>,
    last_quota_warning: Option<DateTime<Utc>>,
}

impl Scheduler {
    /// A scheduler with the default run quota (`limits.runs_per_minute`).
    pub fn new(store: Store, sessions: SessionRegistry, config: ScheduleConfig) -> Self {
        Self {
            store,
            sessions,
            config,
            capable: HashMap::new(),
            defined_by: HashMap::new(),
            run_quota: RateQuota::new(crate::config::LimitsConfig::default().runs_per_minute),
            last_sync: None,
            last_quota_warning: None,
        }
    }

    /// Sets how many runs the tests of one agent may start per minute.
    pub fn with_runs_per_minute(mut self, per_minute: u32) -> Self {
        self.run_quota = RateQuota::new(per_minute);
        self
    }

    /// Refreshes tests and capabilities from the stored inventories. A test that does not
    /// parse or is out of range is logged and left out; the others are refreshed.
    pub async fn sync(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let stored = self.store.inventories().await?;
        let mut inventories = Vec::new();
        self.capable.clear();
        for (agent, environment, json) in stored {
            let Ok(inventory) = serde_json::from_value::<Inventory>(json) else {
                tracing::warn!(%agent, "stored inventory does not parse; ignoring it");
                continue;
            };
            let assets = inventory.tests.iter().map(|test| test.asset.clone()).collect();
            self.capable.insert(agent, (environment.to_string(), assets));
            inventories.push((agent, environment.to_string(), inventory));
        }
        let mut specs = Vec::new();
        self.defined_by.clear();
        for (agent, spec) in specs_from_inventories(&inventories) {
            let checked = parse_cron(&spec.schedule)
                .map(|_| ())
                .and_then(|()| spec.check().map_err(|err| err.to_string()));
            if let Err(err) = checked {
                tracing::warn!(environment = %spec.environment, asset = %spec.asset, %agent, error = %err, "test ignored");
                continue;
            }
            self.defined_by
                .insert((spec.environment.clone(), spec.asset.clone()), agent);
            specs.push(spec);
        }
        self.store.sync_tests(&specs, now).await?;
        self.last_sync = Some(now);
        Ok(())
    }

    /// One pass: refresh (every few seconds), materialise due runs, expire leases and miss
    /// late runs, lease due runs to idle agents connected here and send them their assignment.
    /// Fails only when the tests cannot be read at all; every other failure is per test or per
    /// agent, logged and counted in [`TickReport::failed`].
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<TickReport, StoreError> {
        let mut report = TickReport::default();
        let sync_due = self
            .last_sync
            .is_none_or(|last| (now - last).to_std().unwrap_or_default() >= SYNC_EVERY || now < last);
        if sync_due && let Err(err) = self.sync(now).await {
            report.failed += 1;
            tracing::warn!(error = %err, "cannot refresh the tests from the inventories; scheduling the known ones");
        }
        let max_attempts = i64::from(self.config.max_attempts.max(1));
        for test in self.store.tests().await? {
            if test.paused {
                continue;
            }
            if let Err(err) = self.materialise(&test, now, max_attempts, &mut report).await {
                report.failed += 1;
                tracing::warn!(environment = %test.environment, asset = %test.asset, error = %err, "cannot schedule a test; the others go on");
            }
        }
        self.warn_about_deferred(&report, now);
        let grace = chrono::Duration::from_std(self.config.lease_grace.into()).unwrap_or_default();
        let gone_before = now.checked_sub_signed(grace).unwrap_or(now);
        match self.store.expire_runs(now, gone_before).await {
            Ok((expired, missed)) => {
                report.expired = expired;
                report.missed = missed;
            }
            Err(err) => {
                report.failed += 1;
                tracing::warn!(error = %err, "cannot expire leases or miss late runs; retrying next tick");
            }
        }
        for agent in self.sessions.connected() {
            if let Err(err) = self.lease_to(agent, grace.num_milliseconds(), now, &mut report).await {
                report.failed += 1;
                tracing::warn!(%agent, error = %err, "cannot lease a run to an agent; the others go on");
            }
        }
        Ok(report)
    }

    /// Materialises the due run of one test, within its agent's run quota.
    async fn materialise(
        &mut self,
        test: &TestRecord,
        now: DateTime<Utc>,
        max_attempts: i64,
        report: &mut TickReport,
    ) -> Result<(), String> {
        let (run, next) = plan(test, now, &self.config, max_attempts)?;
        if run.is_none() && next == test.next_due_at {
            return Ok(());
        }
        if run.is_some()
            && let Some(agent) = self.defined_by.get(&(test.environment.clone(), test.asset.clone()))
            && self.run_quota.take(agent, now).is_err()
        {
            // Left as it is: the next tick plans the same run again.
            report.deferred += 1;
            return Ok(());
        }
        let runs: Vec<NewRun> = run.into_iter().collect();
        report.materialised += self
            .store
            .materialise_runs(&test.environment, &test.asset, &runs, next, now)
            .await
            .map_err(|err| err.to_string())?;
        Ok(())
    }

    fn warn_about_deferred(&mut self, report: &TickReport, now: DateTime<Utc>) {
        if report.deferred == 0
            || self
                .last_quota_warning
                .is_some_and(|last| now - last < QUOTA_WARNING_EVERY && now >= last)
        {
            return;
        }
        self.last_quota_warning = Some(now);
        tracing::warn!(
            deferred = report.deferred,
            runs_per_minute = self.run_quota.per_minute(),
            "due runs wait: their agent's tests start more runs than limits.runs_per_minute"
        );
    }

    /// Leases a due run to `agent` if it is idle, and sends it the assignment.
    async fn lease_to(
        &self,
        agent: AgentId,
        grace_millis: i64,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), StoreError> {
        let Some((environment, assets)) = self.capable.get(&agent) else {
            return Ok(());
        };
        if assets.is_empty() {
            return Ok(());
        }
        let request = LeaseRequest {
            agent,
            instance: self.sessions.instance(),
            environment,
            assets,
            grace_millis,
        };
        for run in self.store.lease_runs(&request, now, 1).await? {
            if self.sessions.send(agent, assignment(&run, now)) {
                tracing::info!(run_id = %run.run_id, asset = %run.asset, %agent, "run leased");
                report.leased.push(run);
            } else {
                self.store.release_run(run.run_id, now).await?;
            }
        }
        Ok(())
    }

    /// Runs ticks until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(err) = self.tick(Utc::now()).await {
                tracing::warn!(error = %err, "scheduler tick failed; retrying next tick");
            }
        }
    }
}

/// The assignment message for a leased run.
pub fn assignment(run: &RunRecord, now: DateTime<Utc>) -> pb::CoordinatorMessage {
    // A stored timeout is bounded; one written by an older coordinator may not be.
    let deadline = chrono::Duration::try_seconds(run.timeout_seconds)
        .and_then(|timeout| now.checked_add_signed(timeout))
        .unwrap_or(now);
    pb::CoordinatorMessage {
        body: Some(pb::coordinator_message::Body::Assignment(pb::RunAssignment {
            run_id: run.run_id.to_string(),
            asset: run.asset.clone(),
            deadline: Some(prost_types_timestamp(deadline)),
            pick: String::new(),
        })),
    }
}

fn prost_types_timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    fn test(schedule: &str, next_due_at: Option<DateTime<Utc>>) -> TestRecord {
        TestRecord {
            environment: "prod".into(),
            asset: "db".into(),
            schedule: schedule.into(),
            timeout_seconds: 600,
            interval_seconds: 86_400,
            rpo_seconds: 86_400,
            rto_seconds: 1800,
            override_schedule: None,
            override_timeout_seconds: None,
            paused: false,
            next_due_at,
            updated_at: at("2026-11-25T00:00:00Z"),
        }
    }

    #[test]
    fn only_five_field_crons_are_accepted() {
        assert!(parse_cron("0 */6 * * *").is_ok());
        assert!(parse_cron("0 0 */6 * * *").unwrap_err().contains("5 fields"));
        assert!(parse_cron("61 * * * *").is_err());
    }

    #[test]
    fn jitter_is_fixed_per_test_bounded_and_spread() {
        let window = Duration::from_secs(300);
        let a = jitter_offset("prod", "db", window);
        assert_eq!(a, jitter_offset("prod", "db", window));
        assert!(a < window);
        let offsets: std::collections::BTreeSet<u128> = (0..50)
            .map(|i| jitter_offset("prod", &format!("db-{i}"), window).as_millis())
            .collect();
        assert!(offsets.len() > 45, "offsets collide: {offsets:?}");
        assert_eq!(jitter_offset("prod", "db", Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn due_runs_come_at_cron_time_plus_offset_with_a_deadline_and_no_burst_after_an_outage() {
        let config = ScheduleConfig {
            jitter: lifeboat_shared::durations::HumanDuration::from_secs(0),
            start_deadline: lifeboat_shared::durations::HumanDuration::from_secs(3600),
            max_attempts: 3,
            lease_grace: lifeboat_shared::durations::HumanDuration::from_secs(60),
        };
        // First sight: nothing due yet, the next due time is the next cron time.
        let (run, next) = plan(&test("0 */6 * * *", None), at("2026-11-25T01:30:00Z"), &config, 3).expect("plan");
        assert!(run.is_none());
        assert_eq!(next, Some(at("2026-11-25T06:00:00Z")));
        // Before it: still waiting.
        let (run, _) = plan(&test("0 */6 * * *", next), at("2026-11-25T05:59:59Z"), &config, 3).expect("plan");
        assert!(run.is_none());
        // At it: the run, with its deadline, and the next due time.
        let (run, next2) = plan(&test("0 */6 * * *", next), at("2026-11-25T06:00:00Z"), &config, 3).expect("plan");
        let run = run.expect("due");
        assert_eq!(run.due_at, at("2026-11-25T06:00:00Z"));
        assert_eq!(run.start_deadline, at("2026-11-25T07:00:00Z"));
        assert_eq!(next2, Some(at("2026-11-25T12:00:00Z")));
        // After a day-long outage: one run, the newest missed time; not four.
        let (run, next3) = plan(&test("0 */6 * * *", next), at("2026-11-26T07:00:00Z"), &config, 3).expect("plan");
        assert_eq!(run.expect("due").due_at, at("2026-11-26T06:00:00Z"));
        assert_eq!(next3, Some(at("2026-11-26T12:00:00Z")));
        // With jitter, every due time is shifted by the same offset.
        let jittered = ScheduleConfig {
            jitter: lifeboat_shared::durations::HumanDuration::from_secs(600),
            ..config
        };
        let offset = jitter_offset("prod", "db", Duration::from_secs(600));
        let (_, first) = plan(&test("0 3 * * *", None), at("2026-11-25T01:00:00Z"), &jittered, 3).expect("plan");
        let first = first.expect("next");
        assert_eq!(
            first - at("2026-11-25T03:00:00Z"),
            chrono::Duration::from_std(offset).expect("offset")
        );
        let (run, second) = plan(&test("0 3 * * *", Some(first)), first, &jittered, 3).expect("plan");
        assert_eq!(run.expect("due").due_at, first);
        assert_eq!(second.expect("next") - first, chrono::Duration::days(1));
    }
}
