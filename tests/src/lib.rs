//! Test harness for Lifeboat's end-to-end tests.
pub mod postgres;
