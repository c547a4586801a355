use sqlx::{FromRow, PgExecutor, Row, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::api_key::{KeyId, Role};

/// A key as listed: everything but the secret's hash.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: KeyId,
    pub name: String,
    pub role: Role,
    pub partner_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// Origins a checkout key's verification sessions may return to, beside
    /// those in the settings.
    pub return_origins: Vec<String>,
}

/// What authentication needs of a key.
#[derive(Debug, Clone)]
pub struct KeyCredentials {
    pub role: Role,
    pub partner_id: Option<Uuid>,
    pub secret_hash: String,
    pub revoked: bool,
}

fn decode_role(row: &PgRow) -> Result<Role, sqlx::Error> {
    let role: String = row.try_get("role")?;
    role.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn decode_id(row: &PgRow) -> Result<KeyId, sqlx::Error> {
    let id: String = row.try_get("id")?;
    KeyId::parse(&id).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

impl FromRow<'_, PgRow> for KeyRecord {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(KeyRecord {
            id: decode_id(row)?,
            name: row.try_get("name")?,
            role: decode_role(row)?,
            partner_id: row.try_get("partner_id")?,
            created_at: row.try_get("created_at")?,
            revoked_at: row.try_get("revoked_at")?,
            return_origins: row.try_get("return_origins")?,
        })
    }
}

impl FromRow<'_, PgRow> for KeyCredentials {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(KeyCredentials {
            role: decode_role(row)?,
            partner_id: row.try_get("partner_id")?,
            secret_hash: row.try_get("secret_hash")?,
            revoked: row.try_get("revoked")?,
        })
    }
}

pub struct NewKey<'a> {
    pub id: &'a KeyId,
    pub name: &'a str,
    pub role: Role,
    pub partner_id: Option<Uuid>,
    pub secret_hash: &'a str,
    pub return_origins: &'a [String],
}

pub async fn insert(db: impl PgExecutor<'_>, key: NewKey<'_>) -> Result<KeyRecord, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO api_keys (id, name, role, partner_id, secret_hash, return_origins)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, name, role, partner_id, created_at, revoked_at, return_origins",
    )
    .bind(key.id.as_str())
    .bind(key.name)
    .bind(key.role.as_str())
    .bind(key.partner_id)
    .bind(key.secret_hash)
    .bind(key.return_origins)
    .fetch_one(db)
    .await
}

pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<KeyRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, role, partner_id, created_at, revoked_at, return_origins
         FROM api_keys ORDER BY created_at, id",
    )
    .fetch_all(db)
    .await
}

pub async fn credentials(
    db: impl PgExecutor<'_>,
    id: &KeyId,
) -> Result<Option<KeyCredentials>, sqlx::Error> {
    sqlx::query_as(
        "SELECT role, partner_id, secret_hash, revoked_at IS NOT NULL AS revoked
         FROM api_keys WHERE id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(db)
    .await
}

/// The origins a key's verification sessions may return to.
pub async fn return_origins(db: impl PgExecutor<'_>, id: &str) -> Result<Vec<String>, sqlx::Error> {
    let origins: Option<Vec<String>> =
        sqlx::query_scalar("SELECT return_origins FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    Ok(origins.unwrap_or_default())
}

/// Revokes a key; revoking it again keeps the first revocation time.
pub async fn revoke(db: impl PgExecutor<'_>, id: &KeyId) -> Result<Option<KeyRecord>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
         WHERE id = $1
         RETURNING id, name, role, partner_id, created_at, revoked_at, return_origins",
    )
    .bind(id.as_str())
    .fetch_optional(db)
    .await
}

/// The ids of keys created after `since` less a minute (all of them
/// without `since`), with their creation times: what authentication needs
/// to refuse unknown ids without a lookup each.
pub async fn ids_created_since(
    db: impl PgExecutor<'_>,
    since: Option<OffsetDateTime>,
) -> Result<Vec<(String, OffsetDateTime)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, created_at FROM api_keys
         WHERE $1::timestamptz IS NULL OR created_at > $1::timestamptz - interval '1 minute'",
    )
    .bind(since)
    .fetch_all(db)
    .await
}
