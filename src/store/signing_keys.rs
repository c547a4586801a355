//! Token signing keys: the public half in the clear, the private half sealed
//! under the key-encryption key (sealing and unsealing happen in
//! `crate::signing`; this file only moves the bytes).

use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;

/// A key as written: the caller has already sealed the private half.
pub struct NewKey<'a> {
    pub kid: &'a str,
    pub public_key: &'a [u8],
    pub sealed_private_key: &'a [u8],
}

/// A key's id and its sealed private half.
pub struct SealedKey {
    pub kid: String,
    pub sealed_private_key: Vec<u8>,
}

/// A key's id and public half, as the JWKS publishes it.
pub struct PublicKey {
    pub kid: String,
    pub public_key: Vec<u8>,
}

/// Adds a key and retires the ones that signed until now. One statement, so
/// no process ever sees the old key retired without the new one in place.
pub async fn rotate_to(db: impl PgExecutor<'_>, key: &NewKey<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH retired AS (
             UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL)
         INSERT INTO signing_keys (kid, public_key, sealed_private_key) VALUES ($1, $2, $3)",
    )
    .bind(key.kid)
    .bind(key.public_key)
    .bind(key.sealed_private_key)
    .execute(db)
    .await?;
    Ok(())
}

/// The key that signs now: the newest one not retired. Two processes making
/// the first key at once leave two unretired keys; the order picks one.
pub async fn active(db: impl PgExecutor<'_>) -> Result<Option<SealedKey>, sqlx::Error> {
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT kid, sealed_private_key FROM signing_keys
         WHERE retired_at IS NULL AND revoked_at IS NULL
         ORDER BY created_at DESC, kid LIMIT 1",
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(kid, sealed_private_key)| SealedKey {
        kid,
        sealed_private_key,
    }))
}

/// A key's sealed private half, retired or not.
pub async fn sealed(db: impl PgExecutor<'_>, kid: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT sealed_private_key FROM signing_keys WHERE kid = $1")
        .bind(kid)
        .fetch_optional(db)
        .await
}

/// A key's public half, retired or not; none once revoked.
pub async fn public_key(
    db: impl PgExecutor<'_>,
    kid: &str,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT public_key FROM signing_keys WHERE kid = $1 AND revoked_at IS NULL")
        .bind(kid)
        .fetch_optional(db)
        .await
}

/// Public keys whose tokens may still be live: the signing key, and retired
/// keys with an unexpired token; never a revoked key. Newest first.
pub async fn published(db: impl PgExecutor<'_>) -> Result<Vec<PublicKey>, sqlx::Error> {
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT kid, public_key FROM signing_keys AS k
         WHERE revoked_at IS NULL
           AND (retired_at IS NULL
                OR EXISTS (SELECT 1 FROM tokens AS t WHERE t.kid = k.kid AND t.expires_at > now()))
         ORDER BY created_at DESC, kid",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(kid, public_key)| PublicKey { kid, public_key })
        .collect())
}

/// What revoking a key found.
pub enum RevokedKey {
    /// Revoked by this call; `was_signing` when it was a key that signed
    /// (then `successor` signs from now on).
    Now {
        was_signing: bool,
        tokens_revoked: i32,
    },
    /// Revoked earlier, at that instant.
    Before(OffsetDateTime),
}

/// Revokes a key (None when there is no such kid). When it was a key that
/// signed, `successor` takes over in the same transaction, retiring every
/// other key that signed.
pub async fn revoke(
    db: &PgPool,
    kid: &str,
    successor: &NewKey<'_>,
) -> Result<Option<RevokedKey>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let found: Option<(Option<OffsetDateTime>, Option<OffsetDateTime>)> =
        sqlx::query_as("SELECT retired_at, revoked_at FROM signing_keys WHERE kid = $1 FOR UPDATE")
            .bind(kid)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((retired_at, revoked_at)) = found else {
        return Ok(None);
    };
    if let Some(at) = revoked_at {
        return Ok(Some(RevokedKey::Before(at)));
    }
    sqlx::query(
        "UPDATE signing_keys SET revoked_at = now(), retired_at = coalesce(retired_at, now())
         WHERE kid = $1",
    )
    .bind(kid)
    .execute(&mut *tx)
    .await?;
    let was_signing = retired_at.is_none();
    if was_signing {
        rotate_to(&mut *tx, successor).await?;
    }
    let tokens_revoked = revoke_tokens(&mut *tx, kid).await?;
    tx.commit().await?;
    Ok(Some(RevokedKey::Now {
        was_signing,
        tokens_revoked,
    }))
}

/// Revokes the issued tokens a key signed and gives their places back
/// (`revoke_tokens_of_key` in the migrations); how many.
pub async fn revoke_tokens(db: impl PgExecutor<'_>, kid: &str) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT revoke_tokens_of_key($1)")
        .bind(kid)
        .fetch_one(db)
        .await
}

/// The kids of revoked keys.
pub async fn revoked_kids(db: impl PgExecutor<'_>) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT kid FROM signing_keys WHERE revoked_at IS NOT NULL")
        .fetch_all(db)
        .await
}

/// A key as an operator lists it.
pub struct KeyListing {
    pub kid: String,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// Every key, newest first.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<KeyListing>, sqlx::Error> {
    let rows: Vec<(
        String,
        OffsetDateTime,
        Option<OffsetDateTime>,
        Option<OffsetDateTime>,
    )> = sqlx::query_as(
        "SELECT kid, created_at, retired_at, revoked_at FROM signing_keys
             ORDER BY created_at DESC, kid",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(kid, created_at, retired_at, revoked_at)| KeyListing {
            kid,
            created_at,
            retired_at,
            revoked_at,
        })
        .collect())
}
