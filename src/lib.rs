//! offergate: identity-gated offers.
//!
//! - `domain`: the rules and types, free of HTTP and SQL;
//! - `usecases`: one module per operation a caller can perform, each
//!   owning its transaction;
//! - `store`: the SQL, one file per aggregate;
//! - `auth`: API keys, their hashing and cache;
//! - `catalog`: communities and active offers, served from memory;
//! - `snapshot`: a value read once per expiry, however many ask at once;
//! - `http`: routes, extractors, DTOs and problem+json;
//! - `startup`, `config`, `db`, `telemetry`, `cli`: running the service;
//! - `fuzzing`: what the fuzz targets in `fuzz/` drive (not an API).

pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod faults;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod signing;
pub mod snapshot;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod usecases;
pub mod webhooks;
