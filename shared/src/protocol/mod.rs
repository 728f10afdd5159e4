//! Validated domain types for the agent/coordinator protocol.
//!
//! Generated messages (`lifeboat_proto::v1`) are converted here, once, on receive: every field is
//! checked (ids parse, names and texts are bounded, numbers are within the maxima of [`bounds`],
//! enums are known), so the rest of the code never sees a malformed message. A failed conversion
//! is a [`ProtocolError`]; the coordinator answers it with `InvalidArgument`, or, for a result or
//! an inventory, with a per-message rejection that keeps the session up — never a panic.
//!
//! - [`bounds`]: the maxima and the checks that enforce them.
//! - [`inventory`]: assets, backups and tests as an agent declares them.
//! - [`result`]: run results and their findings.

pub mod bounds;
pub mod inventory;
pub mod result;

use chrono::{DateTime, Utc};
use lifeboat_proto::v1 as pb;
use serde::{Deserialize, Serialize};

pub use bounds::{
    MAX_DETAIL_LEN, MAX_FINDINGS, MAX_INVENTORY_ITEMS, MAX_NAME_LEN, MAX_OBJECTIVE_SECONDS, MAX_TEST_TIMEOUT_SECONDS,
    MAX_TEXT_LEN, timestamp,
};
pub use inventory::{AssetDecl, BackupDecl, Inventory, Location, TestDecl};
pub use result::{Outcome, ResultKind, RunResult};

use crate::ids::RunId;
use bounds::{MAX_CAPABILITIES, MAX_POSTGRES_MAJOR, bounded_list, counter, name, seconds};

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
        let postgres_majors = bounded_list(
            "capabilities.postgres_majors",
            capabilities.postgres_majors,
            MAX_CAPABILITIES,
            |major| {
                if major <= MAX_POSTGRES_MAJOR {
                    Ok(major)
                } else {
                    Err(ProtocolError::invalid(
                        "capabilities.postgres_majors",
                        format!("{major} is not a PostgreSQL major version"),
                    ))
                }
            },
        )?;
        Ok(Self {
            agent_version: name("agent_version", hello.agent_version)?,
            hostname: name("hostname", hello.hostname)?,
            capabilities: Capabilities {
                postgres_majors,
                restic: capabilities.restic,
                sqlite: capabilities.sqlite,
                features: bounded_list(
                    "capabilities.features",
                    capabilities.features,
                    MAX_CAPABILITIES,
                    |feature| name("capabilities.features", feature),
                )?,
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

impl TryFrom<pb::RunProgress> for RunProgress {
    type Error = ProtocolError;

    fn try_from(progress: pb::RunProgress) -> Result<Self, Self::Error> {
        Ok(Self {
            run_id: RunId::parse(&progress.run_id).map_err(|err| ProtocolError::invalid("run_id", err.to_string()))?,
            phase: name("phase", progress.phase)?,
            bytes_done: counter("bytes_done", progress.bytes_done)?,
            bytes_total: counter("bytes_total", progress.bytes_total)?,
            objects_done: counter("objects_done", progress.objects_done)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_message_is_rejected() {
        assert_eq!(
            AgentMessage::try_from(pb::AgentMessage { body: None }),
            Err(ProtocolError::Missing("body"))
        );
    }

    #[test]
    fn hello_capabilities_are_bounded() {
        let hello = |majors: Vec<u32>, features: usize| pb::Hello {
            agent_version: "0.1.0".into(),
            hostname: "host".into(),
            capabilities: Some(pb::Capabilities {
                postgres_majors: majors,
                features: vec!["files".into(); features],
                ..Default::default()
            }),
        };
        assert!(Hello::try_from(hello(vec![15, 16], 3)).is_ok());
        assert!(Hello::try_from(hello(vec![u32::MAX], 0)).is_err());
        assert!(Hello::try_from(hello(vec![15; MAX_CAPABILITIES + 1], 0)).is_err());
        assert!(Hello::try_from(hello(Vec::new(), MAX_CAPABILITIES + 1)).is_err());
    }

    #[test]
    fn progress_numbers_are_bounded() {
        let progress = pb::RunProgress {
            run_id: RunId::new().to_string(),
            phase: "restore".into(),
            bytes_done: u64::MAX,
            ..Default::default()
        };
        let err = RunProgress::try_from(progress).expect_err("too large");
        assert!(err.to_string().contains("bytes_done"), "{err}");
    }
}
