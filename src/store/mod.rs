//! Database code: plain async functions over a Postgres executor, one file per
//! aggregate.

pub mod api_keys;
pub mod communities;
pub mod records;
pub mod verifications;
