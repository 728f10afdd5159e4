//! Generated code for the Lifeboat protocol (`proto/lifeboat/v1/*.proto`). No logic lives here:
//! validation and domain types are in `lifeboat-shared`.
#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

/// Version 1 of the agent/coordinator protocol.
pub mod v1 {
    tonic::include_proto!("lifeboat.v1");
}
