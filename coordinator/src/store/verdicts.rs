//! Verdicts over time and what they set in motion: the current verdict of every asset, every
//! flip with its reasons, and the outbox of messages each flip (or alert) must deliver — written
//! in one transaction, so a flip is never stored without its messages nor messages without
//! their flip (nothing is lost; `docs/verdict.md`, "Flips and tickets").
//!
//! Deciding a verdict is serialised per asset: PostgreSQL takes a transaction-scoped advisory
//! lock on the asset (several coordinators may decide at once), SQLite's `BEGIN IMMEDIATE`
//! already admits one writer. So two replicas that see the same result cannot both record the
//! same flip.

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::Finding;
use serde::Serialize;

use super::{Engine, Store, StoreError, from_millis, from_optional_millis, to_millis};

/// The verdict of one asset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRecord {
    pub environment: String,
    pub asset: String,
    pub recoverable: bool,
    /// Worst first: why it is not recoverable (or what is still open when it is).
    pub reasons: Vec<Finding>,
    pub last_passed_at: Option<DateTime<Utc>>,
    pub backup_age_seconds: Option<i64>,
    pub restore_seconds: Option<f64>,
    pub rpo_seconds: Option<i64>,
    pub rto_seconds: Option<i64>,
    /// When the verdict last changed.
    pub since: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A change of verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlipRecord {
    pub id: i64,
    pub environment: String,
    pub asset: String,
    pub recoverable: bool,
    pub reasons: Vec<Finding>,
    pub at: DateTime<Utc>,
}

/// A message to put in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub channel: String,
    /// `trigger`, `resolve`, `reminder` or `channel_alert`.
    pub event: &'static str,
    pub dedup_key: String,
    pub payload: serde_json::Value,
    pub not_before: DateTime<Utc>,
    /// Stored as already silenced (a silence matched when it was decided).
    pub silenced: bool,
}

/// A message claimed for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub flip_id: Option<i64>,
    pub channel: String,
    pub event: String,
    pub dedup_key: String,
    pub payload: serde_json::Value,
    /// Including this one.
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
}

/// A delivered trigger or reminder whose asset is still not recoverable, for reminders.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTicket {
    pub channel: String,
    pub dedup_key: String,
    pub last_sent_at: DateTime<Utc>,
    pub reminders: i64,
}

/// An active silence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    pub id: i64,
    pub environment: Option<String>,
    pub asset: Option<String>,
    pub until: DateTime<Utc>,
    pub reason: String,
}

#[derive(sqlx::FromRow)]
struct VerdictRow {
    environment: String,
    asset: String,
    recoverable: bool,
    reasons: String,
    last_passed_at: Option<i64>,
    backup_age_seconds: Option<i64>,
    restore_seconds: Option<f64>,
    rpo_seconds: Option<i64>,
    rto_seconds: Option<i64>,
    since: i64,
    updated_at: i64,
}

impl TryFrom<VerdictRow> for VerdictRecord {
    type Error = StoreError;

    fn try_from(row: VerdictRow) -> Result<Self, Self::Error> {
        Ok(Self {
            reasons: findings("verdicts.reasons", &row.reasons)?,
            environment: row.environment,
            asset: row.asset,
            recoverable: row.recoverable,
            last_passed_at: from_optional_millis("verdicts.last_passed_at", row.last_passed_at)?,
            backup_age_seconds: row.backup_age_seconds,
            restore_seconds: row.restore_seconds,
            rpo_seconds: row.rpo_seconds,
            rto_seconds: row.rto_seconds,
            since: from_millis("verdicts.since", row.since)?,
            updated_at: from_millis("verdicts.updated_at", row.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct FlipRow {
    id: i64,
    environment: String,
    asset: String,
    recoverable: bool,
    reasons: String,
    at: i64,
}

impl TryFrom<FlipRow> for FlipRecord {
    type Error = StoreError;

    fn try_from(row: FlipRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id,
            reasons: findings("flips.reasons", &row.reasons)?,
            environment: row.environment,
            asset: row.asset,
            recoverable: row.recoverable,
            at: from_millis("flips.at", row.at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    flip_id: Option<i64>,
    channel: String,
    event: String,
    dedup_key: String,
    payload: String,
    attempts: i64,
    created_at: i64,
}

impl TryFrom<OutboxRow> for OutboxMessage {
    type Error = StoreError;

    fn try_from(row: OutboxRow) -> Result<Self, Self::Error> {
        Ok(Self {
            payload: super::parse_json("outbox.payload", &row.payload)?,
            id: row.id,
            flip_id: row.flip_id,
            channel: row.channel,
            event: row.event,
            dedup_key: row.dedup_key,
            attempts: row.attempts,
            created_at: from_millis("outbox.created_at", row.created_at)?,
        })
    }
}

/// `silences` columns: id, environment, asset, until, reason.
type SilenceRow = (i64, Option<String>, Option<String>, i64, String);

fn findings(column: &str, text: &str) -> Result<Vec<Finding>, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(format!("{column}: {err}")))
}

pub(super) fn encode<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Encode(format!("{what}: {err}")))
}

/// A stable 64-bit key for the advisory lock of one asset.
fn asset_lock_key(environment: &str, asset: &str) -> i64 {
    let digest = sha2::Digest::finalize(sha2::Digest::chain_update(
        sha2::Sha256::default(),
        format!("verdict\n{environment}\n{asset}").as_bytes(),
    ));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

const SELECT_VERDICT: &str = "SELECT environment, asset, recoverable, reasons, last_passed_at, backup_age_seconds, \
     restore_seconds, rpo_seconds, rto_seconds, since, updated_at FROM verdicts WHERE environment = $1 AND asset = $2";

const SELECT_VERDICTS: &str = "SELECT environment, asset, recoverable, reasons, last_passed_at, backup_age_seconds, \
     restore_seconds, rpo_seconds, rto_seconds, since, updated_at FROM verdicts \
     WHERE ($1 IS NULL OR environment = $1) ORDER BY environment, asset";

const UPSERT_VERDICT: &str = "INSERT INTO verdicts (environment, asset, recoverable, reasons, last_passed_at, \
     backup_age_seconds, restore_seconds, rpo_seconds, rto_seconds, since, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (environment, asset) DO UPDATE SET recoverable = excluded.recoverable, reasons = excluded.reasons, \
     last_passed_at = excluded.last_passed_at, backup_age_seconds = excluded.backup_age_seconds, \
     restore_seconds = excluded.restore_seconds, rpo_seconds = excluded.rpo_seconds, \
     rto_seconds = excluded.rto_seconds, since = excluded.since, updated_at = excluded.updated_at";

const INSERT_FLIP: &str =
    "INSERT INTO flips (environment, asset, recoverable, reasons, at) VALUES ($1, $2, $3, $4, $5) RETURNING id";

const SELECT_FLIPS: &str = "SELECT id, environment, asset, recoverable, reasons, at FROM flips \
     WHERE ($1 IS NULL OR environment = $1) AND ($2 IS NULL OR asset = $2) ORDER BY at DESC, id DESC LIMIT $3";

pub(super) const INSERT_MESSAGE: &str = "INSERT INTO outbox (flip_id, channel, event, dedup_key, payload, state, attempts, \
     not_before, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)";

/// Claims due messages: the oldest pending one per (channel, dedup key) only, so a resolve is
/// never delivered before its trigger. PostgreSQL skips rows another replica is claiming.
const CLAIM_POSTGRES: &str = "UPDATE outbox SET claimed_by = $1, claim_expires_at = $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM outbox o WHERE o.state = 'pending' AND o.not_before <= $3 \
       AND (o.claim_expires_at IS NULL OR o.claim_expires_at < $3) \
       AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.channel = o.channel AND p.dedup_key = o.dedup_key \
         AND p.state = 'pending' AND p.id < o.id) \
       ORDER BY o.id LIMIT $4 FOR UPDATE SKIP LOCKED) \
     RETURNING id, flip_id, channel, event, dedup_key, payload, attempts, created_at";

const CLAIM_SQLITE: &str = "UPDATE outbox SET claimed_by = $1, claim_expires_at = $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM outbox o WHERE o.state = 'pending' AND o.not_before <= $3 \
       AND (o.claim_expires_at IS NULL OR o.claim_expires_at < $3) \
       AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.channel = o.channel AND p.dedup_key = o.dedup_key \
         AND p.state = 'pending' AND p.id < o.id) \
       ORDER BY o.id LIMIT $4) \
     RETURNING id, flip_id, channel, event, dedup_key, payload, attempts, created_at";

const MARK_DELIVERED: &str = "UPDATE outbox SET state = 'delivered', delivered_at = $3, external_id = $4, \
     claimed_by = NULL, claim_expires_at = NULL, last_error = NULL WHERE id = $1 AND claimed_by = $2";

const MARK_RETRY: &str = "UPDATE outbox SET not_before = $3, last_error = $4, claimed_by = NULL, \
     claim_expires_at = NULL WHERE id = $1 AND claimed_by = $2";

const MARK_DEAD: &str = "UPDATE outbox SET state = 'dead', last_error = $3, claimed_by = NULL, \
     claim_expires_at = NULL WHERE id = $1 AND claimed_by = $2";

const OUTBOX_DEPTH: &str = "SELECT COUNT(*) FROM outbox WHERE state = 'pending'";

/// A trigger still inside its `group_wait` (never attempted, not yet due) for the same channel
/// and key: a flip back within it cancels the trigger instead of sending both.
const CANCEL_UNSENT_TRIGGER: &str = "UPDATE outbox SET state = 'silenced', \
     last_error = 'flipped back within group_wait' \
     WHERE channel = $1 AND dedup_key = $2 AND state = 'pending' AND attempts = 0 AND not_before > $3 \
     AND event = 'trigger'";

/// Channels with a trigger for `dedup_key` that is not followed by a resolve: where a resolve
/// must go.
const OPEN_CHANNELS: &str = "SELECT DISTINCT channel FROM outbox t WHERE t.dedup_key = $1 \
     AND t.event = 'trigger' AND t.state IN ('pending', 'delivered') \
     AND NOT EXISTS (SELECT 1 FROM outbox r WHERE r.channel = t.channel AND r.dedup_key = t.dedup_key \
       AND r.event = 'resolve' AND r.id > t.id AND r.state IN ('pending', 'delivered'))";

/// Open tickets (a delivered trigger not resolved since) with the time of their last message.
const OPEN_TICKETS: &str = "SELECT t.channel, t.dedup_key, \
     (SELECT MAX(m.created_at) FROM outbox m WHERE m.channel = t.channel AND m.dedup_key = t.dedup_key \
        AND m.event IN ('trigger', 'reminder') AND m.id >= t.id) AS last_sent_at, \
     (SELECT COUNT(*) FROM outbox m WHERE m.channel = t.channel AND m.dedup_key = t.dedup_key \
        AND m.event = 'reminder' AND m.id > t.id) AS reminders \
     FROM outbox t WHERE t.event = 'trigger' AND t.state IN ('pending', 'delivered') \
     AND NOT EXISTS (SELECT 1 FROM outbox r WHERE r.channel = t.channel AND r.dedup_key = t.dedup_key \
       AND r.event = 'resolve' AND r.id > t.id)";

const RECENT_ALERT: &str = "SELECT COUNT(*) FROM outbox WHERE dedup_key = $1 AND event = 'channel_alert' \
     AND created_at > $2";

const SELECT_SILENCES: &str =
    "SELECT id, environment, asset, until, reason FROM silences WHERE until > $1 ORDER BY until DESC";

const INSERT_SILENCE: &str =
    "INSERT INTO silences (environment, asset, until, reason, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id";

/// Inserts one outbox row inside the transaction `$tx` (a macro: the body must compile for both
/// engines' transaction types).
macro_rules! insert_message {
    ($tx:expr, $flip_id:expr, $message:expr, $now:expr) => {{
        let message: &$crate::store::NewMessage = $message;
        let payload = $crate::store::verdicts::encode("outbox payload", &message.payload)?;
        sqlx::query($crate::store::verdicts::INSERT_MESSAGE)
            .bind($flip_id)
            .bind(&message.channel)
            .bind(message.event)
            .bind(&message.dedup_key)
            .bind(payload)
            .bind(if message.silenced { "silenced" } else { "pending" })
            .bind(to_millis(message.not_before))
            .bind(to_millis($now))
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(super) use insert_message;

impl Store {
    /// Records `verdict`. When it differs from the stored one (or there is none and it is not
    /// recoverable), also records a flip and the messages `messages(flip, previous, open)`
    /// returns — `open` being the channels where a ticket for `dedup_key` is open — all in one
    /// transaction. A resolve whose trigger was never sent (a flip back within `group_wait`)
    /// cancels that trigger and is not sent either. Returns the flip, if there was one.
    pub async fn record_verdict(
        &self,
        verdict: &VerdictRecord,
        dedup_key: &str,
        messages: impl FnOnce(&FlipRecord, Option<&VerdictRecord>, &[String]) -> Vec<NewMessage>,
    ) -> Result<Option<FlipRecord>, StoreError> {
        let reasons = encode("verdict reasons", &verdict.reasons)?;
        let lock = asset_lock_key(&verdict.environment, &verdict.asset);
        let is_postgres = matches!(self.engine, Engine::Postgres(_));
        let flip = with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            if is_postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock)
                    .execute(&mut *tx)
                    .await?;
            }
            let previous: Option<VerdictRow> = sqlx::query_as(SELECT_VERDICT)
                .bind(&verdict.environment)
                .bind(&verdict.asset)
                .fetch_optional(&mut *tx)
                .await?;
            let previous: Option<VerdictRecord> = previous.map(VerdictRecord::try_from).transpose()?;
            let flipped = match &previous {
                Some(previous) => previous.recoverable != verdict.recoverable,
                // The first verdict of an asset is a flip only when it is bad news.
                None => !verdict.recoverable,
            };
            let since = match (&previous, flipped) {
                (Some(previous), false) => previous.since,
                _ => verdict.since,
            };
            sqlx::query(UPSERT_VERDICT)
                .bind(&verdict.environment)
                .bind(&verdict.asset)
                .bind(verdict.recoverable)
                .bind(&reasons)
                .bind(verdict.last_passed_at.map(to_millis))
                .bind(verdict.backup_age_seconds)
                .bind(verdict.restore_seconds)
                .bind(verdict.rpo_seconds)
                .bind(verdict.rto_seconds)
                .bind(to_millis(since))
                .bind(to_millis(verdict.updated_at))
                .execute(&mut *tx)
                .await?;
            let mut flip = None;
            if flipped {
                let (id,): (i64,) = sqlx::query_as(INSERT_FLIP)
                    .bind(&verdict.environment)
                    .bind(&verdict.asset)
                    .bind(verdict.recoverable)
                    .bind(&reasons)
                    .bind(to_millis(verdict.since))
                    .fetch_one(&mut *tx)
                    .await?;
                let record = FlipRecord {
                    id,
                    environment: verdict.environment.clone(),
                    asset: verdict.asset.clone(),
                    recoverable: verdict.recoverable,
                    reasons: verdict.reasons.clone(),
                    at: verdict.since,
                };
                let open: Vec<(String,)> = sqlx::query_as(OPEN_CHANNELS)
                    .bind(dedup_key)
                    .fetch_all(&mut *tx)
                    .await?;
                let open: Vec<String> = open.into_iter().map(|(channel,)| channel).collect();
                for mut message in messages(&record, previous.as_ref(), &open) {
                    if message.event == "resolve" {
                        let cancelled = sqlx::query(CANCEL_UNSENT_TRIGGER)
                            .bind(&message.channel)
                            .bind(&message.dedup_key)
                            .bind(to_millis(verdict.updated_at))
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        // Nothing was sent, so there is nothing to resolve: keep it for the record only.
                        message.silenced |= cancelled > 0;
                    }
                    insert_message!(tx, Some(id), &message, verdict.updated_at);
                }
                flip = Some(record);
            }
            tx.commit().await?;
            flip
        });
        Ok(flip)
    }

    /// The verdict of one asset.
    pub async fn verdict(&self, environment: &str, asset: &str) -> Result<Option<VerdictRecord>, StoreError> {
        let row: Option<VerdictRow> = with_pool!(self, |pool| {
            sqlx::query_as(SELECT_VERDICT)
                .bind(environment)
                .bind(asset)
                .fetch_optional(pool)
                .await?
        });
        row.map(VerdictRecord::try_from).transpose()
    }

    /// Every verdict, or those of one environment, by environment and asset.
    pub async fn verdicts(&self, environment: Option<&str>) -> Result<Vec<VerdictRecord>, StoreError> {
        let rows: Vec<VerdictRow> = with_pool!(self, |pool| {
            sqlx::query_as(SELECT_VERDICTS)
                .bind(environment)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(VerdictRecord::try_from).collect()
    }

    /// Flips, newest first.
    pub async fn flips(
        &self,
        environment: Option<&str>,
        asset: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FlipRecord>, StoreError> {
        let rows: Vec<FlipRow> = with_pool!(self, |pool| {
            sqlx::query_as(SELECT_FLIPS)
                .bind(environment)
                .bind(asset)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(FlipRecord::try_from).collect()
    }

    /// Puts messages in the outbox outside a flip (reminders, channel alerts).
    pub async fn enqueue_messages(&self, messages: &[NewMessage], now: DateTime<Utc>) -> Result<(), StoreError> {
        with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            for message in messages {
                insert_message!(tx, None::<i64>, message, now);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claims up to `limit` due messages for `instance` until `claim_until`.
    pub async fn claim_messages(
        &self,
        instance: &str,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let statement = match self.engine {
            Engine::Sqlite(_) => CLAIM_SQLITE,
            Engine::Postgres(_) => CLAIM_POSTGRES,
        };
        let rows: Vec<OutboxRow> = with_pool!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            let rows = sqlx::query_as(statement)
                .bind(instance)
                .bind(to_millis(claim_until))
                .bind(to_millis(now))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows
        });
        let mut messages = rows
            .into_iter()
            .map(OutboxMessage::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        messages.sort_by_key(|message| message.id);
        Ok(messages)
    }

    /// Marks a claimed message delivered. False when the claim was lost (expired and taken by
    /// another worker).
    pub async fn message_delivered(
        &self,
        id: i64,
        instance: &str,
        external_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(self, |pool| {
            sqlx::query(MARK_DELIVERED)
                .bind(id)
                .bind(instance)
                .bind(to_millis(now))
                .bind(external_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Releases a claimed message to be tried again at `not_before`.
    pub async fn message_retry(
        &self,
        id: i64,
        instance: &str,
        not_before: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(MARK_RETRY)
                .bind(id)
                .bind(instance)
                .bind(to_millis(not_before))
                .bind(error)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Gives up on a claimed message.
    pub async fn message_dead(&self, id: i64, instance: &str, error: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(MARK_DEAD)
                .bind(id)
                .bind(instance)
                .bind(error)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Messages waiting to be delivered.
    pub async fn outbox_depth(&self) -> Result<i64, StoreError> {
        let (count,): (i64,) = with_pool!(self, |pool| sqlx::query_as(OUTBOX_DEPTH).fetch_one(pool).await?);
        Ok(count)
    }

    /// Channels where a trigger for `dedup_key` was sent (or is pending) and not yet resolved.
    pub async fn open_channels(&self, dedup_key: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = with_pool!(self, |pool| {
            sqlx::query_as(OPEN_CHANNELS).bind(dedup_key).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|(channel,)| channel).collect())
    }

    /// Tickets opened and not resolved, for reminders.
    pub async fn open_tickets(&self) -> Result<Vec<OpenTicket>, StoreError> {
        let rows: Vec<(String, String, Option<i64>, i64)> =
            with_pool!(self, |pool| sqlx::query_as(OPEN_TICKETS).fetch_all(pool).await?);
        rows.into_iter()
            .map(|(channel, dedup_key, last_sent_at, reminders)| {
                Ok(OpenTicket {
                    channel,
                    dedup_key,
                    last_sent_at: from_millis("outbox.created_at", last_sent_at.unwrap_or(0))?,
                    reminders,
                })
            })
            .collect()
    }

    /// Whether an alert with `dedup_key` was queued after `since`.
    pub async fn alert_queued_since(&self, dedup_key: &str, since: DateTime<Utc>) -> Result<bool, StoreError> {
        let (count,): (i64,) = with_pool!(self, |pool| {
            sqlx::query_as(RECENT_ALERT)
                .bind(dedup_key)
                .bind(to_millis(since))
                .fetch_one(pool)
                .await?
        });
        Ok(count > 0)
    }

    /// Silences still in force at `now`.
    pub async fn silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
        let rows: Vec<SilenceRow> = with_pool!(self, |pool| {
            sqlx::query_as(SELECT_SILENCES)
                .bind(to_millis(now))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(id, environment, asset, until, reason)| {
                Ok(Silence {
                    id,
                    environment,
                    asset,
                    until: from_millis("silences.until", until)?,
                    reason,
                })
            })
            .collect()
    }

    /// Adds a silence; returns its id.
    pub async fn add_silence(
        &self,
        environment: Option<&str>,
        asset: Option<&str>,
        until: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let (id,): (i64,) = with_pool!(self, |pool| {
            sqlx::query_as(INSERT_SILENCE)
                .bind(environment)
                .bind(asset)
                .bind(to_millis(until))
                .bind(reason)
                .bind(to_millis(now))
                .fetch_one(pool)
                .await?
        });
        Ok(id)
    }
}
