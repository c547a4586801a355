//! Database code: plain async functions over a Postgres executor, one file per
//! aggregate.

pub mod api_keys;
pub mod communities;
pub mod events;
pub mod health;
pub mod offers;
pub mod partners;
pub mod prune;
pub mod records;
pub mod redemptions;
pub mod sessions;
pub mod signing_keys;
pub mod stats;
pub mod tokens;
pub mod verifications;
pub mod webhooks;
