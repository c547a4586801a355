//! Integration tests: the real application, over HTTP, against real Postgres.

mod attacks;
mod auth;
mod caches;
mod cli;
mod communities;
mod concurrency;
mod faults;
mod headers;
mod helpers;
mod hostile_input;
mod import;
mod offers;
mod ops;
mod places;
mod privacy;
mod problems;
mod processes;
mod redemptions;
mod retention;
mod settings;
mod shutdown;
mod signing_keys;
mod tokens;
mod trust;
mod undo;
mod verification;
