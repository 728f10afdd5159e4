//! Identifiers: agents, results, runs, and environment names.
//!
//! Ids are UUIDs (v7 where we mint them, so they sort by creation time). Environment names are
//! restricted to a safe alphabet because they appear in certificate URIs and file names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Error for an id or name that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{kind} {value:?} is not a valid UUID")]
    NotUuid { kind: &'static str, value: String },
    #[error(
        "environment name {0:?} is invalid: use 1-63 characters of lowercase letters, digits and '-', starting with a letter or digit"
    )]
    BadEnvironment(String),
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Mints a new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses the canonical textual form.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                Uuid::parse_str(value)
                    .map(Self)
                    .map_err(|_| IdError::NotUuid { kind: $kind, value: value.chars().take(64).collect() })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }
    };
}

uuid_id!(
    /// Identifies one enrolled agent; carried in its certificate's URI SAN.
    AgentId,
    "agent id"
);
uuid_id!(
    /// Identifies one run result; the coordinator stores each result id once.
    ResultId,
    "result id"
);
uuid_id!(
    /// Identifies one run the coordinator scheduled.
    RunId,
    "run id"
);

/// Name of a customer environment, e.g. `pocketos-prod`. An agent belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Environment(String);

impl Environment {
    /// Validates an environment name.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let valid_len = (1..=63).contains(&value.len());
        let valid_chars = value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let valid_start = value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if valid_len && valid_chars && valid_start {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError::BadEnvironment(value.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Environment {
    type Err = IdError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl TryFrom<String> for Environment {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Environment> for String {
    fn from(env: Environment) -> Self {
        env.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_are_restricted() {
        assert!(Environment::parse("pocketos-prod").is_ok());
        assert!(Environment::parse("a").is_ok());
        for bad in ["", "-x", "Prod", "a/b", "a b", &"x".repeat(64)] {
            assert!(Environment::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = AgentId::new();
        assert_eq!(AgentId::parse(&id.to_string()), Ok(id));
        assert!(AgentId::parse("not-a-uuid").is_err());
    }
}
