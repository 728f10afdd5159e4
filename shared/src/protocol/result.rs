//! Run results: what was restored, how it went, what was measured and found.

use chrono::{DateTime, Utc};
use lifeboat_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use super::bounds::{
    MAX_AGE_SECONDS, MAX_DETAIL_LEN, MAX_FINDINGS, MAX_NAME_LEN, MAX_TEXT_LEN, bounded, name, seconds, timestamp,
};
use super::{ProtocolError, to_timestamp};
use crate::findings::{Finding, FindingKind, Severity};
use crate::ids::{ResultId, RunId};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    TimedOut,
    Cancelled,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Error => "error",
        }
    }
}

/// What produced a result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    /// A restore test: a recovery point was restored and checked.
    #[default]
    Restore,
    /// A posture scan: inventory, locations and credentials, no restore; findings only.
    Posture,
}

impl ResultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restore => "restore",
            Self::Posture => "posture",
        }
    }

    /// Parses the stored or wire form; empty is a restore (older agents).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "" | "restore" => Some(Self::Restore),
            "posture" => Some(Self::Posture),
            _ => None,
        }
    }
}

/// One finished run: what was restored, how it went, what was measured and found.
///
/// Serialisable because the agent's spool keeps results on disk until acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub result_id: ResultId,
    pub kind: ResultKind,
    pub run_id: Option<RunId>,
    pub asset: String,
    pub backup: String,
    pub recovery_point: String,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub restore_seconds: f64,
    pub rto_seconds: f64,
    pub recovery_point_age_seconds: i64,
    pub findings: Vec<Finding>,
    pub detail: serde_json::Value,
}

fn outcome(value: i32) -> Result<Outcome, ProtocolError> {
    match pb::Outcome::try_from(value) {
        Ok(pb::Outcome::Passed) => Ok(Outcome::Passed),
        Ok(pb::Outcome::Failed) => Ok(Outcome::Failed),
        Ok(pb::Outcome::TimedOut) => Ok(Outcome::TimedOut),
        Ok(pb::Outcome::Cancelled) => Ok(Outcome::Cancelled),
        Ok(pb::Outcome::Error) => Ok(Outcome::Error),
        Ok(pb::Outcome::Unspecified) | Err(_) => {
            Err(ProtocolError::invalid("outcome", format!("unknown value {value}")))
        }
    }
}

fn outcome_to_pb(outcome: Outcome) -> pb::Outcome {
    match outcome {
        Outcome::Passed => pb::Outcome::Passed,
        Outcome::Failed => pb::Outcome::Failed,
        Outcome::TimedOut => pb::Outcome::TimedOut,
        Outcome::Cancelled => pb::Outcome::Cancelled,
        Outcome::Error => pb::Outcome::Error,
    }
}

fn severity(value: i32) -> Result<Severity, ProtocolError> {
    match pb::Severity::try_from(value) {
        Ok(pb::Severity::Info) => Ok(Severity::Info),
        Ok(pb::Severity::Medium) => Ok(Severity::Medium),
        Ok(pb::Severity::High) => Ok(Severity::High),
        Ok(pb::Severity::Critical) => Ok(Severity::Critical),
        Ok(pb::Severity::Unspecified) | Err(_) => {
            Err(ProtocolError::invalid("severity", format!("unknown value {value}")))
        }
    }
}

fn severity_to_pb(severity: Severity) -> pb::Severity {
    match severity {
        Severity::Info => pb::Severity::Info,
        Severity::Medium => pb::Severity::Medium,
        Severity::High => pb::Severity::High,
        Severity::Critical => pb::Severity::Critical,
    }
}

fn json(field: &'static str, text: String) -> Result<serde_json::Value, ProtocolError> {
    if text.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    if text.len() > MAX_DETAIL_LEN {
        return Err(ProtocolError::invalid(
            field,
            format!("longer than {MAX_DETAIL_LEN} bytes"),
        ));
    }
    serde_json::from_str(&text).map_err(|err| ProtocolError::invalid(field, format!("not JSON: {err}")))
}

fn json_text(value: &serde_json::Value) -> String {
    if value.is_null() {
        String::new()
    } else {
        value.to_string()
    }
}

fn age(field: &'static str, value: i64) -> Result<i64, ProtocolError> {
    if (-MAX_AGE_SECONDS..=MAX_AGE_SECONDS).contains(&value) {
        Ok(value)
    } else {
        Err(ProtocolError::invalid(
            field,
            format!("{value} s is more than {MAX_AGE_SECONDS} s either way"),
        ))
    }
}

impl TryFrom<pb::Finding> for Finding {
    type Error = ProtocolError;

    fn try_from(finding: pb::Finding) -> Result<Self, Self::Error> {
        let kind: FindingKind = finding
            .kind
            .parse()
            .map_err(|err: crate::findings::UnknownFindingKind| {
                ProtocolError::invalid("finding.kind", err.to_string())
            })?;
        Ok(Self {
            kind,
            severity: severity(finding.severity)?,
            subject: name("finding.subject", finding.subject)?,
            message: bounded("finding.message", finding.message, MAX_TEXT_LEN)?,
            evidence: json("finding.evidence_json", finding.evidence_json)?,
            remediation: bounded("finding.remediation", finding.remediation, MAX_TEXT_LEN)?,
        })
    }
}

impl From<Finding> for pb::Finding {
    fn from(finding: Finding) -> Self {
        Self {
            kind: finding.kind.code().to_owned(),
            severity: severity_to_pb(finding.severity) as i32,
            subject: finding.subject,
            message: finding.message,
            evidence_json: json_text(&finding.evidence),
            remediation: finding.remediation,
        }
    }
}

impl TryFrom<pb::RunResult> for RunResult {
    type Error = ProtocolError;

    fn try_from(result: pb::RunResult) -> Result<Self, Self::Error> {
        if result.findings.len() > MAX_FINDINGS {
            return Err(ProtocolError::invalid(
                "findings",
                format!("more than {MAX_FINDINGS} entries"),
            ));
        }
        let run_id = if result.run_id.is_empty() {
            None
        } else {
            Some(RunId::parse(&result.run_id).map_err(|err| ProtocolError::invalid("run_id", err.to_string()))?)
        };
        let started_at = timestamp("started_at", result.started_at)?;
        let finished_at = timestamp("finished_at", result.finished_at)?;
        if finished_at < started_at {
            return Err(ProtocolError::invalid("finished_at", "before started_at"));
        }
        Ok(Self {
            result_id: ResultId::parse(&result.result_id)
                .map_err(|err| ProtocolError::invalid("result_id", err.to_string()))?,
            kind: ResultKind::parse(&result.kind)
                .ok_or_else(|| ProtocolError::invalid("kind", "expected \"restore\" or \"posture\""))?,
            run_id,
            asset: name("asset", result.asset)?,
            backup: bounded("backup", result.backup, MAX_NAME_LEN)?,
            recovery_point: bounded("recovery_point", result.recovery_point, MAX_TEXT_LEN)?,
            outcome: outcome(result.outcome)?,
            started_at,
            finished_at,
            restore_seconds: seconds("restore_seconds", result.restore_seconds)?,
            rto_seconds: seconds("rto_seconds", result.rto_seconds)?,
            recovery_point_age_seconds: age("recovery_point_age_seconds", result.recovery_point_age_seconds)?,
            findings: result
                .findings
                .into_iter()
                .map(Finding::try_from)
                .collect::<Result<_, _>>()?,
            detail: json("detail_json", result.detail_json)?,
        })
    }
}

impl From<RunResult> for pb::RunResult {
    fn from(result: RunResult) -> Self {
        Self {
            result_id: result.result_id.to_string(),
            run_id: result.run_id.map(|id| id.to_string()).unwrap_or_default(),
            asset: result.asset,
            backup: result.backup,
            recovery_point: result.recovery_point,
            outcome: outcome_to_pb(result.outcome) as i32,
            started_at: Some(to_timestamp(result.started_at)),
            finished_at: Some(to_timestamp(result.finished_at)),
            restore_seconds: result.restore_seconds,
            rto_seconds: result.rto_seconds,
            recovery_point_age_seconds: result.recovery_point_age_seconds,
            findings: result.findings.into_iter().map(pb::Finding::from).collect(),
            detail_json: json_text(&result.detail),
            kind: result.kind.as_str().to_owned(),
        }
    }
}

impl RunResult {
    /// A minimal result, used by tests and by the agent for runs that failed before restoring.
    pub fn for_test(asset: &str, outcome: Outcome) -> Self {
        let now = Utc::now();
        Self {
            result_id: ResultId::new(),
            kind: ResultKind::Restore,
            run_id: None,
            asset: asset.to_owned(),
            backup: String::new(),
            recovery_point: String::new(),
            outcome,
            started_at: now,
            finished_at: now,
            restore_seconds: 0.0,
            rto_seconds: 0.0,
            recovery_point_age_seconds: 0,
            findings: Vec::new(),
            detail: serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_round_trips_through_protobuf() {
        let mut result = RunResult::for_test("rentals-db", Outcome::Failed);
        result.findings.push(
            Finding::new(FindingKind::BackupStale, "rentals-db", "92 days old")
                .with_evidence(serde_json::json!({"age_days": 92})),
        );
        result.detail = serde_json::json!({"checks": []});
        let wire = pb::RunResult::from(result.clone());
        let back = RunResult::try_from(wire).expect("valid");
        assert_eq!(back.result_id, result.result_id);
        assert_eq!(back.findings, result.findings);
        assert_eq!(back.detail, result.detail);
    }

    #[test]
    fn malformed_results_are_rejected() {
        let good = pb::RunResult::from(RunResult::for_test("db", Outcome::Passed));
        let finding = |message: String| pb::Finding {
            kind: "backup.stale".into(),
            severity: 1,
            subject: "s".into(),
            message,
            ..Default::default()
        };
        let cases: Vec<(&str, pb::RunResult)> = vec![
            (
                "result_id",
                pb::RunResult {
                    result_id: "nope".into(),
                    ..good.clone()
                },
            ),
            (
                "asset",
                pb::RunResult {
                    asset: String::new(),
                    ..good.clone()
                },
            ),
            (
                "outcome",
                pb::RunResult {
                    outcome: 99,
                    ..good.clone()
                },
            ),
            (
                "restore_seconds",
                pb::RunResult {
                    restore_seconds: f64::NAN,
                    ..good.clone()
                },
            ),
            (
                "rto_seconds",
                pb::RunResult {
                    rto_seconds: 1e18,
                    ..good.clone()
                },
            ),
            (
                "started_at",
                pb::RunResult {
                    started_at: None,
                    ..good.clone()
                },
            ),
            (
                "finished_at",
                pb::RunResult {
                    finished_at: Some(prost_types::Timestamp {
                        seconds: i64::MAX / 2,
                        nanos: 0,
                    }),
                    ..good.clone()
                },
            ),
            (
                "recovery_point_age_seconds",
                pb::RunResult {
                    recovery_point_age_seconds: i64::MIN,
                    ..good.clone()
                },
            ),
            (
                "detail_json",
                pb::RunResult {
                    detail_json: "{".into(),
                    ..good.clone()
                },
            ),
            (
                "asset",
                pb::RunResult {
                    asset: "x".repeat(MAX_NAME_LEN + 1),
                    ..good.clone()
                },
            ),
            (
                "finding.kind",
                pb::RunResult {
                    findings: vec![pb::Finding {
                        kind: "made.up".into(),
                        ..finding(String::new())
                    }],
                    ..good.clone()
                },
            ),
            (
                "finding.message",
                pb::RunResult {
                    findings: vec![finding("e".repeat(MAX_TEXT_LEN + 1))],
                    ..good.clone()
                },
            ),
        ];
        for (field, message) in cases {
            let err = RunResult::try_from(message).expect_err(field);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }
}
