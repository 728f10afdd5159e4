//! Times as backups write them: PostgreSQL's `2026-11-25 03:00:00 UTC` (zone abbreviation or
//! offset), local wall-clock fields without a zone (pg_dump archive headers), file mtimes.
//!
//! A wall-clock time without a usable zone is read in the agent's local time zone, which is what
//! `pg_restore --list` does too; the caller notes that in the point's detail.

use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, TimeZone, Utc};

/// A PostgreSQL-printed time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PgTime {
    /// The zone was UTC or a numeric offset: the instant is known.
    Exact(DateTime<Utc>),
    /// The zone is an abbreviation (`CET`, `EST`…) that cannot be resolved unambiguously.
    Zoned { wall_clock: NaiveDateTime, zone: String },
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fff] ZONE` as PostgreSQL prints it (`backup_label`, plain dump
/// headers): `UTC`/`GMT`/`Z`, `+03`, `-0530`, `+05:30`, or an abbreviation.
pub(super) fn parse_pg_time(text: &str) -> Option<PgTime> {
    let mut parts = text.split_whitespace();
    let date = parts.next()?;
    let time = parts.next()?;
    let zone = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let wall_clock = NaiveDateTime::parse_from_str(&format!("{date} {time}"), "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let Some(zone) = zone else {
        return Some(PgTime::Zoned {
            wall_clock,
            zone: String::new(),
        });
    };
    if ["UTC", "GMT", "UCT", "Z", "Etc/UTC", "Etc/GMT", "Zulu", "Universal"].contains(&zone) {
        return Some(PgTime::Exact(wall_clock.and_utc()));
    }
    if let Some(offset) = parse_offset(zone) {
        let local = offset.from_local_datetime(&wall_clock).single()?;
        return Some(PgTime::Exact(local.with_timezone(&Utc)));
    }
    Some(PgTime::Zoned {
        wall_clock,
        zone: zone.to_owned(),
    })
}

/// `+03`, `-0530`, `+05:30` → the offset east of UTC.
fn parse_offset(zone: &str) -> Option<FixedOffset> {
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse::<i32>().ok()?),
        _ => return None,
    };
    if hours > 15 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3_600 + minutes * 60))
}

/// Reads wall-clock fields in the agent's local time zone. `is_dst` (from a `struct tm`) picks
/// between the two instants of an hour repeated when clocks go back; a time skipped when clocks
/// go forward is read as UTC.
pub(super) fn assume_local(wall_clock: NaiveDateTime, is_dst: Option<bool>) -> DateTime<Utc> {
    match chrono::Local.from_local_datetime(&wall_clock) {
        LocalResult::Single(local) => local.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, later) => {
            // The first pass through the repeated hour is still daylight-saving time.
            let chosen = if is_dst == Some(false) { later } else { earlier };
            chosen.with_timezone(&Utc)
        }
        LocalResult::None => wall_clock.and_utc(),
    }
}

/// Converts a file time; one outside chrono's range (a corrupt mtime) becomes the epoch.
pub(super) fn from_system_time(time: SystemTime) -> DateTime<Utc> {
    // chrono's `From<SystemTime>` panics out of its range; a file's mtime is user input.
    let since_epoch = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs())
            .ok()
            .map(|secs| (secs, after.subsec_nanos())),
        Err(before) => {
            let before = before.duration();
            i64::try_from(before.as_secs()).ok().map(|secs| {
                if before.subsec_nanos() == 0 {
                    (-secs, 0)
                } else {
                    (-secs - 1, 1_000_000_000 - before.subsec_nanos())
                }
            })
        }
    };
    since_epoch
        .and_then(|(secs, nanos)| DateTime::from_timestamp(secs, nanos))
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// Returns the PostgreSQL major of a version string: `15.18 (Debian …)` → 15, `9.6.24` → 9,
/// `16beta1` → 16.
pub(super) fn postgres_major(version: &str) -> Option<u32> {
    let digits: String = version.trim().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|major| *major > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_postgres_times() {
        assert_eq!(
            parse_pg_time("2026-11-25 03:00:00 UTC"),
            Some(PgTime::Exact(utc("2026-11-25T03:00:00Z")))
        );
        assert_eq!(
            parse_pg_time("2026-11-25 03:00:00 GMT"),
            Some(PgTime::Exact(utc("2026-11-25T03:00:00Z")))
        );
        assert_eq!(
            parse_pg_time("2026-11-25 03:00:00 +03"),
            Some(PgTime::Exact(utc("2026-11-25T00:00:00Z")))
        );
        assert_eq!(
            parse_pg_time("2026-11-25 03:00:00 -0530"),
            Some(PgTime::Exact(utc("2026-11-25T08:30:00Z")))
        );
        assert_eq!(
            parse_pg_time("2026-11-25 03:00:00.25 +05:30"),
            Some(PgTime::Exact(utc("2026-11-24T21:30:00.25Z")))
        );
        match parse_pg_time("2026-11-25 03:00:00 CET") {
            Some(PgTime::Zoned { zone, wall_clock }) => {
                assert_eq!(zone, "CET");
                assert_eq!(wall_clock.to_string(), "2026-11-25 03:00:00");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "",
            "yesterday",
            "2026-13-01 00:00:00 UTC",
            "2026-11-25",
            "2026-11-25 03:00:00 UTC extra",
        ] {
            assert_eq!(parse_pg_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_postgres_majors() {
        assert_eq!(postgres_major("15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(postgres_major("9.6.24"), Some(9));
        assert_eq!(postgres_major("16beta1"), Some(16));
        assert_eq!(postgres_major(""), None);
        assert_eq!(postgres_major("x15"), None);
        assert_eq!(postgres_major("99999999999999999999"), None);
    }

    #[test]
    fn converts_file_times_without_panicking() {
        let epoch = SystemTime::UNIX_EPOCH;
        assert_eq!(from_system_time(epoch), DateTime::UNIX_EPOCH);
        let before = epoch - std::time::Duration::from_millis(1_500);
        assert_eq!(from_system_time(before).timestamp_millis(), -1_500);
        if let Some(far) = epoch.checked_add(std::time::Duration::from_secs(u64::MAX / 4)) {
            assert_eq!(from_system_time(far), DateTime::UNIX_EPOCH);
        }
    }
}
