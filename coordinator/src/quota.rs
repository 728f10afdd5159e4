//! Per-client rate quotas: one token bucket per key (an agent), holding a minute's worth of
//! units and refilled evenly. The sessions use it for results and inventories, the scheduler for
//! the runs an agent's tests start, so one agent cannot cost the coordinator more than its share.
//!
//! Time is passed in, so callers and tests control the clock. Buckets live in memory, per
//! replica; a full bucket is the same as no bucket, so full ones are dropped when the map grows.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Buckets kept before full ones are dropped.
const PRUNE_ABOVE: usize = 4_096;

/// A rate of `per_minute` units per key, with bursts of up to a minute's worth.
#[derive(Debug)]
pub struct RateQuota<K> {
    per_minute: u32,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: DateTime<Utc>,
}

impl<K: Eq + Hash + Clone> RateQuota<K> {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Units per minute.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one unit for `key` at `now`; when none is left, returns how long until the bucket is
    /// half full again (a sensible time to come back with more than one).
    pub fn take(&self, key: &K, now: DateTime<Utc>) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE && !buckets.contains_key(key) {
            buckets.retain(|_, bucket| refilled(*bucket, now, per_second, capacity) < capacity);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        bucket.tokens = refilled(*bucket, now, per_second, capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = (capacity / 2.0 - bucket.tokens).max(1.0);
            Err(Duration::from_secs_f64(missing / per_second).max(Duration::from_secs(1)))
        }
    }
}

/// The tokens of `bucket` at `now` (a clock that went back refills nothing).
fn refilled(bucket: Bucket, now: DateTime<Utc>, per_second: f64, capacity: f64) -> f64 {
    let elapsed = (now - bucket.updated).to_std().unwrap_or_default().as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("time")
    }

    #[test]
    fn a_minute_of_burst_then_an_even_rate_per_key() {
        let quota = RateQuota::new(60);
        for _ in 0..60 {
            assert!(quota.take(&"a", at(0)).is_ok());
        }
        let wait = quota.take(&"a", at(0)).expect_err("exhausted");
        assert_eq!(wait, Duration::from_secs(30), "until half full");
        // Another key has its own bucket.
        assert!(quota.take(&"b", at(0)).is_ok());
        // One unit per second comes back.
        assert!(quota.take(&"a", at(1)).is_ok());
        assert!(quota.take(&"a", at(1)).is_err());
        // A clock that goes back refills nothing and breaks nothing.
        assert!(quota.take(&"a", at(-100)).is_err());
        // After a full minute the burst is back, and no more.
        for _ in 0..60 {
            assert!(quota.take(&"a", at(200)).is_ok());
        }
        assert!(quota.take(&"a", at(200)).is_err());
    }

    #[test]
    fn full_buckets_are_dropped_when_the_map_grows() {
        let quota = RateQuota::new(10);
        for key in 0..=PRUNE_ABOVE {
            quota.take(&key, at(0)).expect("fresh key");
        }
        // A minute later every bucket is full again: adding a key drops them all.
        quota.take(&usize::MAX, at(60)).expect("fresh key");
        let kept = quota.buckets.lock().expect("lock").len();
        assert_eq!(kept, 1);
    }
}
