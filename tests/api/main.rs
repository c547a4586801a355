//! Integration tests: the real application, over HTTP, against real Postgres.

mod auth;
mod cli;
mod communities;
mod helpers;
mod import;
mod offers;
mod ops;
mod privacy;
mod redemptions;
mod problems;
mod settings;
mod shutdown;
mod tokens;
mod verification;
