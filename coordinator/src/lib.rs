//! The Lifeboat coordinator.
pub mod store;
