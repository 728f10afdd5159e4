//! Choosing the recovery point a test plan's `pick` (see [`Pick`]) restores among a source's
//! points.
//!
//! `latest` proves the newest backup restores; `random_within` also exercises older points, so a
//! backup that rotted after it was written is found before the day it is needed.

use chrono::{DateTime, Utc};

use super::RecoveryPoint;
pub use crate::config::{Pick, PickError};

/// Returns the recovery point `pick` chooses among `points` (in any order), or `None` when there
/// are none.
///
/// `RandomWithin(d)` draws uniformly among the points created at or after `now - d`, and falls
/// back to the newest point when none is that recent (an old backup is still worth testing; the
/// age finding is reported elsewhere).
pub fn pick<'a>(
    points: &'a [RecoveryPoint],
    pick: &Pick,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> Option<&'a RecoveryPoint> {
    let newest = newest(points)?;
    match pick {
        Pick::Latest => Some(newest),
        Pick::RandomWithin(window) => {
            let cutoff = chrono::Duration::from_std(*window)
                .ok()
                .and_then(|window| now.checked_sub_signed(window))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let recent: Vec<&RecoveryPoint> = points.iter().filter(|point| point.created_at >= cutoff).collect();
            if recent.is_empty() {
                return Some(newest);
            }
            recent.get(rng.random_range(0..recent.len())).copied()
        }
    }
}

/// The newest point; the first of equals, so a newest-first list gives its head.
fn newest(points: &[RecoveryPoint]) -> Option<&RecoveryPoint> {
    points.iter().reduce(|best, point| {
        if point.created_at > best.created_at {
            point
        } else {
            best
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use std::time::Duration;

    use rand::SeedableRng;

    use super::super::{BackupFormat, TimestampSource};
    use super::*;

    fn point(id: &str, created_at: DateTime<Utc>) -> RecoveryPoint {
        RecoveryPoint {
            id: id.to_owned(),
            path: PathBuf::from(id),
            format: BackupFormat::PgCustom,
            created_at,
            timestamp_source: TimestampSource::ArchiveHeader,
            size_bytes: 1,
            checksum: None,
            server_major: Some(15),
            detail: serde_json::json!({}),
        }
    }

    fn days_ago(now: DateTime<Utc>, days: i64) -> DateTime<Utc> {
        now - chrono::Duration::days(days)
    }

    #[test]
    fn parses_and_shows_picks() {
        assert_eq!("latest".parse::<Pick>(), Ok(Pick::Latest));
        assert_eq!(
            "random_within:30d".parse::<Pick>(),
            Ok(Pick::RandomWithin(Duration::from_secs(30 * 86_400)))
        );
        assert_eq!(
            "random_within:1h30m".parse::<Pick>(),
            Ok(Pick::RandomWithin(Duration::from_secs(5_400)))
        );
        assert_eq!(
            Pick::RandomWithin(Duration::from_secs(30 * 86_400)).to_string(),
            "random_within:30d"
        );
        assert_eq!(Pick::Latest.to_string(), "latest");
        for bad in [
            "",
            "newest",
            "random_within:",
            "random_within:0s",
            "random_within:30x",
            "random:30d",
        ] {
            let err = bad.parse::<Pick>().unwrap_err();
            assert!(err.to_string().contains("expected \"latest\""), "{bad}: {err}");
        }
    }

    #[test]
    fn latest_is_the_newest_in_any_order() {
        let now = Utc::now();
        let points = [
            point("old", days_ago(now, 9)),
            point("new", days_ago(now, 1)),
            point("mid", days_ago(now, 4)),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(pick(&points, &Pick::Latest, now, &mut rng).unwrap().id, "new");
        assert!(pick(&[], &Pick::Latest, now, &mut rng).is_none());
        assert!(pick(&[], &Pick::RandomWithin(Duration::from_secs(60)), now, &mut rng).is_none());
    }

    #[test]
    fn random_within_draws_only_recent_points_and_reaches_all_of_them() {
        let now = Utc::now();
        let points: Vec<RecoveryPoint> = (0..10)
            .map(|day| point(&format!("day-{day}"), days_ago(now, day)))
            .collect();
        let within_week = Pick::RandomWithin(Duration::from_secs(7 * 86_400));
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut seen = HashSet::new();
        for _ in 0..500 {
            let chosen = pick(&points, &within_week, now, &mut rng).unwrap();
            assert!(chosen.created_at >= days_ago(now, 7), "{} is too old", chosen.id);
            seen.insert(chosen.id.clone());
        }
        let expected: HashSet<String> = (0..=7).map(|day| format!("day-{day}")).collect();
        assert_eq!(seen, expected);

        // The same seed gives the same draws: a run can be replayed.
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| pick(&points, &within_week, now, &mut rng).unwrap().id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
    }

    #[test]
    fn random_within_falls_back_to_the_newest_when_nothing_is_recent() {
        let now = Utc::now();
        let points = [point("a", days_ago(now, 40)), point("b", days_ago(now, 35))];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let chosen = pick(&points, &Pick::RandomWithin(Duration::from_secs(86_400)), now, &mut rng);
        assert_eq!(chosen.unwrap().id, "b");
        // A window too large for chrono still works: everything is recent.
        let chosen = pick(&points, &Pick::RandomWithin(Duration::MAX), now, &mut rng).unwrap();
        assert!(["a", "b"].contains(&chosen.id.as_str()));
    }
}
