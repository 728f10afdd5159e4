//! A small generated rental business (customers and bookings of the last 30 days), the
//! "production database" of the restore and incident tests — the same one the demo builds.

/// 2,000 customers and 50,000 bookings created over the last 720 hours.
pub const SCHEMA_AND_DATA: &str = include_str!("../../coordinator/src/demo/rentals.sql");
