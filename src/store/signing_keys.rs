//! Token signing keys: the public half in the clear, the private half sealed
//! under the key-encryption key (sealing and unsealing happen in
//! `crate::signing`; this file only moves the bytes).

use sqlx::PgExecutor;

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
         WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT 1",
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

/// A key's public half, retired or not.
pub async fn public_key(
    db: impl PgExecutor<'_>,
    kid: &str,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT public_key FROM signing_keys WHERE kid = $1")
        .bind(kid)
        .fetch_optional(db)
        .await
}

/// Public keys whose tokens may still be live: the signing key, and retired
/// keys with an unexpired token. Newest first.
pub async fn published(db: impl PgExecutor<'_>) -> Result<Vec<PublicKey>, sqlx::Error> {
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT kid, public_key FROM signing_keys AS k
         WHERE retired_at IS NULL
            OR EXISTS (SELECT 1 FROM tokens AS t WHERE t.kid = k.kid AND t.expires_at > now())
         ORDER BY created_at DESC, kid",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(kid, public_key)| PublicKey { kid, public_key })
        .collect())
}
