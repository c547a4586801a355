//! Token signing keys and the tokens' JWS form.
//!
//! Ed25519 keys live in Postgres so every process signs and verifies alike;
//! the private halves are sealed with AES-256-GCM under the key-encryption
//! key from the environment. Verification pins EdDSA, requires exp, nbf,
//! aud, iss, sub and jti, and accepts only kids of our own form, looked up
//! by exact value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use moka::future::Cache;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::RwLock;
use uuid::Uuid;

/// How long a process keeps using the signing key it looked up; a rotation
/// reaches every process within this time.
const ACTIVE_KEY_TTL: Duration = Duration::from_secs(5);
const NONCE_LEN: usize = 12;

/// The claims of an offer token. `sub` is the membership, an opaque id.
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
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The key that signs now.
pub struct ActiveKey {
    kid: String,
    encoding: EncodingKey,
}

impl ActiveKey {
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
    pub issuer: String,
    pub audience: String,
    public_keys: Cache<String, Option<Arc<DecodingKey>>>,
    active: RwLock<Option<(Instant, Arc<ActiveKey>)>>,
    /// What every token must satisfy (built once: it allocates).
    validation: Validation,
    /// The same, for reporting an expired token's state.
    validation_past_exp: Validation,
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
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        let mut validation_past_exp = validation.clone();
        validation_past_exp.validate_exp = false;
        Ok(KeyRing {
            db,
            kek,
            validation,
            validation_past_exp,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            public_keys: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(Duration::from_secs(3_600))
                .build(),
            active: RwLock::new(None),
        })
    }

    fn seal(&self, kid: &str, secret: &[u8]) -> Result<Vec<u8>, KeyError> {
        let nonce: [u8; NONCE_LEN] = rand::rng().random();
        let sealed = self
            .kek
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|e| KeyError::Make(e.to_string()))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    fn unseal(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() <= NONCE_LEN {
            return Err(KeyError::Unseal);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyError::Unseal)?;
        self.kek
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Unseal)
    }

    /// Adds a signing key and makes it the one that signs; older keys stay
    /// published while tokens they signed may be live. Returns its kid.
    pub async fn rotate(&self) -> Result<String, KeyError> {
        let seed: [u8; 32] = rand::rng().random();
        let signing = SigningKey::from_bytes(&seed);
        let pkcs8 = signing
            .to_pkcs8_der()
            .map_err(|e| KeyError::Make(e.to_string()))?;
        let kid = hex::encode(rand::rng().random::<[u8; 8]>());
        let sealed = self.seal(&kid, pkcs8.as_bytes())?;
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, public_key, sealed_private_key) VALUES ($1, $2, $3)",
        )
        .bind(&kid)
        .bind(signing.verifying_key().as_bytes().as_slice())
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        *self.active.write().await = None;
        Ok(kid)
    }

    /// The key that signs now (making the first key if there is none).
    pub async fn signer(&self) -> Result<Arc<ActiveKey>, KeyError> {
        if let Some((at, key)) = self.active.read().await.as_ref()
            && at.elapsed() < ACTIVE_KEY_TTL
        {
            return Ok(key.clone());
        }
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT kid, sealed_private_key FROM signing_keys
             WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT 1",
        )
        .fetch_optional(&self.db)
        .await?;
        let (kid, sealed) = match row {
            Some(row) => row,
            None => {
                // The first token ever: make the first key.
                self.rotate().await?;
                return Box::pin(self.signer()).await;
            }
        };
        let pkcs8 = self.unseal(&kid, &sealed)?;
        let key = Arc::new(ActiveKey {
            kid,
            encoding: EncodingKey::from_ed_der(&pkcs8),
        });
        *self.active.write().await = Some((Instant::now(), key.clone()));
        Ok(key)
    }

    /// The signing key of `kid`, retired or not, so a token can be signed
    /// again byte for byte (Ed25519 signatures are deterministic).
    pub async fn signer_for(&self, kid: &str) -> Result<Arc<ActiveKey>, KeyError> {
        let active = self.signer().await?;
        if active.kid == kid {
            return Ok(active);
        }
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT sealed_private_key FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .fetch_optional(&self.db)
                .await?;
        let sealed = sealed.ok_or(KeyError::Unseal)?;
        let pkcs8 = self.unseal(kid, &sealed)?;
        Ok(Arc::new(ActiveKey {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ed_der(&pkcs8),
        }))
    }

    async fn public_key(&self, kid: &str) -> Result<Option<Arc<DecodingKey>>, TokenError> {
        let db = self.db.clone();
        let owned = kid.to_owned();
        self.public_keys
            .try_get_with(kid.to_owned(), async move {
                let key: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT public_key FROM signing_keys WHERE kid = $1")
                        .bind(owned)
                        .fetch_optional(&db)
                        .await?;
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
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid("only EdDSA tokens are accepted".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("the token names no key".into()))?;
        if !kid_is_ours(&kid) {
            return Err(TokenError::Invalid("the token names an unknown key".into()));
        }
        let key = self
            .public_key(&kid)
            .await?
            .ok_or_else(|| TokenError::Invalid("the token names an unknown key".into()))?;
        let validation = if allow_expired {
            &self.validation_past_exp
        } else {
            &self.validation
        };
        match jsonwebtoken::decode::<TokenClaims>(token, &key, validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenError::Expired)
            }
            Err(e) => Err(TokenError::Invalid(e.to_string())),
        }
    }

    /// Public keys whose tokens may still be live: the signing key, and
    /// retired keys with an unexpired token.
    pub async fn jwks(&self) -> Result<Vec<Jwk>, sqlx::Error> {
        let keys: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT kid, public_key FROM signing_keys AS k
             WHERE retired_at IS NULL
                OR EXISTS (SELECT 1 FROM tokens AS t WHERE t.kid = k.kid AND t.expires_at > now())
             ORDER BY created_at DESC, kid",
        )
        .fetch_all(&self.db)
        .await?;
        Ok(keys
            .into_iter()
            .map(|(kid, public)| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                alg: "EdDSA",
                usage: "sig",
                kid,
                x: URL_SAFE_NO_PAD.encode(public),
            })
            .collect())
    }
}

/// A fresh token id.
pub fn new_token_id() -> Uuid {
    Uuid::now_v7()
}
