//! Redemptions: single-use by a conditional update of the token's state in
//! the same statement that records the redemption.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::offer::Discount;

/// One call does the whole redemption: see `redeem_token` in the
/// migrations. The idempotency key's first answer, or the token moved from
/// issued to redeemed with its redemption row and the key's answer.
pub const REDEEM: &str = "SELECT replayed, request_hash, outcome, id, offer_id, redeemed_at,
            discount_kind, percent_off, amount_minor, currency, reward
     FROM redeem_token($1, $2, $3, $4, $5, $6, $7)";

pub struct RedeemCall<'a> {
    pub api_key_id: &'a str,
    pub idempotency_key: &'a str,
    pub request_hash: &'a [u8],
    pub token_id: Uuid,
    pub redemption_id: Uuid,
    pub order_ref: &'a str,
    pub amount_minor: Option<i64>,
}

/// What the call answered: `outcome` is `redeemed` (with the redemption),
/// `unknown_token`, `key_revoked`, `token_revoked`, `already_redeemed` or
/// `token_expired`.
pub struct RedeemRow {
    pub replayed: bool,
    pub request_hash: Vec<u8>,
    pub outcome: String,
    pub redeemed: Option<Redeemed>,
}

pub async fn redeem(
    db: impl PgExecutor<'_>,
    call: &RedeemCall<'_>,
) -> Result<RedeemRow, sqlx::Error> {
    use sqlx::Row;
    let row = sqlx::query(REDEEM)
        .bind(call.api_key_id)
        .bind(call.idempotency_key)
        .bind(call.request_hash)
        .bind(call.token_id)
        .bind(call.redemption_id)
        .bind(call.order_ref)
        .bind(call.amount_minor)
        .fetch_one(db)
        .await?;
    let id: Option<Uuid> = row.try_get("id")?;
    Ok(RedeemRow {
        replayed: row.try_get("replayed")?,
        request_hash: row.try_get("request_hash")?,
        outcome: row.try_get("outcome")?,
        redeemed: match id {
            None => None,
            Some(_) => Some(sqlx::FromRow::from_row(&row)?),
        },
    })
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
    /// The API key that redeemed (None for redemptions older than the
    /// record of it).
    pub api_key_id: Option<String>,
    pub order_ref: String,
    pub amount_minor: Option<i64>,
    pub redeemed_at: OffsetDateTime,
    pub reversed_at: Option<OffsetDateTime>,
    /// `admin` or `checkout`.
    pub reversed_by_role: Option<String>,
    pub reversal_reason: Option<String>,
    pub confirmed_at: Option<OffsetDateTime>,
    pub partner_ref: Option<String>,
}

const COLUMNS: &str = "id, token_id, offer_id, partner_id, api_key_id, order_ref, amount_minor, \
                       redeemed_at, reversed_at, reversed_by_role, reversal_reason, confirmed_at, \
                       partner_ref";

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Redemption>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM redemptions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Who reverses: the caller's key and whether it is an admin's.
pub struct ReverseCall<'a> {
    pub redemption_id: Uuid,
    pub api_key_id: &'a str,
    pub admin: bool,
    pub reason: Option<&'a str>,
}

/// What `reverse_redemption` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reversed {
    Yes {
        token_state: String,
        reversed_at: OffsetDateTime,
    },
    /// None, or one the caller may not see.
    NotFound,
    Already {
        reversed_at: OffsetDateTime,
    },
    /// The partner confirmed it; only an admin, with a reason, may reverse.
    Confirmed {
        confirmed_at: OffsetDateTime,
    },
    /// An admin reversing a confirmed redemption gave no reason.
    ReasonRequired {
        confirmed_at: OffsetDateTime,
    },
}

/// Reverses a redemption for a caller: see `reverse_redemption` in the
/// migrations.
pub async fn reverse(
    db: impl PgExecutor<'_>,
    call: &ReverseCall<'_>,
) -> Result<Reversed, sqlx::Error> {
    let (outcome, token_state, reversed_at, confirmed_at): (
        String,
        Option<String>,
        Option<OffsetDateTime>,
        Option<OffsetDateTime>,
    ) = sqlx::query_as(
        "SELECT outcome, token_state, reversed_at, confirmed_at
         FROM reverse_redemption($1, $2, $3, $4)",
    )
    .bind(call.redemption_id)
    .bind(call.api_key_id)
    .bind(call.admin)
    .bind(call.reason)
    .fetch_one(db)
    .await?;
    Ok(
        match (outcome.as_str(), token_state, reversed_at, confirmed_at) {
            ("reversed", Some(token_state), Some(reversed_at), _) => Reversed::Yes {
                token_state,
                reversed_at,
            },
            ("already_reversed", _, Some(reversed_at), _) => Reversed::Already { reversed_at },
            ("already_confirmed", _, _, Some(confirmed_at)) => Reversed::Confirmed { confirmed_at },
            ("reason_required", _, _, Some(confirmed_at)) => {
                Reversed::ReasonRequired { confirmed_at }
            }
            _ => Reversed::NotFound,
        },
    )
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
         SET confirmed_at = coalesce(confirmed_at, now()), partner_ref = coalesce(partner_ref, $3)
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
