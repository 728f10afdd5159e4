//! Validated domain types for the agent/coordinator protocol.
//!
//! Generated messages (`lifeboat_proto::v1`) are converted here, once, on receive: every field is
//! checked (ids parse, names are bounded, numbers are finite, enums are known), so the rest of the
//! code never sees a malformed message. A failed conversion is a [`ProtocolError`], which becomes
//! `InvalidArgument` on the wire — never a panic.

use chrono::{DateTime, Utc};
use lifeboat_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::findings::{Finding, FindingKind, Severity};
use crate::ids::{ResultId, RunId};

/// Longest name (asset, backup, hostname, ...) accepted in a message.
pub const MAX_NAME_LEN: usize = 256;
/// Longest free text (finding message, remediation) accepted in a message.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Largest structured detail document (JSON) accepted in a result.
pub const MAX_DETAIL_LEN: usize = 1024 * 1024;
/// Most findings one result may carry.
pub const MAX_FINDINGS: usize = 1_000;
/// Most entries of each list in one inventory.
pub const MAX_INVENTORY_ITEMS: usize = 10_000;

/// A message that does not satisfy the protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("invalid field {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl ProtocolError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<ProtocolError> for tonic::Status {
    fn from(err: ProtocolError) -> Self {
        tonic::Status::invalid_argument(err.to_string())
    }
}

fn name(field: &'static str, value: String) -> Result<String, ProtocolError> {
    if value.is_empty() {
        return Err(ProtocolError::Missing(field));
    }
    bounded(field, value, MAX_NAME_LEN)
}

fn bounded(field: &'static str, value: String, max: usize) -> Result<String, ProtocolError> {
    if value.len() > max {
        return Err(ProtocolError::invalid(field, format!("longer than {max} bytes")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ProtocolError::invalid(field, "contains control characters"));
    }
    Ok(value)
}

fn seconds(field: &'static str, value: f64) -> Result<f64, ProtocolError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ProtocolError::invalid(
            field,
            format!("{value} is not a non-negative number"),
        ))
    }
}

/// Converts a protobuf timestamp, rejecting out-of-range values.
pub fn timestamp(field: &'static str, value: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, ProtocolError> {
    let value = value.ok_or(ProtocolError::Missing(field))?;
    let nanos = u32::try_from(value.nanos).map_err(|_| ProtocolError::invalid(field, "negative nanos"))?;
    DateTime::from_timestamp(value.seconds, nanos).ok_or_else(|| ProtocolError::invalid(field, "out of range"))
}

/// Converts a time to a protobuf timestamp.
pub fn to_timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// What an agent can do, announced in its Hello and used to pick agents for runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub postgres_majors: Vec<u32>,
    pub restic: bool,
    pub sqlite: bool,
    pub features: Vec<String>,
}

/// First message of every session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub agent_version: String,
    pub hostname: String,
    pub capabilities: Capabilities,
}

/// Periodic liveness signal; the coordinator echoes the sequence for round-trip measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub sequence: u64,
    pub sent_at: DateTime<Utc>,
    pub running: u32,
    pub spooled: u32,
}

/// A failure domain: where a thing lives, so that shared fates can be found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

/// One declared asset, as reported in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetDecl {
    pub name: String,
    pub kind: String,
    pub rpo_seconds: u64,
    pub rto_seconds: u64,
    pub location: Location,
    /// How often a restore test must pass; 0 means the default (24 h).
    #[serde(default)]
    pub test_interval_seconds: u64,
}

/// One declared backup source, as reported in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupDecl {
    pub name: String,
    pub asset: String,
    pub kind: String,
    pub location: Location,
}

/// One declared test plan, as reported in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestDecl {
    pub asset: String,
    pub schedule: String,
    pub pick: String,
    pub timeout_seconds: u64,
    pub checks: Vec<String>,
}

/// What an agent protects and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub assets: Vec<AssetDecl>,
    pub backups: Vec<BackupDecl>,
    pub tests: Vec<TestDecl>,
}

/// Progress of a running test, streamed while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunProgress {
    pub run_id: RunId,
    pub phase: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub objects_done: u64,
    pub elapsed_seconds: f64,
}

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

/// Everything an agent may send on its session.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentMessage {
    Hello(Hello),
    Heartbeat(Heartbeat),
    Inventory(Inventory),
    Progress(RunProgress),
    Result(Box<RunResult>),
}

impl TryFrom<pb::AgentMessage> for AgentMessage {
    type Error = ProtocolError;

    fn try_from(message: pb::AgentMessage) -> Result<Self, Self::Error> {
        use pb::agent_message::Body;
        Ok(match message.body.ok_or(ProtocolError::Missing("body"))? {
            Body::Hello(hello) => Self::Hello(hello.try_into()?),
            Body::Heartbeat(heartbeat) => Self::Heartbeat(heartbeat.try_into()?),
            Body::Inventory(inventory) => Self::Inventory(inventory.try_into()?),
            Body::Progress(progress) => Self::Progress(progress.try_into()?),
            Body::Result(result) => Self::Result(Box::new(result.try_into()?)),
        })
    }
}

impl TryFrom<pb::Hello> for Hello {
    type Error = ProtocolError;

    fn try_from(hello: pb::Hello) -> Result<Self, Self::Error> {
        let capabilities = hello.capabilities.unwrap_or_default();
        if capabilities.features.len() > 64 {
            return Err(ProtocolError::invalid("capabilities.features", "more than 64 entries"));
        }
        Ok(Self {
            agent_version: name("agent_version", hello.agent_version)?,
            hostname: name("hostname", hello.hostname)?,
            capabilities: Capabilities {
                postgres_majors: capabilities.postgres_majors,
                restic: capabilities.restic,
                sqlite: capabilities.sqlite,
                features: capabilities
                    .features
                    .into_iter()
                    .map(|feature| name("capabilities.features", feature))
                    .collect::<Result<_, _>>()?,
            },
        })
    }
}

impl From<Hello> for pb::Hello {
    fn from(hello: Hello) -> Self {
        Self {
            agent_version: hello.agent_version,
            hostname: hello.hostname,
            capabilities: Some(pb::Capabilities {
                postgres_majors: hello.capabilities.postgres_majors,
                restic: hello.capabilities.restic,
                sqlite: hello.capabilities.sqlite,
                features: hello.capabilities.features,
            }),
        }
    }
}

impl TryFrom<pb::Heartbeat> for Heartbeat {
    type Error = ProtocolError;

    fn try_from(heartbeat: pb::Heartbeat) -> Result<Self, Self::Error> {
        Ok(Self {
            sequence: heartbeat.sequence,
            sent_at: timestamp("sent_at", heartbeat.sent_at)?,
            running: heartbeat.running,
            spooled: heartbeat.spooled,
        })
    }
}

impl From<Heartbeat> for pb::Heartbeat {
    fn from(heartbeat: Heartbeat) -> Self {
        Self {
            sequence: heartbeat.sequence,
            sent_at: Some(to_timestamp(heartbeat.sent_at)),
            running: heartbeat.running,
            spooled: heartbeat.spooled,
        }
    }
}

fn optional_name(field: &'static str, value: String) -> Result<Option<String>, ProtocolError> {
    if value.is_empty() {
        Ok(None)
    } else {
        name(field, value).map(Some)
    }
}

impl TryFrom<pb::Location> for Location {
    type Error = ProtocolError;

    fn try_from(location: pb::Location) -> Result<Self, Self::Error> {
        Ok(Self {
            provider: optional_name("location.provider", location.provider)?,
            account: optional_name("location.account", location.account)?,
            region: optional_name("location.region", location.region)?,
            host: optional_name("location.host", location.host)?,
            volume: optional_name("location.volume", location.volume)?,
        })
    }
}

impl From<Location> for pb::Location {
    fn from(location: Location) -> Self {
        Self {
            provider: location.provider.unwrap_or_default(),
            account: location.account.unwrap_or_default(),
            region: location.region.unwrap_or_default(),
            host: location.host.unwrap_or_default(),
            volume: location.volume.unwrap_or_default(),
        }
    }
}

fn bounded_list<T, U>(
    field: &'static str,
    items: Vec<T>,
    convert: impl Fn(T) -> Result<U, ProtocolError>,
) -> Result<Vec<U>, ProtocolError> {
    if items.len() > MAX_INVENTORY_ITEMS {
        return Err(ProtocolError::invalid(
            field,
            format!("more than {MAX_INVENTORY_ITEMS} entries"),
        ));
    }
    items.into_iter().map(convert).collect()
}

impl TryFrom<pb::Inventory> for Inventory {
    type Error = ProtocolError;

    fn try_from(inventory: pb::Inventory) -> Result<Self, Self::Error> {
        Ok(Self {
            assets: bounded_list("assets", inventory.assets, |asset| {
                Ok(AssetDecl {
                    name: name("asset.name", asset.name)?,
                    kind: name("asset.kind", asset.kind)?,
                    rpo_seconds: asset.rpo_seconds,
                    rto_seconds: asset.rto_seconds,
                    location: asset.location.unwrap_or_default().try_into()?,
                    test_interval_seconds: asset.test_interval_seconds,
                })
            })?,
            backups: bounded_list("backups", inventory.backups, |backup| {
                Ok(BackupDecl {
                    name: name("backup.name", backup.name)?,
                    asset: name("backup.asset", backup.asset)?,
                    kind: name("backup.kind", backup.kind)?,
                    location: backup.location.unwrap_or_default().try_into()?,
                })
            })?,
            tests: bounded_list("tests", inventory.tests, |test| {
                Ok(TestDecl {
                    asset: name("test.asset", test.asset)?,
                    schedule: name("test.schedule", test.schedule)?,
                    pick: name("test.pick", test.pick)?,
                    timeout_seconds: test.timeout_seconds,
                    checks: bounded_list("test.checks", test.checks, |check| name("test.check", check))?,
                })
            })?,
        })
    }
}

impl From<Inventory> for pb::Inventory {
    fn from(inventory: Inventory) -> Self {
        Self {
            assets: inventory
                .assets
                .into_iter()
                .map(|asset| pb::AssetDecl {
                    name: asset.name,
                    kind: asset.kind,
                    rpo_seconds: asset.rpo_seconds,
                    rto_seconds: asset.rto_seconds,
                    location: Some(asset.location.into()),
                    test_interval_seconds: asset.test_interval_seconds,
                })
                .collect(),
            backups: inventory
                .backups
                .into_iter()
                .map(|backup| pb::BackupDecl {
                    name: backup.name,
                    asset: backup.asset,
                    kind: backup.kind,
                    location: Some(backup.location.into()),
                })
                .collect(),
            tests: inventory
                .tests
                .into_iter()
                .map(|test| pb::TestDecl {
                    asset: test.asset,
                    schedule: test.schedule,
                    pick: test.pick,
                    timeout_seconds: test.timeout_seconds,
                    checks: test.checks,
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::RunProgress> for RunProgress {
    type Error = ProtocolError;

    fn try_from(progress: pb::RunProgress) -> Result<Self, Self::Error> {
        Ok(Self {
            run_id: RunId::parse(&progress.run_id).map_err(|err| ProtocolError::invalid("run_id", err.to_string()))?,
            phase: name("phase", progress.phase)?,
            bytes_done: progress.bytes_done,
            bytes_total: progress.bytes_total,
            objects_done: progress.objects_done,
            elapsed_seconds: seconds("elapsed_seconds", progress.elapsed_seconds)?,
        })
    }
}

impl From<RunProgress> for pb::RunProgress {
    fn from(progress: RunProgress) -> Self {
        Self {
            run_id: progress.run_id.to_string(),
            phase: progress.phase,
            bytes_done: progress.bytes_done,
            bytes_total: progress.bytes_total,
            objects_done: progress.objects_done,
            elapsed_seconds: progress.elapsed_seconds,
        }
    }
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
            recovery_point_age_seconds: result.recovery_point_age_seconds,
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
                "started_at",
                pb::RunResult {
                    started_at: None,
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
                        severity: 1,
                        subject: "s".into(),
                        ..Default::default()
                    }],
                    ..good.clone()
                },
            ),
        ];
        for (field, message) in cases {
            let err = RunResult::try_from(message).expect_err(field);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn empty_message_is_rejected() {
        assert_eq!(
            AgentMessage::try_from(pb::AgentMessage { body: None }),
            Err(ProtocolError::Missing("body"))
        );
    }
}
