//! The rules and types of offergate. Nothing here knows about HTTP or SQL.

pub mod api_key;
