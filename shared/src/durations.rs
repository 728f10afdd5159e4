//! Human durations: `90s`, `30m`, `24h`, `7d`, `1h30m`, as written in configs and flags; and
//! [`human`], the one way every report, page and ticket writes a duration for people.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the way operators write it. Serialises back to the same notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// Error for a duration that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: expected a number and a unit (s, m, h, d), e.g. \"30m\" or \"1h30m\"")]
pub struct DurationError(pub String);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }
}

impl From<HumanDuration> for Duration {
    fn from(value: HumanDuration) -> Self {
        value.0
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(text.chars().take(64).collect());
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(err());
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in trimmed.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: u64 = match c {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                _ => return Err(err()),
            };
            let amount: u64 = digits.parse().map_err(|_| err())?;
            digits.clear();
            total = amount
                .checked_mul(unit)
                .and_then(|secs| total.checked_add(secs))
                .ok_or_else(err)?;
        }
        if !digits.is_empty() {
            return Err(err());
        }
        Ok(Self(Duration::from_secs(total)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Writes a number of seconds for people, rounded to the nearest unit: `42 s`, `47 min`,
/// `5 h`, `92 days` (singular for 1: `1 day`). Negative and non-finite values read as 0.
pub fn human(seconds: f64) -> String {
    let seconds = if seconds.is_finite() { seconds.max(0.0) } else { 0.0 };
    let (amount, unit, units) = if seconds < 120.0 {
        (seconds, "s", "s")
    } else if seconds < 2.0 * 3_600.0 {
        (seconds / 60.0, "min", "min")
    } else if seconds < 2.0 * 86_400.0 {
        (seconds / 3_600.0, "h", "h")
    } else {
        (seconds / 86_400.0, "day", "days")
    };
    if unit == "s" && seconds < 10.0 && seconds.fract() != 0.0 {
        return format!("{seconds:.1} s");
    }
    let rounded = amount.round();
    format!("{rounded:.0} {}", if rounded == 1.0 { unit } else { units })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_read_rounded_durations() {
        assert_eq!(human(0.2), "0.2 s");
        assert_eq!(human(42.0), "42 s");
        assert_eq!(human(2_870.0), "48 min");
        assert_eq!(human(5.0 * 3_600.0), "5 h");
        assert_eq!(human(92.0 * 86_400.0), "92 days");
        assert_eq!(human(1.6 * 86_400.0 * 1.25), "2 days");
        assert_eq!(human(-3.0), "0 s");
        assert_eq!(human(f64::NAN), "0 s");
    }

    #[test]
    fn parses_operator_notation() {
        let cases = [
            ("90s", 90),
            ("30m", 1_800),
            ("24h", 86_400),
            ("7d", 604_800),
            ("1h30m", 5_400),
        ];
        for (text, secs) in cases {
            assert_eq!(
                text.parse::<HumanDuration>(),
                Ok(HumanDuration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "10", "h", "5x", "-3h", "99999999999999999999d"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn displays_round_trip() {
        for secs in [0, 59, 60, 3_661, 90_061] {
            let d = HumanDuration::from_secs(secs);
            assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d));
        }
    }
}
