//! Who is calling: API key creation and verification.
//!
//! A request must not pay an argon2 hash, and a flood of bad keys must not
//! become a flood of hashes:
//! - malformed keys and bad checksums are refused before any lookup
//!   (`ApiKey::parse`);
//! - a key id that is not in the database is refused after one primary-key
//!   lookup, without hashing;
//! - a verified key is cached in memory (bounded, keyed by a SHA-256 of the
//!   whole key) and re-checked against its row, without hashing, once every
//!   `revocation_delay`: a revoked key stops working within that delay;
//! - concurrent first uses of one key share a single verification;
//! - a wrong secret is remembered for a minute so retrying it costs nothing;
//! - hashing runs on the blocking pool, at most `max_concurrent_hashes` at
//!   once per process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use moka::future::Cache;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::config::AuthSettings;
use crate::domain::api_key::{ApiKey, KeyId, Role};
use crate::store::api_keys::{self, KeyRecord, NewKey};

/// How long a caller waits for a turn to hash before being told to retry.
const HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a wrong secret is remembered.
const REJECTION_MEMORY: Duration = Duration::from_secs(60);
/// A cached key unused for this long is dropped.
const IDLE_EVICTION: Duration = Duration::from_secs(600);

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: KeyId,
    pub role: Role,
    pub partner_id: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown API key")]
    Unknown,
    #[error("API key revoked")]
    Revoked,
    #[error("wrong API key secret")]
    WrongSecret,
    #[error("too many API keys being checked at once")]
    Busy,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("API key hashing failed: {0}")]
    Hashing(String),
}

#[derive(Clone)]
struct Verified {
    principal: Principal,
    secret_hash: Arc<str>,
    checked_at: Instant,
}

type Fingerprint = [u8; 32];

pub struct KeyVerifier {
    db: PgPool,
    verified: Cache<Fingerprint, Verified>,
    rejected: Cache<Fingerprint, ()>,
    hashing: Semaphore,
    revocation_delay: Duration,
    hashes_computed: AtomicU64,
}

impl KeyVerifier {
    pub fn new(db: PgPool, settings: &AuthSettings) -> Self {
        KeyVerifier {
            db,
            verified: Cache::builder()
                .max_capacity(settings.cache_capacity)
                .time_to_idle(IDLE_EVICTION)
                .build(),
            rejected: Cache::builder()
                .max_capacity(settings.cache_capacity)
                .time_to_live(REJECTION_MEMORY)
                .build(),
            hashing: Semaphore::new(settings.max_concurrent_hashes),
            revocation_delay: Duration::from_secs(settings.revocation_delay_secs),
            hashes_computed: AtomicU64::new(0),
        }
    }

    /// How many argon2 verifications this process has run.
    pub fn hashes_computed(&self) -> u64 {
        self.hashes_computed.load(Ordering::Relaxed)
    }

    pub async fn authenticate(&self, key: &ApiKey) -> Result<Principal, Arc<AuthError>> {
        let fingerprint: Fingerprint = Sha256::digest(key.expose().as_bytes()).into();
        if self.rejected.contains_key(&fingerprint) {
            return Err(Arc::new(AuthError::WrongSecret));
        }
        if let Some(entry) = self.verified.get(&fingerprint).await {
            if entry.checked_at.elapsed() < self.revocation_delay {
                return Ok(entry.principal);
            }
            return self.recheck(fingerprint, entry).await.map_err(Arc::new);
        }
        let outcome = self
            .verified
            .try_get_with(fingerprint, self.verify(key))
            .await
            .map(|entry| entry.principal);
        if let Err(error) = &outcome
            && matches!(**error, AuthError::WrongSecret)
        {
            self.rejected.insert(fingerprint, ()).await;
        }
        outcome
    }

    /// Confirms a cached key is still live, by id, without hashing.
    async fn recheck(
        &self,
        fingerprint: Fingerprint,
        entry: Verified,
    ) -> Result<Principal, AuthError> {
        let row = api_keys::credentials(&self.db, &entry.principal.key_id).await?;
        match row {
            Some(row) if !row.revoked && *row.secret_hash == *entry.secret_hash => {
                let principal = entry.principal.clone();
                self.verified
                    .insert(
                        fingerprint,
                        Verified {
                            checked_at: Instant::now(),
                            ..entry
                        },
                    )
                    .await;
                Ok(principal)
            }
            Some(row) if row.revoked => {
                self.verified.invalidate(&fingerprint).await;
                Err(AuthError::Revoked)
            }
            _ => {
                self.verified.invalidate(&fingerprint).await;
                Err(AuthError::Unknown)
            }
        }
    }

    async fn verify(&self, key: &ApiKey) -> Result<Verified, AuthError> {
        let row = api_keys::credentials(&self.db, key.id())
            .await?
            .ok_or(AuthError::Unknown)?;
        if row.revoked {
            return Err(AuthError::Revoked);
        }
        let _turn = tokio::time::timeout(HASH_QUEUE_TIMEOUT, self.hashing.acquire())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        self.hashes_computed.fetch_add(1, Ordering::Relaxed);
        let secret = key.secret().to_owned();
        let stored = row.secret_hash.clone();
        let matches = tokio::task::spawn_blocking(move || secret_matches(&secret, &stored))
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))??;
        if !matches {
            return Err(AuthError::WrongSecret);
        }
        Ok(Verified {
            principal: Principal {
                key_id: key.id().clone(),
                role: row.role,
                partner_id: row.partner_id,
            },
            secret_hash: Arc::from(row.secret_hash),
            checked_at: Instant::now(),
        })
    }
}

fn secret_matches(secret: &str, stored: &str) -> Result<bool, AuthError> {
    let hash = PasswordHash::new(stored).map_err(|e| AuthError::Hashing(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(secret.as_bytes(), &hash)
        .is_ok())
}

#[derive(Debug, thiserror::Error)]
pub enum CreateKeyError {
    #[error("a partner key needs the partner it acts for")]
    PartnerRequired,
    #[error("only partner keys are bound to a partner")]
    PartnerNotAllowed,
    #[error("no partner has this id")]
    UnknownPartner,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("hashing the new key failed: {0}")]
    Hashing(String),
}

/// Creates a key. The returned `ApiKey` is the only time its secret exists
/// outside the caller's hands.
pub async fn create_key(
    db: &PgPool,
    role: Role,
    partner_id: Option<Uuid>,
    name: &str,
) -> Result<(ApiKey, KeyRecord), CreateKeyError> {
    match (role, partner_id) {
        (Role::Partner, None) => return Err(CreateKeyError::PartnerRequired),
        (Role::Admin | Role::Checkout, Some(_)) => return Err(CreateKeyError::PartnerNotAllowed),
        (Role::Partner, Some(partner)) if !crate::store::partners::exists(db, partner).await? => {
            return Err(CreateKeyError::UnknownPartner);
        }
        _ => {}
    }
    let key = ApiKey::generate();
    let secret = key.secret().to_owned();
    let secret_hash = tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(secret.as_bytes())
            .map(|hash| hash.to_string())
    })
    .await
    .map_err(|e| CreateKeyError::Hashing(e.to_string()))?
    .map_err(|e| CreateKeyError::Hashing(e.to_string()))?;
    let record = api_keys::insert(
        db,
        NewKey {
            id: key.id(),
            name,
            role,
            partner_id,
            secret_hash: &secret_hash,
        },
    )
    .await?;
    Ok((key, record))
}
