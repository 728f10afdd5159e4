//! The largest value of every number and text an agent may send, and the checks that enforce
//! them on receive.
//!
//! Every bound is chosen so that whatever passes can be stored, read back and used in time
//! arithmetic without overflow (a timeout of 2^62 seconds once made every scheduler tick fail,
//! and 10^13 seconds wrote a lease no query could read back). The agent's config validation uses
//! the same constants, so a config the agent accepts is an inventory the coordinator accepts.

use chrono::{DateTime, Utc};

use super::ProtocolError;

/// Longest name (asset, backup, hostname, ...) accepted in a message.
pub const MAX_NAME_LEN: usize = 256;
/// Longest free text (finding message, remediation) accepted in a message.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Largest structured detail document (JSON) accepted in a result.
pub const MAX_DETAIL_LEN: usize = 1024 * 1024;
/// Most findings one result may carry.
pub const MAX_FINDINGS: usize = 1_000;
/// Most entries of each list (assets, backups, tests) in one inventory.
pub const MAX_INVENTORY_ITEMS: usize = 10_000;
/// Most checks one test may declare.
pub const MAX_CHECKS: usize = 256;
/// Most entries in a Hello's capability lists.
pub const MAX_CAPABILITIES: usize = 64;
/// Largest PostgreSQL major version an agent may announce.
pub const MAX_POSTGRES_MAJOR: u32 = 1_000;

/// Longest test timeout: a restore that needs more than a week is not a drill anyone can run.
pub const MAX_TEST_TIMEOUT_SECONDS: u64 = 7 * 86_400;
/// Longest RPO, RTO or test interval an asset may declare: a century (an archive that never
/// changes may accept backups that are decades old; the bound only keeps arithmetic safe).
pub const MAX_OBJECTIVE_SECONDS: u64 = 100 * 366 * 86_400;
/// Longest measured duration (restore time, time to checks passed, progress): a year.
pub const MAX_MEASURED_SECONDS: f64 = 366.0 * 86_400.0;
/// Largest recovery point age, either way (a clock may be skewed): a century.
pub const MAX_AGE_SECONDS: i64 = 100 * 366 * 86_400;
/// Largest byte or object count in a progress report (fits a signed 64-bit column).
pub const MAX_COUNTER: u64 = i64::MAX as u64;
/// Earliest time accepted in a message: 2000-01-01T00:00:00Z.
pub const MIN_TIMESTAMP_SECONDS: i64 = 946_684_800;
/// Latest time accepted in a message: 2200-01-01T00:00:00Z.
pub const MAX_TIMESTAMP_SECONDS: i64 = 7_258_118_400;

/// A non-empty name of at most [`MAX_NAME_LEN`] bytes without control characters.
pub(super) fn name(field: &'static str, value: String) -> Result<String, ProtocolError> {
    if value.is_empty() {
        return Err(ProtocolError::Missing(field));
    }
    bounded(field, value, MAX_NAME_LEN)
}

/// An optional name: empty is `None`.
pub(super) fn optional_name(field: &'static str, value: String) -> Result<Option<String>, ProtocolError> {
    if value.is_empty() {
        Ok(None)
    } else {
        name(field, value).map(Some)
    }
}

/// Text of at most `max` bytes without control characters (newlines and tabs are fine).
pub(super) fn bounded(field: &'static str, value: String, max: usize) -> Result<String, ProtocolError> {
    if value.len() > max {
        return Err(ProtocolError::invalid(field, format!("longer than {max} bytes")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ProtocolError::invalid(field, "contains control characters"));
    }
    Ok(value)
}

/// A list of at most `max` entries, each converted by `convert`.
pub(super) fn bounded_list<T, U>(
    field: &'static str,
    items: Vec<T>,
    max: usize,
    convert: impl Fn(T) -> Result<U, ProtocolError>,
) -> Result<Vec<U>, ProtocolError> {
    if items.len() > max {
        return Err(ProtocolError::invalid(field, format!("more than {max} entries")));
    }
    items.into_iter().map(convert).collect()
}

/// A whole number of seconds in `min..=max`.
pub fn whole_seconds(field: &'static str, value: u64, min: u64, max: u64) -> Result<u64, ProtocolError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ProtocolError::invalid(
            field,
            format!("{value} s is outside {min}..={max} s"),
        ))
    }
}

/// A measured, non-negative duration in seconds of at most [`MAX_MEASURED_SECONDS`].
pub(super) fn seconds(field: &'static str, value: f64) -> Result<f64, ProtocolError> {
    if value.is_finite() && (0.0..=MAX_MEASURED_SECONDS).contains(&value) {
        Ok(value)
    } else {
        Err(ProtocolError::invalid(
            field,
            format!("{value} is not a number of seconds between 0 and {MAX_MEASURED_SECONDS}"),
        ))
    }
}

/// A count of at most [`MAX_COUNTER`].
pub(super) fn counter(field: &'static str, value: u64) -> Result<u64, ProtocolError> {
    if value <= MAX_COUNTER {
        Ok(value)
    } else {
        Err(ProtocolError::invalid(
            field,
            format!("{value} is larger than {MAX_COUNTER}"),
        ))
    }
}

/// Converts a protobuf timestamp, rejecting times outside 2000–2200.
pub fn timestamp(field: &'static str, value: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, ProtocolError> {
    let value = value.ok_or(ProtocolError::Missing(field))?;
    if !(MIN_TIMESTAMP_SECONDS..MAX_TIMESTAMP_SECONDS).contains(&value.seconds) {
        return Err(ProtocolError::invalid(field, "not between the years 2000 and 2200"));
    }
    let nanos = u32::try_from(value.nanos).map_err(|_| ProtocolError::invalid(field, "negative nanos"))?;
    DateTime::from_timestamp(value.seconds, nanos).ok_or_else(|| ProtocolError::invalid(field, "out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_bounds_are_the_documented_years() {
        let at = |seconds| timestamp("t", Some(prost_types::Timestamp { seconds, nanos: 0 }));
        assert_eq!(
            at(MIN_TIMESTAMP_SECONDS).expect("2000").to_rfc3339(),
            "2000-01-01T00:00:00+00:00"
        );
        assert!(at(MIN_TIMESTAMP_SECONDS - 1).is_err());
        assert!(at(MAX_TIMESTAMP_SECONDS - 1).is_ok());
        let end = DateTime::from_timestamp(MAX_TIMESTAMP_SECONDS, 0).expect("in range");
        assert_eq!(end.to_rfc3339(), "2200-01-01T00:00:00+00:00");
        assert!(at(MAX_TIMESTAMP_SECONDS).is_err());
        assert!(at(i64::MAX).is_err());
    }

    #[test]
    fn every_bound_survives_millisecond_arithmetic() {
        // A lease ends at most a timeout after the latest accepted time, in milliseconds.
        let timeout_ms = i64::try_from(MAX_TEST_TIMEOUT_SECONDS * 1_000).expect("fits");
        let lease_end = (MAX_TIMESTAMP_SECONDS * 1_000)
            .checked_add(timeout_ms)
            .expect("no overflow");
        assert!(DateTime::from_timestamp_millis(lease_end).is_some());
        assert!(i64::try_from(MAX_OBJECTIVE_SECONDS * 1_000).is_ok());
        assert!(MAX_AGE_SECONDS.checked_mul(1_000).is_some());
    }

    #[test]
    fn seconds_and_counters_are_bounded() {
        assert!(whole_seconds("timeout", 0, 1, MAX_TEST_TIMEOUT_SECONDS).is_err());
        assert!(whole_seconds("timeout", 1 << 62, 1, MAX_TEST_TIMEOUT_SECONDS).is_err());
        assert_eq!(whole_seconds("timeout", 3_600, 1, MAX_TEST_TIMEOUT_SECONDS), Ok(3_600));
        assert!(seconds("restore", f64::INFINITY).is_err());
        assert!(seconds("restore", -1.0).is_err());
        assert!(seconds("restore", 1e300).is_err());
        assert!(counter("bytes", u64::MAX).is_err());
    }
}
