//! `pick` of a test plan: which recovery point a restore test restores — `"latest"`, or
//! `"random_within:30d"` — parsed when the config is loaded (a typo is an error at its line, never
//! a silent default).
//!
//! `latest` proves the newest backup restores; `random_within` also exercises older points, so a
//! backup that rotted after it was written is found before the day it is needed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lifeboat_shared::durations::HumanDuration;
use serde::{Deserialize, Deserializer};

/// Which recovery point a restore test restores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pick {
    /// The newest recovery point.
    #[default]
    Latest,
    /// A uniformly random point among those newer than now minus this; the newest when there
    /// is none.
    RandomWithin(Duration),
}

/// A `pick` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pick {0:?}: expected \"latest\" or \"random_within:<duration>\" (e.g. \"random_within:30d\")")]
pub struct PickError(pub String);

impl FromStr for Pick {
    type Err = PickError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || PickError(text.chars().take(64).collect());
        let trimmed = text.trim();
        if trimmed == "latest" {
            return Ok(Self::Latest);
        }
        let window = trimmed.strip_prefix("random_within:").ok_or_else(err)?;
        let window: HumanDuration = window.trim().parse().map_err(|_| err())?;
        if window.0.is_zero() {
            return Err(err());
        }
        Ok(Self::RandomWithin(window.0))
    }
}

impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::RandomWithin(window) => write!(f, "random_within:{}", HumanDuration(*window)),
        }
    }
}

impl<'de> Deserialize<'de> for Pick {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
