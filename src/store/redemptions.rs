//! Redemptions: single-use by a conditional update of the token's state in
//! the same statement that records the redemption.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::offer::Discount;

/// A request's redemption, in one statement: it claims the request's
/// idempotency key and, only when this request claimed it, moves the token
/// from issued (and unexpired) to redeemed and writes the redemption row.
/// A retry arriving meanwhile waits on the key's row, then finds it claimed.
pub const CLAIM_AND_REDEEM: &str = "WITH claim AS (
         INSERT INTO idempotency_keys (api_key_id, key, request_hash) VALUES ($1, $2, $3)
         ON CONFLICT (api_key_id, key) DO UPDATE SET created_at = now()
             WHERE idempotency_keys.status IS NULL
               AND idempotency_keys.request_hash = EXCLUDED.request_hash
               AND idempotency_keys.created_at < now() - make_interval(secs => $4)
         RETURNING true AS claimed),
     token AS (
         UPDATE tokens SET state = 'redeemed'
         WHERE id = $5 AND state = 'issued' AND expires_at > now() AND EXISTS (SELECT 1 FROM claim)
         RETURNING id, offer_id),
     redemption AS (
         INSERT INTO redemptions (id, token_id, offer_id, partner_id, order_ref, amount_minor)
         SELECT $6, token.id, token.offer_id, offers.partner_id, $7, $8
         FROM token JOIN offers ON offers.id = token.offer_id
         RETURNING id, offer_id, redeemed_at)
     SELECT EXISTS (SELECT 1 FROM claim) AS claimed, redemption.id, redemption.offer_id,
            redemption.redeemed_at, offers.discount_kind, offers.percent_off::float8 AS percent_off,
            offers.amount_minor, offers.currency, offers.reward
     FROM (SELECT 1) AS one
     LEFT JOIN redemption ON true
     LEFT JOIN offers ON offers.id = redemption.offer_id";

/// Keys left running longer than this (a process died) can be taken over.
const STALE_CLAIM_SECS: f64 = 60.0;

pub struct RedeemRequest<'a> {
    pub api_key_id: &'a str,
    pub idempotency_key: &'a str,
    pub request_hash: &'a [u8],
    pub token_id: Uuid,
    pub order_ref: &'a str,
    pub amount_minor: Option<i64>,
}

pub enum ClaimedRedemption {
    /// Another request holds the key: see `prior_answer`.
    NotClaimed,
    /// This request holds the key; the token was redeemed, or not.
    Claimed(Option<Redeemed>),
}

pub async fn claim_and_redeem(
    db: impl PgExecutor<'_>,
    request: &RedeemRequest<'_>,
) -> Result<ClaimedRedemption, sqlx::Error> {
    use sqlx::Row;
    let row = sqlx::query(CLAIM_AND_REDEEM)
        .bind(request.api_key_id)
        .bind(request.idempotency_key)
        .bind(request.request_hash)
        .bind(STALE_CLAIM_SECS)
        .bind(request.token_id)
        .bind(Uuid::now_v7())
        .bind(request.order_ref)
        .bind(request.amount_minor)
        .fetch_one(db)
        .await?;
    if !row.try_get::<bool, _>("claimed")? {
        return Ok(ClaimedRedemption::NotClaimed);
    }
    let id: Option<Uuid> = row.try_get("id")?;
    Ok(ClaimedRedemption::Claimed(match id {
        None => None,
        Some(_) => Some(sqlx::FromRow::from_row(&row)?),
    }))
}

#[derive(Debug, Clone)]
pub struct Redeemed {
    pub id: Uuid,
    pub offer_id: Uuid,
    pub redeemed_at: OffsetDateTime,
    pub discount: Discount,
}

impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for Redeemed {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let discount = super::offers::discount_of(row)?;
        Ok(Redeemed {
            id: row.try_get("id")?,
            offer_id: row.try_get("offer_id")?,
            redeemed_at: row.try_get("redeemed_at")?,
            discount,
        })
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Redemption {
    pub id: Uuid,
    pub token_id: Uuid,
    pub offer_id: Uuid,
    pub partner_id: Option<Uuid>,
    pub order_ref: String,
    pub amount_minor: Option<i64>,
    pub redeemed_at: OffsetDateTime,
    pub reversed_at: Option<OffsetDateTime>,
    pub confirmed_at: Option<OffsetDateTime>,
    pub partner_ref: Option<String>,
}

const COLUMNS: &str = "id, token_id, offer_id, partner_id, order_ref, amount_minor, redeemed_at, \
                       reversed_at, confirmed_at, partner_ref";

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Redemption>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM redemptions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub enum Reversed {
    Yes { token_state: String },
    NotFound,
    Already,
}

/// Reverses a redemption: the token goes back to issued where the offer
/// gives it back, else to reversed; either way its place is freed.
pub async fn reverse(conn: &mut PgConnection, id: Uuid) -> Result<Reversed, sqlx::Error> {
    let state: Option<String> = sqlx::query_scalar(
        "WITH redemption AS (
             UPDATE redemptions SET reversed_at = now()
             WHERE id = $1 AND reversed_at IS NULL
             RETURNING token_id, offer_id)
         UPDATE tokens SET state = CASE WHEN offers.reversal_returns_token THEN 'issued' ELSE 'reversed' END
         FROM redemption, offers
         WHERE tokens.id = redemption.token_id AND offers.id = redemption.offer_id
         RETURNING tokens.state",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(token_state) = state {
        return Ok(Reversed::Yes { token_state });
    }
    Ok(match get(&mut *conn, id).await? {
        Some(_) => Reversed::Already,
        None => Reversed::NotFound,
    })
}

/// Confirms a redemption for its partner (`partner`: only its own).
pub async fn confirm(
    db: impl PgExecutor<'_>,
    id: Uuid,
    partner: Option<Uuid>,
    partner_ref: Option<&str>,
) -> Result<Option<Redemption>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE redemptions
         SET confirmed_at = coalesce(confirmed_at, now()), partner_ref = coalesce($3, partner_ref)
         WHERE id = $1 AND ($2::uuid IS NULL OR partner_id = $2) AND reversed_at IS NULL
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(partner)
    .bind(partner_ref)
    .fetch_optional(db)
    .await
}

pub struct RedemptionFilter {
    pub partner_id: Option<Uuid>,
    pub unconfirmed: bool,
    pub since: Option<OffsetDateTime>,
    /// The last id of the previous page.
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// A page of redemptions in id (time) order.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &RedemptionFilter,
) -> Result<Vec<Redemption>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM redemptions
         WHERE ($1::uuid IS NULL OR partner_id = $1)
           AND (NOT $2 OR (confirmed_at IS NULL AND reversed_at IS NULL))
           AND ($3::timestamptz IS NULL OR redeemed_at >= $3)
           AND ($4::uuid IS NULL OR id > $4)
         ORDER BY id
         LIMIT $5"
    )))
    .bind(filter.partner_id)
    .bind(filter.unconfirmed)
    .bind(filter.since)
    .bind(filter.after)
    .bind(filter.limit)
    .fetch_all(db)
    .await
}

/// What an idempotency key already holds.
pub enum Claim {
    /// The first request with the key is still running.
    Running,
    /// The key was used with another body.
    Mismatch,
    /// The first answer.
    Done {
        status: i16,
        response: serde_json::Value,
    },
}

/// Stores the first answer to an idempotency key.
pub const FINISH: &str =
    "UPDATE idempotency_keys SET status = $3, response = $4 WHERE api_key_id = $1 AND key = $2";

/// What another request left under the key: its answer, or that it runs.
pub async fn prior_answer(
    db: impl PgExecutor<'_>,
    api_key_id: &str,
    key: &str,
    request_hash: &[u8],
) -> Result<Claim, sqlx::Error> {
    let (hash, status, response): (Vec<u8>, Option<i16>, Option<serde_json::Value>) = sqlx::query_as(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE api_key_id = $1 AND key = $2",
    )
    .bind(api_key_id)
    .bind(key)
    .fetch_one(db)
    .await?;
    Ok(match (hash == request_hash, status, response) {
        (false, _, _) => Claim::Mismatch,
        (true, Some(status), Some(response)) => Claim::Done { status, response },
        _ => Claim::Running,
    })
}

pub async fn finish_idempotency_key(
    db: impl PgExecutor<'_>,
    api_key_id: &str,
    key: &str,
    status: i16,
    response: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = $3, response = $4 WHERE api_key_id = $1 AND key = $2",
    )
    .bind(api_key_id)
    .bind(key)
    .bind(status)
    .bind(response)
    .execute(db)
    .await?;
    Ok(())
}

/// Lets a key be used again after the service failed to answer.
pub async fn release_idempotency_key(
    db: impl PgExecutor<'_>,
    api_key_id: &str,
    key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND key = $2 AND status IS NULL",
    )
    .bind(api_key_id)
    .bind(key)
    .execute(db)
    .await?;
    Ok(())
}
