//! RFC 3339 instants in requests, read as `domain::instant` keeps them: in
//! UTC, within the years 0000 to 9999. Use with
//! `#[serde(default, deserialize_with = "super::instant::option")]`.

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;

use crate::domain::instant;

pub fn option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(raw) => instant::parse_rfc3339(&raw)
            .map(Some)
            .map_err(|bad| serde::de::Error::custom(bad.message())),
    }
}

pub fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
    let raw = String::deserialize(deserializer)?;
    instant::parse_rfc3339(&raw).map_err(|bad| serde::de::Error::custom(bad.message()))
}
