//! Scheduled drills: the tests the coordinator schedules (from the agents' inventories, with
//! central overrides) and their runs — materialised once per (test, due time), leased to one
//! connected agent at a time, re-queued when the lease expires or the agent goes away, bounded by
//! a number of attempts, missed when not started before their deadline.
//!
//! Several coordinators may share one PostgreSQL: a run is leased with `FOR UPDATE SKIP LOCKED`,
//! so two replicas never lease the same run, and materialising is an idempotent insert on the
//! unique (environment, asset, due time).

use chrono::{DateTime, Utc};
use lifeboat_shared::ids::{AgentId, RunId};
use lifeboat_shared::protocol::{MAX_OBJECTIVE_SECONDS, MAX_TEST_TIMEOUT_SECONDS};
use serde::Serialize;
use uuid::Uuid;

use super::{Engine, Store, StoreError, from_millis, from_optional_millis, to_millis};

/// What the inventories say about one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSpec {
    pub environment: String,
    pub asset: String,
    pub schedule: String,
    pub timeout_seconds: i64,
    pub interval_seconds: i64,
    pub rpo_seconds: i64,
    pub rto_seconds: i64,
}

/// A scheduled test, with its central overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestRecord {
    pub environment: String,
    pub asset: String,
    pub schedule: String,
    pub timeout_seconds: i64,
    pub interval_seconds: i64,
    pub rpo_seconds: i64,
    pub rto_seconds: i64,
    pub override_schedule: Option<String>,
    pub override_timeout_seconds: Option<i64>,
    pub paused: bool,
    pub next_due_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl TestRecord {
    /// The schedule in force: the override, else the inventory's.
    pub fn effective_schedule(&self) -> &str {
        self.override_schedule.as_deref().unwrap_or(&self.schedule)
    }

    pub fn effective_timeout_seconds(&self) -> i64 {
        self.override_timeout_seconds.unwrap_or(self.timeout_seconds)
    }
}

/// A run to materialise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub environment: String,
    pub asset: String,
    pub due_at: DateTime<Utc>,
    pub start_deadline: DateTime<Utc>,
    pub timeout_seconds: i64,
    pub max_attempts: i64,
    pub manual: bool,
}

/// Who asks for a lease: an agent connected to a replica, the environment it belongs to, the
/// assets it tests, and the grace added to a run's timeout for the lease.
#[derive(Debug, Clone, Copy)]
pub struct LeaseRequest<'a> {
    pub agent: AgentId,
    pub instance: &'a str,
    pub environment: &'a str,
    pub assets: &'a [String],
    pub grace_millis: i64,
}

/// A run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub run_id: RunId,
    pub environment: String,
    pub asset: String,
    pub due_at: DateTime<Utc>,
    pub start_deadline: DateTime<Utc>,
    pub timeout_seconds: i64,
    /// `queued`, `leased`, `done`, `missed`, `failed` or `cancelled`.
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub manual: bool,
    pub agent_id: Option<AgentId>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct TestRow {
    environment: String,
    asset: String,
    schedule: String,
    timeout_seconds: i64,
    interval_seconds: i64,
    rpo_seconds: i64,
    rto_seconds: i64,
    override_schedule: Option<String>,
    override_timeout_seconds: Option<i64>,
    paused: bool,
    next_due_at: Option<i64>,
    updated_at: i64,
}

impl TryFrom<TestRow> for TestRecord {
    type Error = StoreError;

    fn try_from(row: TestRow) -> Result<Self, Self::Error> {
        Ok(Self {
            environment: row.environment,
            asset: row.asset,
            schedule: row.schedule,
            timeout_seconds: row.timeout_seconds,
            interval_seconds: row.interval_seconds,
            rpo_seconds: row.rpo_seconds,
            rto_seconds: row.rto_seconds,
            override_schedule: row.override_schedule,
            override_timeout_seconds: row.override_timeout_seconds,
            paused: row.paused,
            next_due_at: from_optional_millis("tests.next_due_at", row.next_due_at)?,
            updated_at: from_millis("tests.updated_at", row.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RunRow {
    run_id: Uuid,
    environment: String,
    asset: String,
    due_at: i64,
    start_deadline: i64,
    timeout_seconds: i64,
    state: String,
    attempts: i64,
    max_attempts: i64,
    manual: bool,
    agent_id: Option<Uuid>,
    lease_expires_at: Option<i64>,
    outcome: Option<String>,
    last_error: Option<String>,
    updated_at: i64,
}

impl TryFrom<RunRow> for RunRecord {
    type Error = StoreError;

    fn try_from(row: RunRow) -> Result<Self, Self::Error> {
        Ok(Self {
            run_id: RunId(row.run_id),
            environment: row.environment,
            asset: row.asset,
            due_at: from_millis("runs.due_at", row.due_at)?,
            start_deadline: from_millis("runs.start_deadline", row.start_deadline)?,
            timeout_seconds: row.timeout_seconds,
            state: row.state,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            manual: row.manual,
            agent_id: row.agent_id.map(AgentId),
            lease_expires_at: from_optional_millis("runs.lease_expires_at", row.lease_expires_at)?,
            outcome: row.outcome,
            last_error: row.last_error,
            updated_at: from_millis("runs.updated_at", row.updated_at)?,
        })
    }
}

const TEST_COLUMNS: &str = "environment, asset, schedule, timeout_seconds, interval_seconds, rpo_seconds, \
     rto_seconds, override_schedule, override_timeout_seconds, paused, next_due_at, updated_at";

const RUN_COLUMNS: &str = "run_id, environment, asset, due_at, start_deadline, timeout_seconds, state, attempts, \
     max_attempts, manual, agent_id, lease_expires_at, outcome, last_error, updated_at";

/// Inventory fields are refreshed; overrides and the next due time are kept. A changed schedule
/// resets the next due time so it is recomputed from the new expression.
const UPSERT_TEST: &str = "INSERT INTO tests (environment, asset, schedule, timeout_seconds, interval_seconds, \
     rpo_seconds, rto_seconds, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (environment, asset) DO UPDATE SET \
     next_due_at = CASE WHEN tests.schedule = excluded.schedule THEN tests.next_due_at ELSE NULL END, \
     schedule = excluded.schedule, timeout_seconds = excluded.timeout_seconds, \
     interval_seconds = excluded.interval_seconds, rpo_seconds = excluded.rpo_seconds, \
     rto_seconds = excluded.rto_seconds, updated_at = excluded.updated_at";

const SET_NEXT_DUE: &str = "UPDATE tests SET next_due_at = $3 WHERE environment = $1 AND asset = $2";

const SET_OVERRIDE: &str = "UPDATE tests SET override_schedule = $3, override_timeout_seconds = $4, paused = $5, \
     next_due_at = NULL WHERE environment = $1 AND asset = $2";

const INSERT_RUN: &str = "INSERT INTO runs (run_id, environment, asset, due_at, start_deadline, timeout_seconds, \
     state, attempts, max_attempts, manual, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8, $9, $9) \
     ON CONFLICT (environment, asset, due_at) DO NOTHING";

/// Leases the oldest due run of `environment` for one of `assets` (a JSON array) to an agent
/// that holds no lease. PostgreSQL skips runs another replica is leasing.
const LEASE_POSTGRES: &str = "UPDATE runs SET state = 'leased', agent_id = $1, leased_by = $2, \
     lease_expires_at = $3 + timeout_seconds * 1000 + $7, attempts = attempts + 1, updated_at = $3 \
     WHERE run_id = (SELECT run_id FROM runs WHERE state = 'queued' AND environment = $4 \
       AND asset IN (SELECT jsonb_array_elements_text($5::jsonb)) AND due_at <= $3 \
       AND (start_deadline > $3 OR (attempts > 0 AND start_deadline + timeout_seconds * 1000 > $3)) \
       AND NOT EXISTS (SELECT 1 FROM runs l WHERE l.agent_id = $1 AND l.state = 'leased') \
       ORDER BY due_at, run_id LIMIT $6 FOR UPDATE SKIP LOCKED) \
     RETURNING run_id, environment, asset, due_at, start_deadline, timeout_seconds, state, attempts, \
     max_attempts, manual, agent_id, lease_expires_at, outcome, last_error, updated_at";

const LEASE_SQLITE: &str = "UPDATE runs SET state = 'leased', agent_id = $1, leased_by = $2, \
     lease_expires_at = $3 + timeout_seconds * 1000 + $7, attempts = attempts + 1, updated_at = $3 \
     WHERE run_id = (SELECT run_id FROM runs WHERE state = 'queued' AND environment = $4 \
       AND asset IN (SELECT value FROM json_each($5)) AND due_at <= $3 \
       AND (start_deadline > $3 OR (attempts > 0 AND start_deadline + timeout_seconds * 1000 > $3)) \
       AND NOT EXISTS (SELECT 1 FROM runs l WHERE l.agent_id = $1 AND l.state = 'leased') \
       ORDER BY due_at, run_id LIMIT $6) \
     RETURNING run_id, environment, asset, due_at, start_deadline, timeout_seconds, state, attempts, \
     max_attempts, manual, agent_id, lease_expires_at, outcome, last_error, updated_at";

/// Gives a lease back (the assignment could not be sent), without counting the attempt.
const RELEASE_RUN: &str = "UPDATE runs SET state = 'queued', agent_id = NULL, leased_by = NULL, \
     lease_expires_at = NULL, attempts = attempts - 1, updated_at = $2 WHERE run_id = $1 AND state = 'leased'";

/// Leases that expired, or whose agent went away: back to the queue while attempts remain.
const EXPIRE_LEASES: &str = "UPDATE runs SET \
     state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
     last_error = CASE WHEN lease_expires_at < $1 THEN 'the lease expired before a result arrived' \
       ELSE 'the agent went away during the run' END, \
     agent_id = NULL, leased_by = NULL, lease_expires_at = NULL, updated_at = $1 \
     WHERE state = 'leased' AND (lease_expires_at < $1 OR agent_id IN \
       (SELECT id FROM agents WHERE connected = FALSE AND (last_seen IS NULL OR last_seen < $2)))";

/// Queued runs nobody started before their deadline.
const MISS_RUNS: &str = "UPDATE runs SET state = 'missed', updated_at = $1, \
     last_error = COALESCE(last_error, 'no capable agent was connected before the start deadline') \
     WHERE state = 'queued' AND ((attempts = 0 AND start_deadline <= $1) \
       OR (attempts > 0 AND start_deadline + timeout_seconds * 1000 <= $1))";

/// Only the agent holding the lease, in the run's environment, completes a run.
const COMPLETE_RUN: &str = "UPDATE runs SET state = 'done', result_id = $2, outcome = $3, updated_at = $4, \
     lease_expires_at = NULL WHERE run_id = $1 AND state = 'leased' AND agent_id = $5 AND environment = $6";

/// Refuses a test timeout the lease arithmetic (`due + timeout * 1000 + grace`, in
/// milliseconds) or a reader could not handle.
fn check_timeout(what: &str, seconds: i64) -> Result<(), StoreError> {
    let max = MAX_TEST_TIMEOUT_SECONDS as i64;
    if (1..=max).contains(&seconds) {
        Ok(())
    } else {
        Err(StoreError::OutOfRange(format!(
            "{what}: timeout {seconds} s is outside 1..={max} s"
        )))
    }
}

/// Refuses an interval, RPO or RTO beyond the protocol's bound.
fn check_objective(what: &str, name: &str, seconds: i64) -> Result<(), StoreError> {
    let max = MAX_OBJECTIVE_SECONDS as i64;
    if (0..=max).contains(&seconds) {
        Ok(())
    } else {
        Err(StoreError::OutOfRange(format!(
            "{what}: {name} {seconds} s is outside 0..={max} s"
        )))
    }
}

impl TestSpec {
    /// Checks that every number can be stored, read back and used.
    pub fn check(&self) -> Result<(), StoreError> {
        let what = format!("test {}/{}", self.environment, self.asset);
        check_timeout(&what, self.timeout_seconds)?;
        check_objective(&what, "interval", self.interval_seconds)?;
        check_objective(&what, "rpo", self.rpo_seconds)?;
        check_objective(&what, "rto", self.rto_seconds)
    }
}

impl Store {
    /// Refreshes the tests from the inventories (overrides are kept). Refuses the whole batch
    /// when one spec is out of range ([`TestSpec::check`]); callers check each spec first.
    pub async fn sync_tests(&self, specs: &[TestSpec], now: DateTime<Utc>) -> Result<(), StoreError> {
        specs.iter().try_for_each(TestSpec::check)?;
        with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            for spec in specs {
                sqlx::query(UPSERT_TEST)
                    .bind(&spec.environment)
                    .bind(&spec.asset)
                    .bind(&spec.schedule)
                    .bind(spec.timeout_seconds)
                    .bind(spec.interval_seconds)
                    .bind(spec.rpo_seconds)
                    .bind(spec.rto_seconds)
                    .bind(to_millis(now))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every scheduled test.
    pub async fn tests(&self) -> Result<Vec<TestRecord>, StoreError> {
        let sql = format!("SELECT {TEST_COLUMNS} FROM tests ORDER BY environment, asset");
        let rows: Vec<TestRow> = with_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).fetch_all(pool).await?
        });
        rows.into_iter().map(TestRecord::try_from).collect()
    }

    /// Sets (or clears, with `None`) the central overrides of a test. False if there is no
    /// such test.
    pub async fn set_test_override(
        &self,
        environment: &str,
        asset: &str,
        schedule: Option<&str>,
        timeout_seconds: Option<i64>,
        paused: bool,
    ) -> Result<bool, StoreError> {
        if let Some(timeout) = timeout_seconds {
            check_timeout(&format!("test {environment}/{asset}"), timeout)?;
        }
        let changed = with_pool!(self, |pool| {
            sqlx::query(SET_OVERRIDE)
                .bind(environment)
                .bind(asset)
                .bind(schedule)
                .bind(timeout_seconds)
                .bind(paused)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Materialises `runs` (idempotently) and moves the test's next due time, in one
    /// transaction. Returns how many runs were new.
    pub async fn materialise_runs(
        &self,
        environment: &str,
        asset: &str,
        runs: &[NewRun],
        next_due_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        for run in runs {
            check_timeout(
                &format!("run of {}/{}", run.environment, run.asset),
                run.timeout_seconds,
            )?;
        }
        let inserted = with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            let mut inserted = 0;
            for run in runs {
                inserted += sqlx::query(INSERT_RUN)
                    .bind(Uuid::now_v7())
                    .bind(&run.environment)
                    .bind(&run.asset)
                    .bind(to_millis(run.due_at))
                    .bind(to_millis(run.start_deadline))
                    .bind(run.timeout_seconds)
                    .bind(run.max_attempts)
                    .bind(run.manual)
                    .bind(to_millis(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            if runs.iter().all(|run| !run.manual) {
                sqlx::query(SET_NEXT_DUE)
                    .bind(environment)
                    .bind(asset)
                    .bind(next_due_at.map(to_millis))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            inserted
        });
        Ok(inserted)
    }

    /// Leases up to `limit` due runs of the request's environment (for one of its assets) to
    /// its agent.
    pub async fn lease_runs(
        &self,
        request: &LeaseRequest<'_>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let LeaseRequest {
            agent,
            instance,
            environment,
            assets,
            grace_millis,
        } = *request;
        let statement = match self.engine {
            Engine::Sqlite(_) => LEASE_SQLITE,
            Engine::Postgres(_) => LEASE_POSTGRES,
        };
        let assets = serde_json::to_string(assets).map_err(|err| StoreError::Encode(err.to_string()))?;
        let rows: Vec<RunRow> = with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            let rows = sqlx::query_as(statement)
                .bind(agent.0)
                .bind(instance)
                .bind(to_millis(now))
                .bind(environment)
                .bind(assets.as_str())
                .bind(i64::from(limit))
                .bind(grace_millis)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows
        });
        rows.into_iter().map(RunRecord::try_from).collect()
    }

    /// Gives a lease back when its assignment could not be sent.
    pub async fn release_run(&self, run_id: RunId, now: DateTime<Utc>) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(RELEASE_RUN)
                .bind(run_id.0)
                .bind(to_millis(now))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Re-queues (or fails, out of attempts) runs whose lease expired or whose agent has been
    /// disconnected since before `gone_before`; marks queued runs past their deadline missed.
    /// Returns (expired, missed).
    pub async fn expire_runs(&self, now: DateTime<Utc>, gone_before: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
        let counts = with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            let expired = sqlx::query(EXPIRE_LEASES)
                .bind(to_millis(now))
                .bind(to_millis(gone_before))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let missed = sqlx::query(MISS_RUNS)
                .bind(to_millis(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            (expired, missed)
        });
        Ok(counts)
    }

    /// Records the result of a run that `agent` of `environment` holds the lease of. False when
    /// the run is unknown, already done, or not leased to that agent (its lease lapsed, or it
    /// is another agent's): the result is stored all the same, the run is not completed.
    pub async fn complete_run(
        &self,
        run_id: RunId,
        result_id: Uuid,
        outcome: &str,
        holder: (AgentId, &str),
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (agent, environment) = holder;
        let changed = with_pool!(self, |pool| {
            sqlx::query(COMPLETE_RUN)
                .bind(run_id.0)
                .bind(result_id)
                .bind(outcome)
                .bind(to_millis(now))
                .bind(agent.0)
                .bind(environment)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Runs, newest due first, optionally of one asset.
    pub async fn runs(&self, asset: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE ($1 IS NULL OR asset = $1) ORDER BY due_at DESC, run_id LIMIT $2"
        );
        let rows: Vec<RunRow> = with_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(asset)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(RunRecord::try_from).collect()
    }

    /// The due time of the first run ever materialised for an asset (when its dead-man's
    /// switch starts counting).
    pub async fn first_due(&self, environment: &str, asset: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let first: Option<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT MIN(due_at) FROM runs WHERE environment = $1 AND asset = $2")
                .bind(environment)
                .bind(asset)
                .fetch_one(pool)
                .await?
        });
        first.map(|millis| from_millis("runs.due_at", millis)).transpose()
    }

    /// One run.
    pub async fn run(&self, run_id: RunId) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1");
        let row: Option<RunRow> = with_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(run_id.0)
                .fetch_optional(pool)
                .await?
        });
        row.map(RunRecord::try_from).transpose()
    }
}
