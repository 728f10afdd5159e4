//! The Lifeboat agent.
pub mod reconnect;
pub mod spool;
