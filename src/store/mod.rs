//! Database code: plain async functions over a Postgres executor, one file per
//! aggregate.

pub mod api_keys;
