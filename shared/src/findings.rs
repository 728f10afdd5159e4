//! The findings catalogue (`docs/findings.md`): stable `kind` codes, their default severity, and
//! the shape every finding has. Messages are written for an operator at 3 a.m.; evidence is the
//! structured fact behind the message; remediation is the concrete next step.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Critical` is the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! catalogue {
    ($($variant:ident => $code:literal, $severity:ident;)*) => {
        /// A stable finding code. The string form (`backup.stale`) is the contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FindingKind { $($variant,)* }

        impl FindingKind {
            /// Every kind, in catalogue order.
            pub const ALL: &'static [FindingKind] = &[$(FindingKind::$variant,)*];

            /// The stable code, e.g. `backup.stale`.
            pub fn code(self) -> &'static str {
                match self { $(Self::$variant => $code,)* }
            }

            /// The severity this kind has unless the situation says otherwise.
            pub fn default_severity(self) -> Severity {
                match self { $(Self::$variant => Severity::$severity,)* }
            }
        }

        impl FromStr for FindingKind {
            type Err = UnknownFindingKind;
            fn from_str(code: &str) -> Result<Self, Self::Err> {
                match code {
                    $($code => Ok(Self::$variant),)*
                    _ => Err(UnknownFindingKind(code.chars().take(64).collect())),
                }
            }
        }
    };
}

catalogue! {
    BackupMissing => "backup.missing", Critical;
    BackupStale => "backup.stale", Critical;
    BackupCoLocated => "backup.co_located", Critical;
    BackupUnrecoverable => "backup.unrecoverable", High;
    RestoreCheckFailed => "restore.check_failed", Critical;
    RestoreRtoExceeded => "restore.rto_exceeded", High;
    RestoreTimedOut => "restore.timed_out", Critical;
    DriftDetected => "drift.detected", Medium;
    CredentialExposed => "credential.exposed", High;
    CredentialDestructiveScope => "credential.destructive_scope", High;
    CredentialPurposeMismatch => "credential.purpose_mismatch", High;
    BlastRadiusShared => "blast_radius.shared", Critical;
    AssetMissing => "asset.missing", Critical;
    BackupVanished => "backup.vanished", Critical;
    TestOverdue => "test.overdue", High;
    AgentLost => "agent.lost", High;
    AgentSelfScope => "agent.self_scope", High;
    BackupShrunk => "backup.shrunk", High;
    ChannelFailing => "channel.failing", High;
    RestoreHostile => "restore.hostile", Critical;
    AgentMisconfigured => "agent.misconfigured", High;
    RestoreDataLoss => "restore.data_loss", Critical;
    GuardRefused => "guard.refused", High;
}

/// Error for a finding code outside the catalogue.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown finding kind {0:?}")]
pub struct UnknownFindingKind(pub String);

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for FindingKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for FindingKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        code.parse().map_err(serde::de::Error::custom)
    }
}

/// One problem report. `first_seen`/`last_seen` are kept by the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    /// The asset, backup or credential the finding is about.
    pub subject: String,
    pub message: String,
    /// Structured facts behind the message.
    #[serde(default)]
    pub evidence: serde_json::Value,
    /// Concrete steps that make the finding go away.
    #[serde(default)]
    pub remediation: String,
}

impl Finding {
    /// Creates a finding with the kind's default severity.
    pub fn new(kind: FindingKind, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            severity: kind.default_severity(),
            subject: subject.into(),
            message: message.into(),
            evidence: serde_json::Value::Null,
            remediation: String::new(),
        }
    }

    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    pub fn with_evidence(mut self, evidence: serde_json::Value) -> Self {
        self.evidence = evidence;
        self
    }

    /// The finding in one line, as every text surface writes it: `CRITICAL backup.stale: …`.
    pub fn one_line(&self) -> String {
        format!(
            "{} {}: {}",
            self.severity.as_str().to_uppercase(),
            self.kind,
            self.message
        )
    }

    pub fn with_remediation(mut self, remediation: impl Into<String>) -> Self {
        self.remediation = remediation.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for kind in FindingKind::ALL {
            assert!(seen.insert(kind.code()), "duplicate code {}", kind.code());
            assert_eq!(kind.code().parse::<FindingKind>(), Ok(*kind));
        }
        assert_eq!(seen.len(), 23);
    }

    #[test]
    fn severities_order_worst_last() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::High > Severity::Medium);
        assert!(Severity::Medium > Severity::Info);
    }
}
