//! Hosted verification sessions.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use super::tokens::TokenRow;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub api_key_id: String,
    pub community: Option<String>,
    pub offer_id: Option<Uuid>,
    pub subsegment: Option<String>,
    pub locale: Option<String>,
    pub return_url: String,
    pub customer_ref_ix: Option<Vec<u8>>,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub verification_id: Option<Uuid>,
    pub membership_id: Option<Uuid>,
    pub membership_expires_at: Option<OffsetDateTime>,
    pub verified_community: Option<String>,
    pub verified_subsegment: Option<String>,
    pub token_id: Option<Uuid>,
    pub token_problem: Option<String>,
    pub expires_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    /// Whether `expires_at` has passed, by the database's clock.
    pub expired: bool,
    /// Whether the key that created it has been revoked since.
    pub key_revoked: bool,
}

const SESSION: &str = "id, api_key_id, community, offer_id, subsegment, locale, return_url, \
    customer_ref_ix, status, attempts, max_attempts, verification_id, membership_id, \
    membership_expires_at, verified_community, verified_subsegment, token_id, token_problem, \
    expires_at, created_at, completed_at, expires_at <= now() AS expired, \
    coalesce((SELECT k.revoked_at IS NOT NULL FROM api_keys AS k WHERE k.id = api_key_id), true) \
    AS key_revoked";

pub struct NewSession<'a> {
    pub id: Uuid,
    pub secret_hash: &'a [u8],
    pub api_key_id: &'a str,
    pub community: Option<&'a str>,
    pub offer_id: Option<Uuid>,
    pub subsegment: Option<&'a str>,
    pub locale: Option<&'a str>,
    pub return_url: &'a str,
    pub customer_ref_ix: Option<&'a [u8]>,
    pub max_attempts: i32,
    pub ttl_secs: f64,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    new: &NewSession<'_>,
) -> Result<SessionRow, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO verification_sessions
             (id, secret_hash, api_key_id, community, offer_id, subsegment, locale, return_url,
              customer_ref_ix, max_attempts, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11))
         RETURNING {SESSION}"
    )))
    .bind(new.id)
    .bind(new.secret_hash)
    .bind(new.api_key_id)
    .bind(new.community)
    .bind(new.offer_id)
    .bind(new.subsegment)
    .bind(new.locale)
    .bind(new.return_url)
    .bind(new.customer_ref_ix)
    .bind(new.max_attempts)
    .bind(new.ttl_secs)
    .fetch_one(db)
    .await
}

/// A session by id, for the key that created it (another key's is `None`).
pub async fn get_for_key(
    db: impl PgExecutor<'_>,
    id: Uuid,
    api_key_id: &str,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SESSION} FROM verification_sessions WHERE id = $1 AND api_key_id = $2"
    )))
    .bind(id)
    .bind(api_key_id)
    .fetch_optional(db)
    .await
}

/// A session by its URL's secret.
pub async fn by_secret(
    db: impl PgExecutor<'_>,
    secret_hash: &[u8],
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SESSION} FROM verification_sessions WHERE secret_hash = $1"
    )))
    .bind(secret_hash)
    .fetch_optional(db)
    .await
}

/// The same, locked until the transaction ends: one attempt at a time per
/// session, whatever the number of processes or tabs.
pub async fn lock_by_secret(
    conn: &mut PgConnection,
    secret_hash: &[u8],
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SESSION} FROM verification_sessions WHERE secret_hash = $1 FOR UPDATE"
    )))
    .bind(secret_hash)
    .fetch_optional(conn)
    .await
}

/// What one attempt left on its session.
pub struct AttemptRecord<'a> {
    pub verification_id: Uuid,
    pub verified: Option<Verified<'a>>,
}

pub struct Verified<'a> {
    pub membership_id: Uuid,
    pub membership_expires_at: Option<OffsetDateTime>,
    pub community: &'a str,
    pub subsegment: Option<&'a str>,
    pub token_id: Option<Uuid>,
    pub token_problem: Option<&'a str>,
}

/// Counts an attempt: a success verifies the session; the last failure
/// allowed closes it as `not_verified`.
pub async fn record_attempt(
    conn: &mut PgConnection,
    id: Uuid,
    record: &AttemptRecord<'_>,
) -> Result<SessionRow, sqlx::Error> {
    let verified = record.verified.as_ref();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE verification_sessions SET
             attempts = attempts + 1,
             verification_id = $2,
             status = CASE WHEN $3 THEN 'verified'
                           WHEN attempts + 1 >= max_attempts THEN 'not_verified'
                           ELSE 'open' END,
             completed_at = CASE WHEN $3 OR attempts + 1 >= max_attempts THEN now() END,
             membership_id = $4,
             membership_expires_at = $5,
             verified_community = $6,
             verified_subsegment = $7,
             token_id = $8,
             token_problem = $9
         WHERE id = $1 AND status = 'open'
         RETURNING {SESSION}"
    )))
    .bind(id)
    .bind(record.verification_id)
    .bind(verified.is_some())
    .bind(verified.map(|v| v.membership_id))
    .bind(verified.and_then(|v| v.membership_expires_at))
    .bind(verified.map(|v| v.community))
    .bind(verified.and_then(|v| v.subsegment))
    .bind(verified.and_then(|v| v.token_id))
    .bind(verified.and_then(|v| v.token_problem))
    .fetch_one(conn)
    .await
}

/// Cancels an open, unexpired session; `None` when it was not open.
pub async fn cancel(
    db: impl PgExecutor<'_>,
    id: Uuid,
    api_key_id: &str,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE verification_sessions SET status = 'canceled', completed_at = now()
         WHERE id = $1 AND api_key_id = $2 AND status = 'open' AND expires_at > now()
         RETURNING {SESSION}"
    )))
    .bind(id)
    .bind(api_key_id)
    .fetch_optional(db)
    .await
}

/// The token a session's success issued, to sign again for its reader.
pub async fn token(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<TokenRow>, sqlx::Error> {
    type Columns = (
        Uuid,
        Uuid,
        Option<Uuid>,
        String,
        String,
        OffsetDateTime,
        OffsetDateTime,
    );
    let row: Option<Columns> = sqlx::query_as(
        "SELECT id, offer_id, membership_id, community, kid, issued_at, expires_at
             FROM tokens WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(
        |(id, offer_id, membership_id, community, kid, issued_at, expires_at)| TokenRow {
            id,
            offer_id,
            membership_id,
            community,
            kid,
            issued_at,
            expires_at,
        },
    ))
}
