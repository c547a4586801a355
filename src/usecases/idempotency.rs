//! Idempotency keys: a retry with the same key and body gets the first
//! answer, committed with the effect it answers for.

use serde::Serialize;

use crate::domain::Invalid;
use crate::domain::blind::BlindIndexer;

pub const KEY_MAX_CHARS: usize = 200;

/// An `Idempotency-Key` as the caller sent it: 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let key = raw.trim();
        if key.is_empty() || key.chars().count() > KEY_MAX_CHARS {
            return Err(Invalid::new(
                "Idempotency-Key",
                format!("a header of 1 to {KEY_MAX_CHARS} characters is required"),
            ));
        }
        Ok(IdempotencyKey(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key with the fingerprint of the request body it was sent with. The
/// fingerprint is keyed (a blind index): a body may hold a person's name
/// and birth date, and a plain hash of it could be guessed from a dump.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub key: IdempotencyKey,
    pub fingerprint: [u8; 16],
}

impl Keyed {
    pub fn new(indexer: &BlindIndexer, key: IdempotencyKey, body: &impl Serialize) -> Self {
        let json = serde_json::to_string(body).unwrap_or_default();
        Keyed {
            key,
            fingerprint: indexer.index("idempotent-request", &[&json]),
        }
    }
}

/// What a call answered: first, or again for a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    pub replayed: bool,
    pub value: T,
}

/// A retry raced the first call and lost on the key's primary key: the
/// whole call rolled back, and a new call reads the first answer.
fn lost_key_race(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.constraint() == Some("idempotency_keys_pkey"))
}

/// How many times a call is made again after losing a key race (the second
/// call finds the winner's answer; more is only for safety).
const KEY_RACE_RETRIES: usize = 3;

/// Makes a keyed call, and makes it again when it lost a key race, so that
/// it reads the winner's answer.
pub async fn past_key_races<T, F, Fut>(mut call: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut races = 0;
    loop {
        match call().await {
            Err(error) if lost_key_race(&error) && races < KEY_RACE_RETRIES => races += 1,
            other => return other,
        }
    }
}
