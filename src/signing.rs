//! Token signing keys and the tokens' JWS form.
//!
//! Ed25519 keys live in Postgres so every process signs and verifies alike;
//! the private halves are sealed with AES-256-GCM under the key-encryption
//! key from the environment. Verification pins EdDSA, requires exp, nbf,
//! aud, iss, sub and jti, and accepts only kids of our own form, looked up
//! by exact value.
//!
//! What every request repeats comes from memory: the signing key (for
//! `ACTIVE_KEY_TTL`), the JWKS and the revoked kids (as long), unsealed keys
//! and public keys by kid (a kid's key never changes). A revoked key
//! therefore stops verifying on every process within `ACTIVE_KEY_TTL`; the
//! redemption itself refuses its tokens at once (`redeem_token`).
//!
//! A token's `sub` is opaque per token: a keyed hash of its id, so the same
//! person is a different subject on every token and every offer, and a
//! token signed again from its row is byte-identical.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use moka::future::Cache;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::snapshot::Snapshot;
use crate::store::signing_keys::{self, NewKey, RevokedKey, SealedKey};

/// How long a process keeps using the signing key it looked up, and the
/// JWKS it read; a rotation reaches every process within this time.
const ACTIVE_KEY_TTL: Duration = Duration::from_secs(5);

/// How long a process may go on using what it read of the keys: after a
/// revocation, a process may sign with the revoked key for this long.
pub const KEY_REFRESH: Duration = ACTIVE_KEY_TTL;
const NONCE_LEN: usize = 12;
/// What a token signed by a key that is not ours, or no longer ours, is
/// refused with.
pub const UNKNOWN_KEY: &str = "the token names an unknown key";
/// The purpose the subject key is derived under, from the key-encryption
/// key; and the purpose of a token's subject under that key.
const SUBJECT_KEY_PURPOSE: &[u8] = b"offergate:token-subject-key";
const SUBJECT_PURPOSE: &[u8] = b"token:subject";
const SUBJECT_LEN: usize = 16;

/// The claims of an offer token. `sub` is opaque per token (see
/// `KeyRing::subject_of`): it names nobody, and two tokens of one person
/// share nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub offer_id: String,
    pub community: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key-encryption key must be 32 bytes written as 64 hex digits")]
    BadKek,
    #[error("a signing key cannot be unsealed with this key-encryption key")]
    Unseal,
    #[error("making a signing key failed: {0}")]
    Make(String),
    #[error("no signing key has the kid `{0}`")]
    UnknownKid(String),
    #[error("`{0}` is not a signing key id (16 hex digits)")]
    MalformedKid(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A failure met by one lookup and handed to every caller that waited
    /// on it.
    #[error(transparent)]
    Shared(Arc<KeyError>),
}

impl KeyError {
    /// The error a cache shared among its waiters, as one caller's own.
    fn unshared(error: Arc<KeyError>) -> KeyError {
        match &*error {
            KeyError::BadKek => KeyError::BadKek,
            KeyError::Unseal => KeyError::Unseal,
            KeyError::Make(why) => KeyError::Make(why.clone()),
            KeyError::UnknownKid(kid) => KeyError::UnknownKid(kid.clone()),
            KeyError::MalformedKid(kid) => KeyError::MalformedKid(kid.clone()),
            KeyError::Database(_) | KeyError::Shared(_) => {
                Arc::try_unwrap(error).unwrap_or_else(KeyError::Shared)
            }
        }
    }
}

/// A key that signs: the current one, or a retired one looked up by kid.
pub struct ActiveKey {
    kid: String,
    encoding: EncodingKey,
}

impl ActiveKey {
    /// A signing key from its kid and its private half (PKCS#8 DER).
    pub fn from_pkcs8(kid: String, pkcs8_der: &[u8]) -> Self {
        ActiveKey {
            kid,
            encoding: EncodingKey::from_ed_der(pkcs8_der),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| KeyError::Make(e.to_string()))
    }
}

pub struct KeyRing {
    db: PgPool,
    kek: Aes256Gcm,
    /// Keyed for token subjects, under a purpose of its own.
    subjects: Hmac<Sha256>,
    pub issuer: String,
    pub audience: String,
    public_keys: Cache<String, Option<Arc<DecodingKey>>>,
    /// Unsealed signing keys by kid, retired or not.
    signing_keys: Cache<String, Arc<ActiveKey>>,
    active: Snapshot<Arc<ActiveKey>>,
    published: Snapshot<Arc<[Jwk]>>,
    revoked: Snapshot<Arc<HashSet<String>>>,
    rules: TokenRules,
}

/// What a token must satisfy apart from its key being ours and live: the
/// checks of [`KeyRing::verify`] that need no database.
pub struct TokenRules {
    /// Built once: it allocates.
    validation: Validation,
    /// The same, for reporting an expired token's state.
    validation_past_exp: Validation,
}

impl TokenRules {
    pub fn new(issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        let mut validation_past_exp = validation.clone();
        validation_past_exp.validate_exp = false;
        TokenRules {
            validation,
            validation_past_exp,
        }
    }

    /// The kid a token names, read from its header before any key is
    /// looked up: an EdDSA token naming a kid of our form, or an error.
    pub fn kid_of(&self, token: &str) -> Result<String, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid("only EdDSA tokens are accepted".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("the token names no key".into()))?;
        if !kid_is_ours(&kid) {
            return Err(TokenError::Invalid(UNKNOWN_KEY.into()));
        }
        Ok(kid)
    }

    /// The token's claims, once its signature under `key` and its claims
    /// hold. With `allow_expired`, an expired token still passes.
    pub fn claims(
        &self,
        token: &str,
        key: &DecodingKey,
        allow_expired: bool,
    ) -> Result<TokenClaims, TokenError> {
        let validation = if allow_expired {
            &self.validation_past_exp
        } else {
            &self.validation
        };
        match jsonwebtoken::decode::<TokenClaims>(token, key, validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenError::Expired)
            }
            Err(e) => Err(TokenError::Invalid(e.to_string())),
        }
    }
}

/// A public key as published in the JWKS.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub usage: &'static str,
    pub kid: String,
    pub x: String,
}

fn kid_is_ours(kid: &str) -> bool {
    kid.len() == 16
        && kid
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl KeyRing {
    pub fn new(db: PgPool, kek_hex: &str, issuer: &str, audience: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(kek_hex).map_err(|_| KeyError::BadKek)?;
        let kek = Aes256Gcm::new_from_slice(&bytes).map_err(|_| KeyError::BadKek)?;
        let subjects = subject_key(&bytes)?;
        Ok(KeyRing {
            db,
            kek,
            subjects,
            rules: TokenRules::new(issuer, audience),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            public_keys: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(Duration::from_secs(3_600))
                .build(),
            signing_keys: Cache::builder()
                .max_capacity(1_000)
                .time_to_idle(Duration::from_secs(3_600))
                .build(),
            active: Snapshot::new(ACTIVE_KEY_TTL),
            published: Snapshot::new(ACTIVE_KEY_TTL),
            revoked: Snapshot::new(ACTIVE_KEY_TTL),
        })
    }

    /// A token's subject: HMAC-SHA-256 of its id under the subject key,
    /// truncated to 16 bytes, base64url. Opaque per token (a partner cannot
    /// link two tokens of one person), computed again from the id alone (a
    /// replayed issuance is byte-identical), and it holds nothing reusable.
    pub fn subject_of(&self, token_id: Uuid) -> String {
        let mut mac = self.subjects.clone();
        mac.update(SUBJECT_PURPOSE);
        mac.update(&[0x1f]);
        mac.update(token_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&digest[..SUBJECT_LEN])
    }

    fn seal(&self, kid: &str, secret: &[u8]) -> Result<Vec<u8>, KeyError> {
        seal_under(&self.kek, kid.as_bytes(), secret)
            .ok_or_else(|| KeyError::Make("sealing failed".into()))
    }

    fn unseal(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        unseal_under(&self.kek, kid.as_bytes(), sealed).ok_or(KeyError::Unseal)
    }

    /// Adds a signing key and makes it the one that signs; older keys stay
    /// published while tokens they signed may be live. Returns its kid. This
    /// process signs with it and publishes it at once; the others within
    /// `ACTIVE_KEY_TTL`.
    pub async fn rotate(&self) -> Result<String, KeyError> {
        let kid = self.add_key().await?;
        self.active.forget();
        self.published.forget();
        Ok(kid)
    }

    async fn add_key(&self) -> Result<String, KeyError> {
        let made = self.make_key()?;
        signing_keys::rotate_to(&self.db, &made.as_new()).await?;
        Ok(made.kid)
    }

    fn make_key(&self) -> Result<MadeKey, KeyError> {
        let seed: [u8; 32] = rand::rng().random();
        let signing = SigningKey::from_bytes(&seed);
        let pkcs8 = signing
            .to_pkcs8_der()
            .map_err(|e| KeyError::Make(e.to_string()))?;
        let kid = hex::encode(rand::rng().random::<[u8; 8]>());
        let sealed = self.seal(&kid, pkcs8.as_bytes())?;
        Ok(MadeKey {
            public_key: signing.verifying_key().to_bytes(),
            sealed,
            kid,
        })
    }

    /// Revokes a signing key: out of the JWKS, and its tokens refused at
    /// redemption at once and by every process's verification within
    /// `ACTIVE_KEY_TTL`. When it is the key that signs now, a new key takes
    /// over in the same transaction, so there is no moment without a
    /// signing key. The private half stays sealed in the database, so an
    /// idempotent retry of an issuance it signed still gets its first (now
    /// refused) token; nothing new is signed with it.
    pub async fn revoke(&self, kid: &str) -> Result<Revocation, KeyError> {
        if !kid_is_ours(kid) {
            return Err(KeyError::MalformedKid(kid.to_owned()));
        }
        let successor = self.make_key()?;
        let outcome = signing_keys::revoke(&self.db, kid, &successor.as_new()).await?;
        self.active.forget();
        self.published.forget();
        self.revoked.forget();
        Ok(match outcome {
            None => return Err(KeyError::UnknownKid(kid.to_owned())),
            Some(RevokedKey::Before(at)) => Revocation::AlreadyRevoked(at),
            Some(RevokedKey::Now {
                was_signing,
                tokens_revoked,
            }) => Revocation::Revoked {
                successor: was_signing.then_some(successor.kid),
                tokens_revoked,
            },
        })
    }

    /// Revokes the issued tokens of a revoked key that a process signed
    /// before it learnt of the revocation; how many.
    pub async fn revoke_late_tokens(&self, kid: &str) -> Result<i32, KeyError> {
        Ok(signing_keys::revoke_tokens(&self.db, kid).await?)
    }

    /// Kids of revoked keys, re-read every `ACTIVE_KEY_TTL`.
    async fn revoked_kids(&self) -> Result<Arc<HashSet<String>>, TokenError> {
        self.revoked
            .get(async {
                let kids = signing_keys::revoked_kids(&self.db).await?;
                Ok::<_, sqlx::Error>(Arc::new(kids.into_iter().collect()))
            })
            .await
            .map_err(|e| TokenError::Invalid(format!("looking up the key: {e}")))
    }

    /// The key that signs now (making the first key if there is none).
    pub async fn signer(&self) -> Result<Arc<ActiveKey>, KeyError> {
        self.active
            .get(self.read_signer())
            .await
            .map_err(KeyError::unshared)
    }

    async fn read_signer(&self) -> Result<Arc<ActiveKey>, KeyError> {
        let active = match signing_keys::active(&self.db).await? {
            Some(active) => active,
            None => {
                // The first token ever: make the first key. Read it back
                // rather than trust our own, in case another process made
                // one at the same moment: every process then picks the same.
                self.add_key().await?;
                signing_keys::active(&self.db)
                    .await?
                    .ok_or_else(|| KeyError::Make("the new key is not in the database".into()))?
            }
        };
        let SealedKey {
            kid,
            sealed_private_key,
        } = active;
        self.signing_keys
            .try_get_with(kid.clone(), async {
                self.unsealed(kid, &sealed_private_key)
            })
            .await
            .map_err(KeyError::unshared)
    }

    /// The signing key of `kid`, retired or not, so that a token can be
    /// signed again exactly as it was (Ed25519 signatures are
    /// deterministic). Each key is unsealed once per process.
    pub async fn signer_for(&self, kid: &str) -> Result<Arc<ActiveKey>, KeyError> {
        if !kid_is_ours(kid) {
            return Err(KeyError::UnknownKid(kid.to_owned()));
        }
        self.signing_keys
            .try_get_with(kid.to_owned(), async {
                let sealed = signing_keys::sealed(&self.db, kid)
                    .await?
                    .ok_or_else(|| KeyError::UnknownKid(kid.to_owned()))?;
                self.unsealed(kid.to_owned(), &sealed)
            })
            .await
            .map_err(KeyError::unshared)
    }

    fn unsealed(&self, kid: String, sealed: &[u8]) -> Result<Arc<ActiveKey>, KeyError> {
        let pkcs8 = self.unseal(&kid, sealed)?;
        Ok(Arc::new(ActiveKey::from_pkcs8(kid, &pkcs8)))
    }

    async fn public_key(&self, kid: &str) -> Result<Option<Arc<DecodingKey>>, TokenError> {
        self.public_keys
            .try_get_with(kid.to_owned(), async {
                let key = signing_keys::public_key(&self.db, kid).await?;
                Ok::<_, sqlx::Error>(key.map(|k| Arc::new(DecodingKey::from_ed_der(&k))))
            })
            .await
            .map_err(|e| TokenError::Invalid(format!("looking up the key: {e}")))
    }

    /// Verifies a token's signature and claims. With `allow_expired`, an
    /// expired token still verifies (to report its state).
    pub async fn verify(
        &self,
        token: &str,
        allow_expired: bool,
    ) -> Result<TokenClaims, TokenError> {
        let kid = self.rules.kid_of(token)?;
        if self.revoked_kids().await?.contains(&kid) {
            return Err(TokenError::Invalid(UNKNOWN_KEY.into()));
        }
        let key = self
            .public_key(&kid)
            .await?
            .ok_or_else(|| TokenError::Invalid(UNKNOWN_KEY.into()))?;
        self.rules.claims(token, &key, allow_expired)
    }

    /// Public keys whose tokens may still be live: the signing key, and
    /// retired keys with an unexpired token. Held for `ACTIVE_KEY_TTL`: a
    /// key whose last token expired may stay listed that much longer, and a
    /// key another process rotated to may be missing as long (a rotation on
    /// this process shows at once). When there is no key yet, the first is
    /// made, so partners can fetch it before the first token.
    pub async fn jwks(&self) -> Result<Arc<[Jwk]>, KeyError> {
        self.published
            .get(self.read_jwks())
            .await
            .map_err(KeyError::unshared)
    }

    async fn read_jwks(&self) -> Result<Arc<[Jwk]>, KeyError> {
        let mut keys = signing_keys::published(&self.db).await?;
        if keys.is_empty() {
            self.signer().await?;
            keys = signing_keys::published(&self.db).await?;
        }
        Ok(keys
            .into_iter()
            .map(|key| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                alg: "EdDSA",
                usage: "sig",
                kid: key.kid,
                x: URL_SAFE_NO_PAD.encode(key.public_key),
            })
            .collect())
    }

    /// How many times this process has read the JWKS from the database.
    pub fn jwks_reads(&self) -> u64 {
        self.published.reads()
    }
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked now; `successor` is the key that took over signing, when
    /// the revoked one was signing.
    Revoked {
        successor: Option<String>,
        tokens_revoked: i32,
    },
    AlreadyRevoked(OffsetDateTime),
}

/// A key just made, its private half sealed.
struct MadeKey {
    kid: String,
    public_key: [u8; 32],
    sealed: Vec<u8>,
}

impl MadeKey {
    fn as_new(&self) -> NewKey<'_> {
        NewKey {
            kid: &self.kid,
            public_key: &self.public_key,
            sealed_private_key: &self.sealed,
        }
    }
}

/// The subject key, derived from the key-encryption key under a purpose of
/// its own, so that the two uses of that secret never meet.
/// Seals `plain` with AES-256-GCM under the key-encryption key, bound to
/// `aad` (the id of the row that holds it): a random nonce, then the
/// ciphertext. Signing keys and webhook secrets are sealed alike.
pub(crate) fn seal_under(kek: &Aes256Gcm, aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = rand::rng().random();
    let sealed = kek
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
        .ok()?;
    Some([nonce.as_slice(), &sealed].concat())
}

/// Opens what `seal_under` sealed with the same key and `aad`.
pub(crate) fn unseal_under(kek: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    kek.decrypt(&Nonce::from(nonce), Payload { msg: body, aad })
        .ok()
}

fn subject_key(kek: &[u8]) -> Result<Hmac<Sha256>, KeyError> {
    let mut derive =
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(kek).map_err(|_| KeyError::BadKek)?;
    derive.update(SUBJECT_KEY_PURPOSE);
    <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&derive.finalize().into_bytes())
        .map_err(|_| KeyError::BadKek)
}

/// A fresh token id.
pub fn new_token_id() -> Uuid {
    Uuid::now_v7()
}
