//! Who is calling: API key creation and verification.
//!
//! A request must not pay an argon2 hash, and a flood of bad keys must not
//! become a flood of hashes:
//! - malformed keys and bad checksums are refused before any lookup
//!   (`ApiKey::parse`);
//! - a key id that is not in the database is refused after one primary-key
//!   lookup, without hashing, and remembered as unknown (bounded, for
//!   `UNKNOWN_ID_MEMORY`; ids are 71 random bits drawn by the server, so no
//!   key created later has an id refused before);
//! - such lookups of ids this process has not seen are budgeted
//!   (`UNKNOWN_LOOKUPS_PER_SEC`): past the budget, as under a flood of
//!   random ids, an id is checked against the set of key ids that exist
//!   (ids only, bounded by the keys table, not by what callers send), read
//!   at most once per `UNKNOWN_ID_RECHECK`; so a flood costs a bounded
//!   number of small queries a second, whatever its rate. A key created
//!   through this process is known at once; one created elsewhere works at
//!   once outside a flood, and within `UNKNOWN_ID_RECHECK` during one;
//! - a revoked key id is remembered (bounded, for `IDLE_EVICTION`), as
//!   revocation is final;
//! - every refusal is counted in `auth_refusals_total` by reason;
//! - a verified key is cached in memory (bounded, keyed by a SHA-256 of the
//!   whole key) and re-checked against its row, without hashing, once every
//!   `revocation_delay`: a revoked key stops working within that delay;
//! - concurrent first uses of one key share a single verification;
//! - a wrong secret is remembered for a minute so retrying it costs nothing;
//! - hashing runs on the blocking pool, at most `max_concurrent_hashes` at
//!   once per process.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use moka::future::Cache;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{Mutex, RwLock, Semaphore};
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
/// How stale the set of existing key ids may be when it refuses an id.
pub const UNKNOWN_ID_RECHECK: Duration = Duration::from_secs(1);
/// How long an id found unknown is refused without a lookup.
const UNKNOWN_ID_MEMORY: Duration = Duration::from_secs(60);
/// Lookups per second of ids this process has not seen, before it relies
/// on the set of existing ids instead.
pub const UNKNOWN_LOOKUPS_PER_SEC: u32 = 20;

/// The metric counting refused API keys, labelled by `reason`.
pub const REFUSALS_METRIC: &str = "auth_refusals_total";

/// Counts one refused request under its reason (`missing`, `malformed`,
/// `unknown_key`, `wrong_secret`, `revoked`, `wrong_role`, `busy`).
pub fn count_refusal(reason: &'static str) {
    metrics::counter!(REFUSALS_METRIC, "reason" => reason).increment(1);
}

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

impl AuthError {
    fn reason(&self) -> &'static str {
        match self {
            AuthError::Unknown => "unknown_key",
            AuthError::Revoked => "revoked",
            AuthError::WrongSecret => "wrong_secret",
            AuthError::Busy => "busy",
            AuthError::Database(_) | AuthError::Hashing(_) => "error",
        }
    }
}

/// The ids of the keys that exist, as last read.
#[derive(Default)]
struct KnownIds {
    ids: HashSet<String>,
    /// The newest `created_at` read; the next read starts a minute before
    /// it, so a key whose insert committed late is not missed.
    newest: Option<OffsetDateTime>,
    read_at: Option<Instant>,
}

impl KnownIds {
    fn fresh(&self) -> bool {
        self.read_at
            .is_some_and(|at| at.elapsed() < UNKNOWN_ID_RECHECK)
    }
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
    known: RwLock<KnownIds>,
    /// One reader of the key ids at a time; the others wait and reuse it.
    reading_ids: Mutex<()>,
    revoked: Cache<String, ()>,
    unknown: Cache<String, ()>,
    /// Lookups of unseen ids in the current second: (second began, count).
    lookups: std::sync::Mutex<(Instant, u32)>,
    id_reads: AtomicU64,
    unseen_lookups: AtomicU64,
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
            known: RwLock::default(),
            reading_ids: Mutex::new(()),
            revoked: Cache::builder()
                .max_capacity(settings.cache_capacity)
                .time_to_live(IDLE_EVICTION)
                .build(),
            unknown: Cache::builder()
                .max_capacity(settings.cache_capacity)
                .time_to_live(UNKNOWN_ID_MEMORY)
                .build(),
            lookups: std::sync::Mutex::new((Instant::now(), 0)),
            id_reads: AtomicU64::new(0),
            unseen_lookups: AtomicU64::new(0),
        }
    }

    /// How many times this process has looked up an id it had not seen.
    pub fn unseen_lookups(&self) -> u64 {
        self.unseen_lookups.load(Ordering::Relaxed)
    }

    /// Takes one lookup of an unseen id from this second's budget.
    fn lookup_allowed(&self) -> bool {
        let Ok(mut budget) = self.lookups.lock() else {
            return false;
        };
        if budget.0.elapsed() >= Duration::from_secs(1) {
            *budget = (Instant::now(), 0);
        }
        if budget.1 < UNKNOWN_LOOKUPS_PER_SEC {
            budget.1 += 1;
            true
        } else {
            false
        }
    }

    /// How many times this process has read the set of key ids.
    pub fn id_reads(&self) -> u64 {
        self.id_reads.load(Ordering::Relaxed)
    }

    /// Makes a key created through this process known at once.
    pub async fn remember_new(&self, id: &KeyId) {
        self.known.write().await.ids.insert(id.as_str().to_owned());
    }

    /// Whether a key with this id may exist: `false` only when the ids read
    /// within `UNKNOWN_ID_RECHECK` do not hold it.
    async fn may_exist(&self, id: &KeyId) -> Result<bool, AuthError> {
        {
            let known = self.known.read().await;
            if known.ids.contains(id.as_str()) {
                return Ok(true);
            }
            if known.fresh() {
                return Ok(false);
            }
        }
        let _turn = self.reading_ids.lock().await;
        let since = {
            let known = self.known.read().await;
            if known.ids.contains(id.as_str()) {
                return Ok(true);
            }
            if known.fresh() {
                return Ok(false);
            }
            known.newest
        };
        self.id_reads.fetch_add(1, Ordering::Relaxed);
        let read = api_keys::ids_created_since(&self.db, since).await?;
        let mut known = self.known.write().await;
        for (key_id, created_at) in read {
            known.newest = known.newest.max(Some(created_at));
            known.ids.insert(key_id);
        }
        known.read_at = Some(Instant::now());
        Ok(known.ids.contains(id.as_str()))
    }

    pub async fn authenticate(&self, key: &ApiKey) -> Result<Principal, Arc<AuthError>> {
        let outcome = self.authenticate_uncounted(key).await;
        if let Err(error) = &outcome {
            count_refusal(error.reason());
        }
        outcome
    }

    /// How many argon2 verifications this process has run.
    pub fn hashes_computed(&self) -> u64 {
        self.hashes_computed.load(Ordering::Relaxed)
    }

    async fn authenticate_uncounted(&self, key: &ApiKey) -> Result<Principal, Arc<AuthError>> {
        if self.revoked.contains_key(key.id().as_str()) {
            return Err(Arc::new(AuthError::Revoked));
        }
        let fingerprint: Fingerprint = Sha256::digest(key.expose().as_bytes()).into();
        if self.rejected.contains_key(&fingerprint) {
            return Err(Arc::new(AuthError::WrongSecret));
        }
        if let Some(entry) = self.verified.get(&fingerprint).await {
            if entry.checked_at.elapsed() < self.revocation_delay {
                return Ok(entry.principal);
            }
            let outcome = self.recheck(fingerprint, entry).await;
            if let Err(AuthError::Revoked) = outcome {
                self.revoked.insert(key.id().as_str().to_owned(), ()).await;
            }
            return outcome.map_err(Arc::new);
        }
        let id = key.id().as_str();
        if !self.known.read().await.ids.contains(id) {
            if self.unknown.contains_key(id) {
                return Err(Arc::new(AuthError::Unknown));
            }
            // Not remembered as unknown: the set may predate a key created
            // elsewhere a moment ago, which the next read of the set finds.
            if !self.lookup_allowed() && !self.may_exist(key.id()).await.map_err(Arc::new)? {
                return Err(Arc::new(AuthError::Unknown));
            }
            self.unseen_lookups.fetch_add(1, Ordering::Relaxed);
        }
        let outcome = self
            .verified
            .try_get_with(fingerprint, self.verify(key))
            .await
            .map(|entry| entry.principal);
        if let Err(error) = &outcome {
            match **error {
                AuthError::WrongSecret => self.rejected.insert(fingerprint, ()).await,
                AuthError::Revoked => self.revoked.insert(id.to_owned(), ()).await,
                AuthError::Unknown => self.unknown.insert(id.to_owned(), ()).await,
                _ => {}
            }
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
        self.remember_new(key.id()).await;
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
    #[error("{0}")]
    ReturnOrigins(String),
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
    create_key_with_origins(db, role, partner_id, name, &[]).await
}

/// The most return origins one key may name.
pub const RETURN_ORIGINS_MAX: usize = 20;

/// `create_key`, for a checkout key whose verification sessions may also
/// return to `return_origins` (`scheme://host[:port]` each).
pub async fn create_key_with_origins(
    db: &PgPool,
    role: Role,
    partner_id: Option<Uuid>,
    name: &str,
    return_origins: &[String],
) -> Result<(ApiKey, KeyRecord), CreateKeyError> {
    if !return_origins.is_empty() && role != Role::Checkout {
        return Err(CreateKeyError::ReturnOrigins(
            "only checkout keys create verification sessions".into(),
        ));
    }
    if return_origins.len() > RETURN_ORIGINS_MAX {
        return Err(CreateKeyError::ReturnOrigins(format!(
            "at most {RETURN_ORIGINS_MAX} origins"
        )));
    }
    let return_origins = return_origins
        .iter()
        .map(|o| crate::domain::session::parse_origin(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CreateKeyError::ReturnOrigins)?;
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
            return_origins: &return_origins,
        },
    )
    .await?;
    Ok((key, record))
}
